"""Per-landmark embedding: temporal convolutions on the coordinates plus type/landmark ids."""

import keras
from keras import ops

from tfislr import landmarks as lm
from tfislr.model.empty_batch import if_rows
from tfislr.model.initializers import (
    torch_linear_bias_initializer,
    torch_linear_kernel_initializer,
)
from tfislr.model.modes import select_by_mask
from tfislr.model.per_frame import per_frame


@keras.saving.register_keras_serializable(package="tfislr")
class LandmarkEmbedding(keras.layers.Layer):
    """Embeds every landmark of every frame into `embed_dim` features (docs/recipe.md §6).

        type = LayerNorm(Embedding(9, E)(TYPE_IDS))            # constants, not inputs
        lm   = LayerNorm(Embedding(101, E)(LANDMARK_IDS))
        conv = Conv(conv_dim -> E)(Conv(3 -> conv_dim)(xyz))   # over time, per landmark,
                                                              # kernel 5, no bias, linear
        pos  = Dense(E)(concat[xyz, conv])
        out  = Dense(E)(concat[type, lm, pos])                 # [B, T, 100, E]

    The type/landmark ids are the constants of `tfislr.landmarks` (100 points); the input
    has no id channels.

    Padding (`padding_mask` `[B, T]`, 1 = real): padded coordinates are zeroed before
    anything else, so their values can never leak. At padded frames the ids are treated as
    the original's padding id 0 (a zero embedding row), i.e. `LayerNorm(0)` = the norm's
    beta. Outputs at padded frames are a function of the real frames only, and no output
    depends on how many padded frames follow.

    The sequence's end for the two "same" convolutions (`conv_window`, docs/recipe.md §20):
    the original trained on batches padded to exactly max_len frames, so the second
    convolution read zeros past frame max_len, where it reads the first convolution's outputs
    on zero frames for any shorter clip (a clip of max_len - 1 or max_len frames got a
    truncated second convolution at its last frames). `conv_window=max_len` computes exactly
    that, whatever the batch's padding: the first convolution's outputs count at the first
    `conv_window` frames and at real frames, and are zero elsewhere. `conv_window=None` lets
    them go on past every clip's end (time extended with zero frames, what the original's
    exported graph computed by appending two zero frames). The two differ only for clips of
    more than `conv_window - kernel_size // 2` frames.

    Args:
        embed_dim: int, E (16 in the seed).
        conv_dim: int, width of the first temporal convolution (8 in the seed).
        kernel_size: int, temporal kernel (5 in the seed, zero "same" padding).
        layer_norm_epsilon: float, epsilon of the two id norms (torch default 1e-5).
        conv_window: int >= 1, or None: frames after which the first convolution's outputs
            at padded frames are zero (the original's training: max_len); None: never.

    Call: `(landmarks [B, T, 100, 3], padding_mask=None [B, T]) -> [B, T, 100, embed_dim]`.
    """

    def __init__(self, embed_dim=16, conv_dim=8, kernel_size=5, layer_norm_epsilon=1e-5,
                 conv_window=None, **kwargs):
        super().__init__(**kwargs)
        if conv_window is not None and (isinstance(conv_window, bool)
                                        or not isinstance(conv_window, int) or conv_window < 1):
            raise ValueError(f"conv_window must be None or an int >= 1, got {conv_window!r}")
        self.embed_dim = embed_dim
        self.conv_window = conv_window
        self.conv_dim = conv_dim
        self.kernel_size = kernel_size
        self.layer_norm_epsilon = layer_norm_epsilon
        normal = keras.initializers.RandomNormal(stddev=1.0)  # torch nn.Embedding default
        self.type_embedding = keras.layers.Embedding(
            lm.NUM_TYPE_IDS, embed_dim, embeddings_initializer=normal,
            dtype=self.dtype_policy, name="type_embedding",
        )
        self.landmark_embedding = keras.layers.Embedding(
            lm.NUM_LANDMARK_IDS, embed_dim, embeddings_initializer=normal,
            dtype=self.dtype_policy, name="landmark_embedding",
        )
        self.type_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="type_norm"
        )
        self.landmark_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="landmark_norm"
        )
        # A (k, 1) 2-D convolution on [B, T, points, channels] is the per-landmark 1-D
        # convolution over time, without transposes (CONV_2D in TFLite).
        self.conv_1 = keras.layers.Conv2D(
            conv_dim, (kernel_size, 1), padding="same", use_bias=False,
            kernel_initializer=torch_linear_kernel_initializer(),
            dtype=self.dtype_policy, name="conv_1",
        )
        # "valid" on explicitly front-padded inputs: see `call`.
        self.conv_2 = keras.layers.Conv2D(
            embed_dim, (kernel_size, 1), padding="valid", use_bias=False,
            kernel_initializer=torch_linear_kernel_initializer(),
            dtype=self.dtype_policy, name="conv_2",
        )
        position_in = lm.NUM_COORDINATES + embed_dim
        self.position_dense = keras.layers.Dense(
            embed_dim, kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(position_in),
            dtype=self.dtype_policy, name="position_dense",
        )
        self.feature_dense = keras.layers.Dense(
            embed_dim, kernel_initializer=torch_linear_kernel_initializer(),
            bias_initializer=torch_linear_bias_initializer(3 * embed_dim),
            dtype=self.dtype_policy, name="feature_dense",
        )

    def build(self, landmarks_shape, padding_mask_shape=None):
        landmarks_shape = tuple(landmarks_shape)
        expected = (lm.NUM_POINTS, lm.NUM_COORDINATES)
        if len(landmarks_shape) != 4 or tuple(landmarks_shape[-2:]) != expected:
            raise ValueError(
                f"LandmarkEmbedding expects landmarks of shape [batch, time, "
                f"{expected[0]}, {expected[1]}], got {landmarks_shape}"
            )
        self.type_embedding.build((lm.NUM_POINTS,))
        self.landmark_embedding.build((lm.NUM_POINTS,))
        self.type_norm.build((lm.NUM_POINTS, self.embed_dim))
        self.landmark_norm.build((lm.NUM_POINTS, self.embed_dim))
        self.conv_1.build(landmarks_shape)
        # time left open: its "valid" input is longer than the landmarks (see `call`)
        self.conv_2.build((landmarks_shape[0], None, lm.NUM_POINTS, self.conv_dim))
        self.position_dense.build(landmarks_shape[:-1] + (3 + self.embed_dim,))
        self.feature_dense.build(landmarks_shape[:-1] + (3 * self.embed_dim,))

    def call(self, landmarks, padding_mask=None):
        x = ops.cast(landmarks, self.compute_dtype)
        if padding_mask is not None:
            frame_mask = ops.expand_dims(ops.cast(padding_mask, self.compute_dtype), (2, 3))
            x = x * frame_mask
        # The second convolution reads first-convolution outputs up to `kernel_size // 2`
        # frames past the last real frame; those are non-zero (they see real frames).
        # Appending that many zero frames makes every real frame's output independent of
        # how much padding follows it; `conv_window` then zeroes those past the original's
        # sequence end (class docstring).
        # The second convolution is "valid" on its input with the front zeros of "same":
        # the first T frames of the "same" convolution, with no output computed for the
        # overhang frames (slicing those off is a strided slice, whose gradient is slow on
        # CPU). Pads keep every shape derived from x's (no computed bounds in the exported
        # graph, see `deberta.tflite_layout`).
        overhang = self.kernel_size // 2
        conv = self._conv(self.conv_1, ops.pad(x, ((0, 0), (0, overhang), (0, 0), (0, 0))))
        if self.conv_window is not None:
            conv = conv * self._window(x, None if padding_mask is None else frame_mask, overhang)
        front = (self.kernel_size - 1) // 2  # "same" pads (k - 1) // 2 before, k // 2 after
        conv = self._conv(self.conv_2, ops.pad(conv, ((0, 0), (front, 0), (0, 0), (0, 0))))
        position = per_frame(self.position_dense, ops.concatenate([x, conv], axis=-1))

        # feature_dense(concat[type, lm, pos]) is split by kernel rows: the id part is the
        # same for every frame ([100, E] for real frames, [1, E] for padded ones), so it is
        # computed once instead of broadcasting 48 channels over [B, T, 100].
        E = self.embed_dim
        kernel = ops.cast(self.feature_dense.kernel, self.compute_dtype)
        bias = ops.cast(self.feature_dense.bias, self.compute_dtype)
        ids_real = ops.concatenate(
            [
                self.type_norm(self.type_embedding(ops.convert_to_tensor(lm.TYPE_IDS))),
                self.landmark_norm(
                    self.landmark_embedding(ops.convert_to_tensor(lm.LANDMARK_IDS))
                ),
            ],
            axis=-1,
        )
        id_features = ops.matmul(ids_real, kernel[: 2 * E]) + bias  # [100, E]
        features = per_frame(lambda rows: ops.matmul(rows, kernel[2 * E :]), position)
        if padding_mask is None:
            return features + id_features
        zeros = ops.zeros((1, E), dtype=self.compute_dtype)
        ids_padding = ops.concatenate([self.type_norm(zeros), self.landmark_norm(zeros)], axis=-1)
        pad_features = ops.matmul(ids_padding, kernel[: 2 * E]) + bias  # [1, E]
        return features + select_by_mask(frame_mask, id_features, pad_features)

    def _window(self, x, frame_mask, overhang):
        """`[B, T + overhang, 1, 1]`: 1 where the first convolution's output counts (the
        first `conv_window` frames and the real frames), else 0. `frame_mask` `[B, T, 1, 1]`,
        or None when every frame of `x` `[B, T, 100, 3]` is real."""
        # Ones and frame numbers by arithmetic on a tensor of the right shape and a
        # cumulative sum: RANGE or ones_like of a computed shape would make dynamic tensors
        # in the exported graph (`modes.tflite_layout`). The mask is finite; without one,
        # every frame of x is real (a NaN there is in the output anyway).
        shaped = ops.cast(x[:, :, :1, :1] if frame_mask is None else frame_mask, "float32")
        ones = shaped * 0.0 + 1.0  # [B, T, 1, 1]
        real = ones if frame_mask is None else shaped
        extend = ((0, 0), (0, overhang), (0, 0), (0, 0))
        # float32: counts exactly to 2**24 frames (float16 stops at 2048).
        number = ops.cumsum(ops.pad(ones, extend, constant_values=1.0), axis=1)
        counted = ops.maximum(ops.cast(number <= self.conv_window, "float32"),
                              ops.pad(real, extend))
        return ops.cast(counted, self.compute_dtype)

    @staticmethod
    def _conv(conv, x):
        """`conv(x)` (stride 1, over time), also for B = 0 (`if_rows`)."""
        shape = ops.shape(x)
        length = shape[1] if conv.padding == "same" else shape[1] - (conv.kernel_size[0] - 1)
        return if_rows(
            x, lambda: conv(x),
            lambda: ops.zeros((shape[0], length, shape[2], conv.filters), x.dtype),
        )

    def compute_output_shape(self, landmarks_shape, padding_mask_shape=None):
        return tuple(landmarks_shape[:-1]) + (self.embed_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embed_dim": self.embed_dim,
                "conv_dim": self.conv_dim,
                "kernel_size": self.kernel_size,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "conv_window": self.conv_window,
            }
        )
        return config
