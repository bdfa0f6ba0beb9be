"""The classifier converts to TFLite (builtin ops, dynamic T) with Keras parity, and runs
under mixed precision."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfislr.config import load_config
from tfislr.export import graph
from tfislr.model import ISLRClassifier, build_classifier
from tfislr.model.modes import tflite_layout

SMALL = dict(
    num_classes=7, max_len=6, embed_dim=16, dense_dim=16, transfo_dim=32,
    transfo_layers=3, num_heads=4, drop_rate=0.1,
)


class LandmarkServing(tf.Module):
    """One unbatched clip `[T, 100, 3]` -> logits, converted by the export's own `convert`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.weights_for_tracking = graph.backing_variables([model])

    @tf.function(input_signature=[tf.TensorSpec([None, 100, 3], tf.float32, name="landmarks")])
    def serving_default(self, landmarks):
        batch = landmarks[None]
        mask = tf.ones(tf.shape(batch)[:2], tf.float32)
        logits = self.model({"landmarks": batch, "padding_mask": mask}, training=False)
        return {"logits": logits[0]}


def convert(model, layout="training"):
    """fp32 TFLite bytes, traced in the training graph or the export's `tflite_layout`."""
    serving = LandmarkServing(model)
    with tflite_layout() if layout == "tflite" else contextlib.nullcontext():
        serving.serving_default.get_concrete_function()
    return graph.convert(serving, "fp32")


def check_tflite(model, lengths, tolerance=1e-4, layout="training"):
    from ai_edge_litert.interpreter import Interpreter

    blob = convert(model, layout)
    interpreter = Interpreter(model_content=blob)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not {"VAR_HANDLE", "READ_VARIABLE", "CUSTOM"} & ops, ops
    assert not any(name.startswith("Flex") for name in ops), ops
    runner = interpreter.get_signature_runner("serving_default")
    rng = np.random.default_rng(0)
    for length in lengths:  # one runner, varying T: the time axis is dynamic
        clip = rng.normal(size=(length, 100, 3)).astype("float32")
        got = runner(landmarks=clip)["logits"]
        expected = np.asarray(model({"landmarks": clip[None], "padding_mask": np.ones((1, length), "float32")}))[0]
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance,
                                   err_msg=f"TFLite != Keras at T={length}")
    return blob


# The export traces the models in the TFLite layout: that case runs in CI (`large`: a TFLite
# conversion of the three-layer stack); the training layout converted directly (no export
# uses it) is extra_large only.
@pytest.mark.parametrize("layout", [pytest.param("training", marks=pytest.mark.extra_large),
                                    pytest.param("tflite", marks=pytest.mark.large)])
def test_tflite_builtins_dynamic_time_parity(layout):
    """Keras (training graph) vs the file, also for the export layout and T > max_len."""
    model = ISLRClassifier(**SMALL)
    model({"landmarks": np.zeros((1, 3, 100, 3), "float32"), "padding_mask": np.ones((1, 3), "float32")})
    check_tflite(model, lengths=(1, 4, 6, 15, 2), layout=layout)


@pytest.mark.extra_large
@pytest.mark.parametrize("name", ["len25", "len80"])
def test_tflite_full_size_distilled(name):
    config = load_config(name)
    model = build_classifier(config.model, 250, config.data.max_len, distilled=True)
    max_len = config.data.max_len
    blob = check_tflite(model, lengths=(1, max_len // 2, max_len - 1, max_len, max_len + 20))
    # fp32 weights: ~4 bytes a parameter (constants folded, nothing duplicated)
    params = model.count_params()
    assert 3.9 * params < len(blob) < 4.6 * params


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_is_finite(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = ISLRClassifier(**SMALL)
        rng = np.random.default_rng(1)
        mask = (np.arange(9)[None] < np.array([[9], [5], [2], [7]])).astype("float32")
        batch = {"landmarks": rng.normal(size=(4, 9, 100, 3)).astype("float32") * 5,
                 "padding_mask": mask}
        for training in (False, True):
            logits = model(batch, training=training)
            assert logits.dtype == tf.float32
            assert np.isfinite(logits.numpy()).all()
        mixed = model(batch, training=True,
                      mixup={"lambda": np.full(4, 0.4, "float32"), "permutation": [1, 0, 3, 2], "layer": 1})
        assert np.isfinite(mixed.numpy()).all()
        assert model.encoder.encoder_layers[0].attention.compute_dtype == policy.split("_")[1]
        scores = model.attention_scores(batch)
        assert all(np.isfinite(np.asarray(s)).all() for s in scores)
        # gradients exist and are finite (float16 without loss scaling: small model, fine)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                np.array([0, 1, 2, 3]), model(batch, training=True), from_logits=True
            )
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        assert all(g is not None for g in grads)
        assert all(tf.reduce_all(tf.math.is_finite(tf.cast(tf.convert_to_tensor(g), tf.float32))) for g in grads)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


@pytest.mark.extra_large  # ~12 s of CPU for the XLA compile of the backward pass
def test_xla_jit_compile_matches_and_trains():
    """runtime.jit_compile: the dynamic row window of the attention compiles under XLA."""
    model = ISLRClassifier(**{**SMALL, "transfo_layers": 1})  # one layer: compile time
    mask = (np.arange(9)[None] < np.array([[9], [4]])).astype("float32")
    batch = {"landmarks": np.random.default_rng(2).normal(size=(2, 9, 100, 3)).astype("float32"),
             "padding_mask": mask}
    expected = model(batch).numpy()
    compiled = tf.function(lambda x: model(x), jit_compile=True)
    np.testing.assert_allclose(compiled(batch).numpy(), expected, rtol=1e-5, atol=1e-5)

    @tf.function(jit_compile=True)
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(x, training=True)))
        return tape.gradient(loss, [v.value for v in model.trainable_variables])

    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in gradients(batch))
