"""The seed's DeBERTa stack: `DebertaLayer`s in turn, with manifold mixup before one of them."""

import keras
from keras import ops

from tfislr.model.deberta_layer import DebertaLayer


@keras.saving.register_keras_serializable(package="tfislr")
class DebertaEncoder(keras.layers.Layer):
    """A stack of `DebertaLayer`s (the seed: 3 single-layer encoders, each its own table).

    Args:
        hidden_dims, output_dims, dropout_rates: per-layer lists of equal length, with
            `output_dims[k] == hidden_dims[k + 1]` (see `transformer_widths`).
        num_heads, position_buckets, layer_norm_epsilon: as in `DebertaLayer`.

    Call: `(hidden [B, T, hidden_dims[0]], padding_mask=None [B, T], mixup=None,
    training=None, return_attention_scores=False) -> [B, T, output_dims[-1]]`
    (with `return_attention_scores`: `(output, [probabilities per layer])`).

    Manifold mixup: `mixup = {"lambda": f32[B], "permutation": int32[B], "layer": int32
    scalar or [B]}` mixes `h = lambda * h + (1 - lambda) * h[permutation]` right before layer
    `mixup["layer"]` (0-based, per clip when a vector) and from there on uses the union of
    the two padding masks.
    `layer` is a tensor, so one traced graph serves every draw.
    """

    def __init__(
        self,
        hidden_dims,
        output_dims,
        dropout_rates,
        num_heads,
        position_buckets,
        layer_norm_epsilon=1e-7,
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden_dims, output_dims, dropout_rates = (
            [int(v) for v in hidden_dims],
            [int(v) for v in output_dims],
            [float(v) for v in dropout_rates],
        )
        if not (len(hidden_dims) == len(output_dims) == len(dropout_rates) >= 1):
            raise ValueError(
                "hidden_dims, output_dims and dropout_rates must be non-empty lists of the "
                f"same length, got {hidden_dims}, {output_dims}, {dropout_rates}"
            )
        for k in range(len(hidden_dims) - 1):
            if output_dims[k] != hidden_dims[k + 1]:
                raise ValueError(
                    f"layer {k} outputs {output_dims[k]} but layer {k + 1} expects "
                    f"{hidden_dims[k + 1]}"
                )
        self.hidden_dims = hidden_dims
        self.output_dims = output_dims
        self.dropout_rates = dropout_rates
        self.num_heads = num_heads
        self.position_buckets = position_buckets
        self.layer_norm_epsilon = layer_norm_epsilon
        self.encoder_layers = [
            DebertaLayer(
                hidden,
                output,
                num_heads,
                position_buckets,
                dropout=rate,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=self.dtype_policy,
                name=f"deberta_layer_{k}",
            )
            for k, (hidden, output, rate) in enumerate(zip(hidden_dims, output_dims, dropout_rates))
        ]

    def build(self, hidden_shape, padding_mask_shape=None):
        shape = tuple(hidden_shape)
        for layer in self.encoder_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(
        self,
        hidden,
        padding_mask=None,
        mixup=None,
        training=None,
        return_attention_scores=False,
    ):
        if mixup is not None:
            if padding_mask is None:
                padding_mask = ops.ones(ops.shape(hidden)[:2], dtype=self.compute_dtype)
            weight = ops.cast(ops.reshape(mixup["lambda"], (-1, 1, 1)), self.compute_dtype)
            permutation = ops.cast(mixup["permutation"], "int32")
            mix_layer = ops.cast(mixup["layer"], "int32")
        all_scores = []
        for k, layer in enumerate(self.encoder_layers):
            if mixup is not None:
                # `layer` is a scalar or one index per clip ([B]): broadcast over (T, D).
                mix_here = ops.reshape(ops.equal(mix_layer, k), (-1, 1, 1))
                mixed = weight * hidden + (1.0 - weight) * ops.take(hidden, permutation, axis=0)
                hidden = ops.where(mix_here, mixed, hidden)
                union = ops.maximum(padding_mask, ops.take(padding_mask, permutation, axis=0))
                padding_mask = ops.where(mix_here[:, :, 0], union, padding_mask)
            hidden, scores = layer(
                hidden, padding_mask=padding_mask, training=training, return_attention_scores=True
            )
            all_scores.append(scores)
        if return_attention_scores:
            return hidden, all_scores
        return hidden

    def compute_output_shape(self, hidden_shape, padding_mask_shape=None):
        return tuple(hidden_shape[:-1]) + (self.output_dims[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dims": list(self.hidden_dims),
                "output_dims": list(self.output_dims),
                "dropout_rates": list(self.dropout_rates),
                "num_heads": self.num_heads,
                "position_buckets": self.position_buckets,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config

