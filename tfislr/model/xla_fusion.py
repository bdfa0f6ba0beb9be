"""Element-wise chains compiled by XLA inside the ordinary TensorFlow step: same math.

Without XLA, TensorFlow runs Mish (`x · tanh(softplus(x))`) and Keras' LayerNorm (moments,
rsqrt, scale, shift) as chains of separate element-wise kernels, each reading and writing
the whole activation, and their gradients as longer chains. XLA fuses each chain into one
loop, which `python benchmarks/xla_fusion.py` measures (figures: benchmarks/README.md);
XLA:CPU's dropout masks are slower than TensorFlow's and its matrix products no faster, so
only these chains are compiled, as islands, which makes the len80 step faster. The
whole-step XLA path (`train.jit_compile`) inlines them.

`compiled(name, fn)` is `fn` under `tf.function(jit_compile=True)` while a train step is
being traced (inside `modes.islands()`, which `MeanTeacherDistiller.train_step` enters) and `fn`
itself otherwise: in eager calls, in evaluation, prediction and export graphs, on other
Keras backends and when the environment sets `TFISLR_XLA_FUSION=0` (a platform without
XLA). XLA compiles once per input shape: a train step's batches are padded to one length,
while evaluation and export run clips of every length, where each new length would cost a
compilation of every island (minutes for an ensemble's parity check). The exported graph
holds only TFLite builtins.
"""

import functools
import os
import re

import keras
from keras import ops

from tfislr.model import modes, xla

_COMPILED = {}


def enabled():
    """Whether `compiled` compiles: TF backend, inside `modes.islands()` in a traced graph,
    not in the TFLite layout, and `TFISLR_XLA_FUSION` is not "0" (module docstring)."""
    if (
        not modes.islands_active()
        or keras.backend.backend() != "tensorflow"
        or os.environ.get("TFISLR_XLA_FUSION") == "0"
    ):
        return False
    import tensorflow as tf

    return tf.inside_function() and not modes.tflite_layout_active()


def compiled(name, fn):
    """`fn` jit-compiled when `enabled()` (module docstring), else `fn`.

    Args:
        name: a key for the compiled function; one per distinct `fn` (the compiled
            function is kept per name, so that every layer shares its traces). Its part
            before the first "/" names the function in graphs and profiles.
        fn: a function of tensors whose non-tensor parameters are bound (for example by
            `functools.partial` with hashable values, part of `name`).
    """
    if not enabled():
        return fn
    if name not in _COMPILED:
        import tensorflow as tf

        # Before XLA's first compilation in this process, which reads XLA_FLAGS once: a
        # later jit-compiled step (`train.jit_compile`) needs these emitters too.
        xla.use_cpu_loop_emitters()

        def island(*args):
            return fn(*args)

        # The function's name in graphs and profiles: the key's first part ("mish", ...).
        island.__name__ = island.__qualname__ = re.sub(r"\W+", "_", name.split("/")[0])
        # reduce_retracing: one trace serves every shape (XLA still compiles each shape it
        # runs), so the many widths of the three models do not trip TF's retracing warning.
        _COMPILED[name] = tf.function(
            island, jit_compile=True, autograph=False, reduce_retracing=True
        )
    return _COMPILED[name]


def tensors(*values):
    """TensorFlow tensors of `values` (tensors, Keras variables): a compiled function takes
    tensors, not Keras variables."""
    import tensorflow as tf

    return [tf.convert_to_tensor(v) for v in values]


@keras.saving.register_keras_serializable(package="tfislr")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` whose `call` runs as one XLA island (module docstring).

    Same arguments, variables, config and math (`keras.ops.layer_normalization`); with
    `rms_scaling` or without `center`/`scale` it is Keras' own `call`.
    """

    def call(self, inputs):
        if self.rms_scaling or not (self.center and self.scale):
            return super().call(inputs)
        layer_norm = compiled(
            # Keras' layer_normalization needs the rank and the normalised width, which a
            # relaxed trace would lose: one function per (rank, width).
            f"layer_norm/{self.axis}/{self.epsilon!r}/{len(inputs.shape)}/{inputs.shape[-1]}",
            functools.partial(ops.layer_normalization, axis=self.axis, epsilon=self.epsilon),
        )
        outputs = layer_norm(*tensors(inputs, self.gamma, self.beta))
        return ops.cast(outputs, self.compute_dtype)
