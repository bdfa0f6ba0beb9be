"""Ghost batch normalisation: training statistics per group of clips, as on the original's GPUs.

The original trained on 8 GPUs with 32 clips each and BatchNorm not synchronised, so every
BatchNorm normalised each GPU's 32 clips with their own mean and variance (docs/recipe.md
§13). One device holding the global batch of 256 would normalise over all 256: different
statistics, different noise, a different model. `GhostBatchNormalization` cuts a replica's
batch into consecutive groups of `virtual_batch_size` clips (the field's term, Hoffer et al.
2017, also Keras 2's `BatchNormalization(virtual_batch_size=...)`) and normalises each group
over its own rows (clips × frames), so 1, 2 or 8 devices compute the original's per-GPU
statistics for the same global batch. The training pipeline sets the group to
`train.batch_group_size` (`set_virtual_batch_size`), the group of OUSM and mixup.

- A batch that is not a whole number of groups (a replica's last partial batch) ends with
  one smaller group, normalised over its own clips, as a GPU given fewer clips would.
- The moving statistics are updated once per step with the groups' statistics pooled
  (weighted by rows): the batch mean and the mean within-group variance, the values whose
  moving average each of the original's GPUs kept. That variance is unbiased, each group's
  times n / (n - 1) for its n rows, as torch's BatchNorm keeps it (Keras' keeps the biased
  one; the batch is normalised with the biased one in both).
- Inference (`training=False`, or `trainable=False`) uses the moving statistics: it does not
  depend on the group, so exported graphs are those of a plain BatchNorm. An empty batch,
  `virtual_batch_size=None`, a `mask`, `synchronized=True` or `renorm` fall back to
  `tfislr.model.empty_batch.BatchNormalization` (whole-batch statistics).

Works on channels-last inputs `[B, ..., C]` (the model's `[B, T, C]`), with the layer's
`axis = -1`.
"""

import keras
import tensorflow as tf
from keras import ops

from tfislr.model.empty_batch import BatchNormalization, if_rows


@keras.saving.register_keras_serializable(package="tfislr")
class GhostBatchNormalization(BatchNormalization):
    """BatchNormalization whose training statistics are per group of clips (module docstring).

    Args:
        virtual_batch_size: clips per group (axis 0), an int >= 1, or None for the whole
            batch (then it is `empty_batch.BatchNormalization`).
        **kwargs: those of `keras.layers.BatchNormalization`; `axis` must be the last one.

    Raises:
        ValueError: a `virtual_batch_size` below 1 or not an int; an `axis` other than the
            last one (when built).
    """

    def __init__(self, virtual_batch_size=None, **kwargs):
        super().__init__(**kwargs)
        self.virtual_batch_size = check_virtual_batch_size(virtual_batch_size)

    def build(self, input_shape):
        super().build(input_shape)
        if self.axis not in (-1, len(input_shape) - 1):
            raise ValueError(
                f"GhostBatchNormalization normalises channels-last inputs (axis -1), got "
                f"axis {self.axis} for inputs of shape {tuple(input_shape)}"
            )

    def call(self, inputs, training=None, mask=None):
        whole_batch = super().call
        if (not training or not self.trainable or self.virtual_batch_size is None
                or mask is not None or self.synchronized or self.renorm):
            return whole_batch(inputs, training=training, mask=mask)
        return if_rows(
            inputs,
            lambda: self._normalize_groups(inputs),
            lambda: whole_batch(inputs, training=False),
        )

    def _normalize_groups(self, inputs):
        size = self.virtual_batch_size
        x = ops.cast(inputs, "float32")  # as Keras' BatchNormalization: moments in float32
        shape = ops.shape(x)
        batch = shape[0]
        # A static batch that is a whole number of groups needs no padding (and no slice,
        # whose gradient is slow on CPU); otherwise the last group is padded with clips of
        # weight 0.
        exact = x.shape[0] is not None and x.shape[0] % size == 0
        groups = x.shape[0] // size if exact else (batch + size - 1) // size
        padding = 0 if exact else groups * size - batch
        weights = ops.ones((batch,), dtype=x.dtype)
        if not exact:
            x = ops.pad(x, [[0, padding]] + [[0, 0]] * (len(x.shape) - 1))
            weights = ops.pad(weights, [[0, padding]])
        channels = x.shape[-1]
        grouped = ops.reshape(x, (groups, size, -1, channels))  # [G, clips, rows, C]
        weights = ops.reshape(weights, (groups, size, 1, 1))
        rows_per_clip = ops.cast(ops.shape(grouped)[2], x.dtype)
        count = ops.sum(weights, axis=(1, 2), keepdims=True) * rows_per_clip  # [G, 1, 1, 1]
        mean = ops.sum(grouped * weights, axis=(1, 2), keepdims=True) / count
        variance = ops.sum(ops.square(grouped - mean) * weights, axis=(1, 2), keepdims=True) / count

        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        normalized = tf.nn.batch_normalization(grouped, mean, variance, beta, gamma, self.epsilon)
        outputs = ops.reshape(normalized, ops.shape(x))
        if not exact:
            outputs = outputs[:batch]

        total = ops.sum(count)
        pooled_mean = ops.reshape(ops.sum(mean * count, axis=0) / total, (channels,))
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)  # one row: as biased
        pooled_variance = ops.reshape(ops.sum(unbiased * count, axis=0) / total, (channels,))
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, x.dtype) * momentum + pooled_mean * (1.0 - momentum))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, x.dtype) * momentum + pooled_variance * (1.0 - momentum))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["virtual_batch_size"] = self.virtual_batch_size
        return config


def check_virtual_batch_size(value):
    """`value` if it is None or an int >= 1; else ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"virtual_batch_size must be None or an int >= 1, got {value!r}")
    return value


def set_virtual_batch_size(model, virtual_batch_size):
    """Sets the group of every `GhostBatchNormalization` in `model` (None: whole batch).

    Returns how many layers were set. Only training-mode calls traced afterwards see it.
    """
    virtual_batch_size = check_virtual_batch_size(virtual_batch_size)
    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, GhostBatchNormalization)]
    for layer in layers:
        layer.virtual_batch_size = virtual_batch_size
    return len(layers)
