"""The full isolated-sign classifier (docs/recipe.md §6–§8) and its builder from a config."""

import dataclasses
import math

import keras
from keras import ops

from tfislr import landmarks as lm
from tfislr.checks import check_int
from tfislr.config import POS_CONV_PADDINGS, VALUE_BEFORE_KEY, ModelConfig
from tfislr.model.deberta_encoder import DebertaEncoder
from tfislr.model.embedding import LandmarkEmbedding
from tfislr.model.initializers import (
    torch_linear_bias_initializer,
    torch_linear_kernel_initializer,
)
from tfislr.model.part_mlps import PartMLPs


def transformer_widths(transfo_dim, num_layers, drop_rate):
    """Width/dropout rule (docs/recipe.md §6) -> `(hidden_dims, output_dims, dropouts)`.

    For 3 layers and `transfo_dim >= 512`: `d_in = 512, delta = min(256, transfo_dim - 512)`
    when `transfo_dim <= 1024`, else `d_in = 1024, delta = (transfo_dim - 1024) // 2`; layer
    k (0-based) has hidden width `min(d_in + k * delta, transfo_dim)`; the last layer outputs
    `transfo_dim` when `transfo_dim >= 1024`, else returns to `d_in`. Dropout is `drop_rate`,
    doubled from layer 2 when `delta > 0`, doubled again at layer 3 when `transfo_dim >= 1024`.
    This reproduces all four tabulated models exactly.

    Any other case (fewer/more layers, `transfo_dim < 512`, used for small test models) is
    our extension: every layer is `transfo_dim -> transfo_dim` with dropout `drop_rate`.
    """
    check_int("transfo_layers", num_layers)
    if num_layers != 3 or transfo_dim < 512:
        return [transfo_dim] * num_layers, [transfo_dim] * num_layers, [drop_rate] * num_layers
    if transfo_dim <= 1024:
        d_in, delta = 512, min(256, transfo_dim - 512)
    else:
        d_in, delta = 1024, (transfo_dim - 1024) // 2
    hidden = [min(d_in + k * delta, transfo_dim) for k in range(3)]
    last = transfo_dim if transfo_dim >= 1024 else d_in
    outputs = hidden[1:] + [last]
    second = drop_rate * 2 if delta > 0 else drop_rate
    third = second * 2 if transfo_dim >= 1024 else second
    return hidden, outputs, [drop_rate, second, third]



@keras.saving.register_keras_serializable(package="tfislr")
class ISLRClassifier(keras.Model):
    """Landmark sequence -> sign logits: embedding, part MLPs, DeBERTa stack, masked mean.

    Inputs: `{"landmarks": [B, T, 100, 3], "padding_mask": [B, T]}` (mask: 1.0 real frame,
    0.0 padding; any numeric/bool dtype). T may be anything >= 1, also above `max_len`
    (relative positions then saturate in the log buckets).

    Output: float32 logits `[B, num_classes]` (also under mixed precision).

    Padded frames: coordinates are zeroed on entry, attention uses the pair mask, pooling is
    `sum_t m_t h_t / sum_t m_t`, so padded values never change any output. In training,
    BatchNorm statistics include padded rows, as in the original.

    Manifold mixup: `model(inputs, training=True, mixup={"lambda": f32[B], "permutation":
    int32[B], "layer": int32 in [0, transfo_layers), a scalar or one per clip [B]})` mixes the
    hidden states before transformer layer `layer` and pools with the union of the two masks. Entries may be
    tensors, numpy arrays or Python numbers (converted on entry).

    Args:
        num_classes: number of signs (250 for the competition).
        max_len: the sequence length the model is trained for; the relative-position buckets.
        embed_dim, dense_dim, transfo_dim, transfo_layers, num_heads, drop_rate: the model
            config section (docs/recipe.md §6); widths per transformer layer follow
            `transformer_widths`.
        pos_conv_padding: where the position convolutions' sequence ends (one of
            `POS_CONV_PADDINGS`, docs/recipe.md §20): "max_len", the original's training
            (its batches padded to exactly max_len frames), or "extended" (past every clip's
            last frame; a model saved before this option existed loads with it).

    Raises:
        ValueError: a `pos_conv_padding` not in `POS_CONV_PADDINGS`, or widths that do not
            divide into `num_heads`.
    """

    def __init__(
        self,
        num_classes,
        max_len,
        embed_dim=16,
        dense_dim=256,
        transfo_dim=1024,
        transfo_layers=3,
        num_heads=16,
        drop_rate=0.05,
        pos_conv_padding="max_len",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_int("num_classes", num_classes)
        check_int("max_len", max_len)
        if pos_conv_padding not in POS_CONV_PADDINGS:
            raise ValueError(f"pos_conv_padding must be one of {', '.join(POS_CONV_PADDINGS)}, "
                             f"got {pos_conv_padding!r}")
        self.num_classes = num_classes
        self.max_len = max_len
        self.embed_dim = embed_dim
        self.dense_dim = dense_dim
        self.transfo_dim = transfo_dim
        self.transfo_layers = transfo_layers
        self.num_heads = num_heads
        self.drop_rate = drop_rate
        self.pos_conv_padding = pos_conv_padding

        hidden_dims, output_dims, dropout_rates = transformer_widths(
            transfo_dim, transfo_layers, drop_rate
        )
        for width in hidden_dims:
            if width % num_heads:
                raise ValueError(
                    f"transformer width {width} (from transfo_dim {transfo_dim}) is not "
                    f"divisible by num_heads {num_heads}"
                )
        self.embedding = LandmarkEmbedding(
            embed_dim, conv_window=max_len if pos_conv_padding == "max_len" else None,
            dtype=self.dtype_policy, name="embedding",
        )
        self.part_mlps = PartMLPs(
            dense_dim, hidden_dims[0], drop_rate, dtype=self.dtype_policy, name="part_mlps"
        )
        self.encoder = DebertaEncoder(
            hidden_dims,
            output_dims,
            dropout_rates,
            num_heads,
            position_buckets=max_len,
            dtype=self.dtype_policy,
            name="encoder",
        )
        self.head = keras.layers.Dense(
            num_classes,
            kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(output_dims[-1]),
            dtype=self.dtype_policy,
            name="head",
        )

    def build(self, input_shape=None):
        landmarks_shape = (None, None, lm.NUM_POINTS, lm.NUM_COORDINATES)
        if isinstance(input_shape, dict) and input_shape.get("landmarks") is not None:
            landmarks_shape = tuple(input_shape["landmarks"])
        rows = landmarks_shape[:2]
        self.embedding.build(landmarks_shape)
        self.part_mlps.build(rows + (lm.NUM_POINTS, self.embed_dim))
        self.encoder.build(rows + (self.encoder.hidden_dims[0],))
        self.head.build((rows[0], self.encoder.output_dims[-1]))
        self.built = True

    @staticmethod
    def _unpack(inputs):
        if not isinstance(inputs, dict) or "landmarks" not in inputs:
            raise ValueError(
                "ISLRClassifier expects a dict {'landmarks': [B, T, 100, 3], "
                f"'padding_mask': [B, T]}}, got {type(inputs).__name__}"
            )
        landmarks = inputs["landmarks"]
        padding_mask = inputs.get("padding_mask")
        if padding_mask is None:
            padding_mask = ops.ones(ops.shape(landmarks)[:2])
        return landmarks, padding_mask

    def _encode(self, inputs, training=None, mixup=None, return_attention_scores=False):
        landmarks, padding_mask = self._unpack(inputs)
        padding_mask = ops.cast(padding_mask, self.compute_dtype)
        features = self.embedding(landmarks, padding_mask=padding_mask)
        hidden = self.part_mlps(features, padding_mask=padding_mask, training=training)
        return self.encoder(
            hidden,
            padding_mask=padding_mask,
            mixup=mixup,
            training=training,
            return_attention_scores=return_attention_scores,
        ), padding_mask

    @staticmethod
    def _normalize_mixup(mixup):
        missing = {"lambda", "permutation", "layer"} - set(mixup)
        if missing:
            raise ValueError(
                "mixup must be a dict with keys 'lambda' (f32[B]), 'permutation' (int32[B]) "
                f"and 'layer' (int32 scalar or [B]); missing {sorted(missing)}"
            )
        dtypes = {"lambda": "float32", "permutation": "int32", "layer": "int32"}

        def tensor(key):
            value = mixup[key]
            if isinstance(value, keras.KerasTensor):
                return value
            return ops.cast(ops.convert_to_tensor(value), dtypes[key])

        return {key: tensor(key) for key in dtypes}

    def __call__(self, *args, mixup=None, **kwargs):
        # Keras refuses a nested call argument that mixes tensors and Python numbers (e.g.
        # `"layer": 2` next to tensors), so the mixup dict is made all-tensor first.
        if mixup is not None:
            mixup = self._normalize_mixup(mixup)
        return super().__call__(*args, mixup=mixup, **kwargs)

    def call(self, inputs, training=None, mixup=None):
        hidden, padding_mask = self._encode(inputs, training=training, mixup=mixup)
        if mixup is not None:
            permutation = ops.cast(mixup["permutation"], "int32")
            padding_mask = ops.maximum(padding_mask, ops.take(padding_mask, permutation, axis=0))
        mask = ops.expand_dims(ops.cast(padding_mask, hidden.dtype), -1)
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)
        pooled = ops.sum(hidden * mask, axis=1) / count
        return ops.cast(self.head(pooled), "float32")

    def attention_scores(self, inputs):
        """Attention probabilities of every transformer layer (inference mode).

        Returns a list (one per layer) of float32 `[B, num_heads, T, T]`; rows of padded
        query frames and columns of padded key frames are zero.
        """
        (_, scores), _ = self._encode(inputs, training=False, return_attention_scores=True)
        return [ops.cast(s, "float32") for s in scores]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "max_len": self.max_len,
                "embed_dim": self.embed_dim,
                "dense_dim": self.dense_dim,
                "transfo_dim": self.transfo_dim,
                "transfo_layers": self.transfo_layers,
                "num_heads": self.num_heads,
                "drop_rate": self.drop_rate,
                "pos_conv_padding": self.pos_conv_padding,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # A model saved before the option existed trained with the value from before it.
        return cls(**{"pos_conv_padding": VALUE_BEFORE_KEY["model", "pos_conv_padding"],
                      **config})


def build_classifier(model_config, num_classes, max_len, distilled=False, **kwargs):
    """Builds (creates all weights of) the big or the distilled model of a config.

    Args:
        model_config: the `model` section of a `tfislr.config.Config` (`ModelConfig`), or a
            dict with its keys (those left out: `ModelConfig`'s defaults).
        num_classes: number of output classes.
        max_len: sequence length / relative-position buckets (`config.data.max_len`).
        distilled: use `distill_dense_dim` / `distill_transfo_dim` (the exported model).
        **kwargs: passed to `ISLRClassifier` (e.g. `name`, `dtype`).

    Returns:
        A built `ISLRClassifier`; no data is run through it.
    """
    if isinstance(model_config, dict):
        get = {**dataclasses.asdict(ModelConfig()), **model_config}.__getitem__
    else:
        def get(key):
            return getattr(model_config, key)

    dense_dim = get("distill_dense_dim") if distilled else get("dense_dim")
    transfo_dim = get("distill_transfo_dim") if distilled else get("transfo_dim")
    model = ISLRClassifier(
        num_classes=num_classes,
        max_len=max_len,
        embed_dim=get("embed_dim"),
        dense_dim=dense_dim,
        transfo_dim=transfo_dim,
        transfo_layers=get("transfo_layers"),
        num_heads=get("num_heads"),
        drop_rate=get("drop_rate"),
        pos_conv_padding=get("pos_conv_padding"),
        **kwargs,
    )
    model.build(
        {
            "landmarks": (None, None, lm.NUM_POINTS, lm.NUM_COORDINATES),
            "padding_mask": (None, None),
        }
    )
    return model


def parameter_groups(model):
    """Trainable parameter counts by part: embedding, part_mlps, each transformer layer, head."""

    def count(layer):
        return sum(math.prod(v.shape) for v in layer.trainable_variables)

    groups = {"embedding": count(model.embedding), "part_mlps": count(model.part_mlps)}
    for k, layer in enumerate(model.encoder.encoder_layers):
        groups[f"deberta_layer_{k}"] = count(layer)
    groups["head"] = count(model.head)
    return groups
