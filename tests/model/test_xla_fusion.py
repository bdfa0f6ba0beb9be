"""XLA-compiled Mish and LayerNorm islands: Keras' math, compiled only in traced train steps."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

import keras

from tfislr.model import modes, xla_fusion
from tfislr.model.activations import mish
from tfislr.model.modes import tflite_layout
from tfislr.model.xla_fusion import LayerNormalization


def _value_and_grads(fn, x, variables=()):
    """fn(x), d sum(fn(x) * w) / d (x, variables) with a fixed random w, in a tf.function."""
    weight = tf.constant(np.random.default_rng(1).normal(size=x.shape), x.dtype)

    @tf.function
    def run(x):
        with modes.islands(), tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(weight, tf.float32))
        return y, tape.gradient(loss, [x, *[v.value for v in variables]])

    return run, run(x)


def _compiled_calls(run, x):
    """Names of the jit-compiled functions the traced graph of `run` calls."""
    graph = run.get_concrete_function(x).graph
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    return sorted(name for name, f in library.items() if f.attr["_XlaMustCompile"].b)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(3, 7, 24), (10, 24)])
def test_layer_norm_is_keras_layer_norm_compiled(dtype, shape):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape) * 3 + 1, dtype)
    ours = LayerNormalization(epsilon=1e-7, dtype=dtype)
    theirs = keras.layers.LayerNormalization(epsilon=1e-7, dtype=dtype)
    gamma, beta = rng.normal(size=shape[-1:]), rng.normal(size=shape[-1:])
    for layer in (ours, theirs):
        layer.build(shape)
        layer.set_weights([gamma, beta])
    run, (y, grads) = _value_and_grads(ours, x, ours.trainable_variables)
    _, (y_ref, grads_ref) = _value_and_grads(theirs, x, theirs.trainable_variables)
    assert _compiled_calls(run, x), "the layer norm did not run as an XLA island"
    assert y.dtype == y_ref.dtype == x.dtype
    tol = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(np.float32(y), np.float32(y_ref), rtol=tol, atol=tol)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(np.float32(g), np.float32(g_ref), rtol=10 * tol, atol=10 * tol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mish_is_keras_mish_compiled(dtype):
    x = tf.constant(np.linspace(-30, 30, 4 * 301).reshape(4, 301), dtype)
    run, (y, (grad,)) = _value_and_grads(mish, x)
    _, (y_ref, (grad_ref,)) = _value_and_grads(
        lambda v: tf.cast(keras.activations.mish(tf.cast(v, tf.float32)), v.dtype), x)
    assert _compiled_calls(run, x), "mish did not run as an XLA island"
    tol = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(np.float32(y), np.float32(y_ref), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.float32(grad), np.float32(grad_ref), rtol=tol, atol=tol)


def test_islands_only_in_traced_graphs_outside_the_export_layout(monkeypatch):
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 8)), tf.float32)
    layer = LayerNormalization()
    layer.build(x.shape)

    def traced_calls(in_islands=True):
        def step(v):
            with modes.islands() if in_islands else contextlib.nullcontext():
                return mish(layer(v))

        return _compiled_calls(tf.function(step), x)

    assert len(traced_calls()) == 2  # mish and the layer norm
    # Evaluation, prediction and export graphs (clips of every length): Keras' own ops.
    assert traced_calls(in_islands=False) == []
    # Eager calls run Keras' own ops (no tf.function is built for a single call).
    assert xla_fusion.compiled("mish", keras.activations.mish) is keras.activations.mish
    with tflite_layout():  # the export: only TFLite builtins, no XLA cluster
        assert traced_calls() == []
    monkeypatch.setenv("TFISLR_XLA_FUSION", "0")  # a platform without XLA
    assert traced_calls() == []


def test_the_export_parity_reference_has_no_islands():
    """The export's parity reference runs one clip at a time, of every length: with XLA
    islands each new length compiled again (tester8 #5: minutes of "Compiling module
    ...mish..." in an int8 export). Neither of the module's functions has an island."""
    from tfislr.config import ModelConfig
    from tfislr.export import EnsembleMember
    from tfislr.export.graph import build_ensemble_module
    from tfislr.model import build_classifier

    config = ModelConfig(embed_dim=4, dense_dim=16, transfo_dim=32, distill_dense_dim=16,
                         distill_transfo_dim=32, transfo_layers=1, num_heads=4, drop_rate=0.0)
    model = build_classifier(config, 3, 8, distilled=True)
    module = build_ensemble_module([EnsembleMember("tiny", model, 8, ["a", "b", "c"])])
    frames = tf.zeros([5, 543, 3])
    assert _compiled_calls(module.reference, frames) == []
    assert _compiled_calls(module.serving_default, frames) == []
    # ... while the same model traced in a train step (`islands()`) has them.
    def step(x):
        with modes.islands():
            return model({"landmarks": x, "padding_mask": tf.ones([1, 5])}, training=True)

    assert _compiled_calls(tf.function(step), tf.zeros([1, 5, 100, 3]))
