"""Mish for every compute dtype, with a GPU kernel under `mixed_bfloat16`.

mish(x) = x · tanh(softplus(x)) (Misra 2019; the original's activation). TensorFlow has no
GPU kernel for `Softplus` in bfloat16 (float32 and float16 only; its gradient has one), so
`keras.activations.mish` on a bfloat16 tensor outside XLA runs on the host: two copies
between device and host for every activation of every step (and of every evaluation, which
Keras does not XLA-compile on several replicas). `mish` computes bfloat16 inputs in float32
and casts back (the same function, rounded once instead of at each stage).
"""

import keras
from keras import ops


def _mish_in_float32(x):
    return ops.cast(keras.activations.mish(ops.cast(x, "float32")), x.dtype)


@keras.saving.register_keras_serializable(package="tfislr")
def mish(x):
    """`x · tanh(softplus(x))`, any shape; bfloat16 in float32 (module docstring)."""
    if keras.backend.standardize_dtype(x.dtype) != "bfloat16":
        return keras.activations.mish(x)
    return _mish_in_float32(x)
