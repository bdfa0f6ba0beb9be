"""DisentangledSelfAttention against an independent numpy formula and keras-hub's DeBERTa-v3.

The numpy reference below is written from the formula (docs/recipe.md §7 and HF's code), not from
our layer: explicit per-pair relative indices, no row windows, no gathers of score rows.

p2c index convention: HF's code (which the original ran) computes the position-to-content
term as K_j . Qr[clamp(bucket(i - j) + P)] (gather with `-r + P`, then transpose); keras-hub
reproduces it. docs/recipe.md §7 writes `c(j, i)` (the paper's notation, bucket(j - i)), which
would flip the sign of the distance. We follow the code; `test_matches_keras_hub` pins it.
"""

import contextlib
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfislr.model import DisentangledSelfAttention, log_bucket_position, relative_position_index
from tfislr.model.modes import tflite_layout

from test_case import B, T, TestCase, padding_mask, random


def bucket_reference(r, bucket_size, max_position):
    """HF make_log_bucket_position in exact (float64) arithmetic, one integer at a time."""
    mid = bucket_size // 2
    if abs(r) <= mid:
        return r
    value = math.log(abs(r) / mid) / math.log((max_position - 1) / mid) * (mid - 1)
    if abs(value - round(value)) < 1e-9:  # exact integers (|r| = max_position - 1)
        value = round(value)
    return int(math.copysign(math.ceil(value) + mid, r))


def attention_reference(x, table, weights, num_heads, buckets, mask):
    """Disentangled attention in float64 numpy, straight from the formula."""
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = weights
    batch, length, hidden = x.shape
    d = hidden // num_heads

    def heads(a):
        return a.reshape(a.shape[:-1] + (num_heads, d))

    q, k, v = heads(x @ wq + bq), heads(x @ wk + bk), heads(x @ wv + bv)  # [B, T, H, d]
    qr, kr = heads(table @ wq + bq), heads(table @ wk + bk)  # [2P, H, d]
    c = np.empty((length, length), int)
    for i in range(length):
        for j in range(length):
            c[i, j] = min(max(bucket_reference(i - j, buckets, buckets) + buckets, 0), 2 * buckets - 1)
    c2c = np.einsum("bihd,bjhd->bhij", q, k)
    c2p = np.einsum("bihd,ijhd->bhij", q, kr[c])
    p2c = np.einsum("bjhd,ijhd->bhij", k, qr[c])
    scores = (c2c + c2p + p2c) / math.sqrt(3 * d)
    pair = mask[:, None, :, None] * mask[:, None, None, :] > 0
    scores = np.where(pair, scores, -np.inf)
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.where(pair, np.exp(scores - row_max), 0.0)
    total = exp.sum(-1, keepdims=True)
    probs = np.where(total > 0, exp / np.where(total > 0, total, 1.0), 0.0)
    context = np.einsum("bhij,bjhd->bihd", probs, v).reshape(batch, length, hidden)
    return context @ wo + bo, probs


def layer_weights(layer):
    dense = [layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense]
    return [(np.asarray(d.kernel, np.float64), np.asarray(d.bias, np.float64)) for d in dense]


@pytest.mark.parametrize("bucket_size", [3, 4, 5, 8, 25, 80])
def test_log_bucket_position_matches_exact_formula(bucket_size):
    r = np.arange(-4 * bucket_size - 7, 4 * bucket_size + 8)
    ours = np.asarray(log_bucket_position(r, bucket_size, bucket_size))
    expected = np.array([bucket_reference(int(v), bucket_size, bucket_size) for v in r])
    # magnitudes saturate at bucket_size (documented): the callers' clamp maps both alike
    np.testing.assert_array_equal(ours, np.clip(expected, -bucket_size, bucket_size))


def test_log_bucket_position_in_tflite_is_identical():
    """The exported graph computes the same buckets (integer ops only) for any length."""
    from ai_edge_litert.interpreter import Interpreter

    class Index(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, frames):
            return {"index": relative_position_index(tf.shape(frames)[0], 80)}

    module = Index()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = Interpreter(model_content=converter.convert()).get_signature_runner()
    for length in (1, 25, 79, 80, 200):
        got = runner(frames=np.zeros(length, np.float32))["index"]
        expected = np.clip(
            [[bucket_reference(i - j, 80, 80) + 80 for j in range(length)] for i in range(length)],
            0, 159,
        )
        np.testing.assert_array_equal(got, expected)


def test_seed_bucket_facts():
    """docs/recipe.md §7: P=25 changes only |r| in 13..20 and 24; P=80 changes |r| = 41..78."""
    r = np.arange(0, 25)
    changed = r[np.asarray(log_bucket_position(r, 25, 25)) != r]
    assert changed.tolist() == list(range(13, 21)) + [24]
    assert int(log_bucket_position(np.array([24]), 25, 25)[0]) == 23
    r = np.arange(0, 80)
    b = np.asarray(log_bucket_position(r, 80, 80))
    assert r[b != r].tolist() == list(range(41, 79))
    assert (b[41], b[60], b[78]) == (42, 64, 79)


def test_log_bucket_position_matches_keras_hub():
    from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
        DisentangledSelfAttention as HubAttention,
    )

    for size in (25, 80):
        hub = HubAttention(num_heads=1, hidden_dim=8, max_position_embeddings=size, bucket_size=size)
        r = np.arange(-3 * size, 3 * size + 1, dtype="int32")
        expected = np.asarray(hub._make_log_bucket_position(keras.ops.convert_to_tensor(r)))
        ours = np.asarray(log_bucket_position(r, size, size))
        np.testing.assert_array_equal(ours, np.clip(expected, -size, size))


def test_relative_position_index_beyond_max_len_is_clamped():
    index = np.asarray(relative_position_index(40, 6))
    assert index.min() == 0 and index.max() == 11
    assert index[39, 0] == 11 and index[0, 39] == 0 and (np.diag(index) == 6).all()


@pytest.mark.parametrize("layout", ["training", "tflite"])
@pytest.mark.parametrize("length,buckets", [(1, 6), (5, 6), (6, 6), (11, 6), (9, 25), (40, 6)])
def test_matches_numpy_reference(length, buckets, layout):
    """Both layouts (the training skew and the export's row gather, `tflite_layout`)."""
    rng = np.random.default_rng(length)
    hidden, num_heads, batch = 24, 3, 3
    layer = DisentangledSelfAttention(num_heads, hidden, buckets)
    x = rng.normal(size=(batch, length, hidden)).astype("float32")
    table = rng.normal(size=(2 * buckets, hidden)).astype("float32")
    lengths = np.array([length, max(1, length - 2), 1])
    mask = (np.arange(length)[None] < lengths[:, None]).astype("float32")
    with tflite_layout() if layout == "tflite" else contextlib.nullcontext():
        out, probs = layer(x, table, padding_mask=mask, return_attention_scores=True)
        out_unmasked = layer(x, table)
    expected, expected_probs = attention_reference(
        x.astype(np.float64), table.astype(np.float64), layer_weights(layer), num_heads, buckets, mask
    )
    np.testing.assert_allclose(np.asarray(probs), expected_probs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    # without a mask: all frames attend to all frames
    out = out_unmasked
    expected, _ = attention_reference(
        x.astype(np.float64), table.astype(np.float64), layer_weights(layer), num_heads, buckets,
        np.ones((batch, length)),
    )
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [7, 12])
def test_matches_keras_hub(length):
    """Same weights, same settings -> same outputs (1e-5), padded query rows included.

    Settings that coincide: num_heads, hidden_dim, `bucket_size = max_position_embeddings =
    P` (HF's position_buckets = max_relative_positions), c2p + p2c with shared query/key
    projections (keras-hub always shares), scale 1/sqrt(3d), log buckets, clamp to
    [0, 2P), output projection inside the layer, masked softmax that zeroes fully masked
    rows (keras.layers.Softmax does since Keras 3).
    Settings that differ (adapted here, not compared): keras-hub takes the relative table
    with a batch axis `[B, 2P, h]` (we broadcast ours), a `[B, T, T]` attention mask (we pass
    the pair mask m_i * m_j), per-head `EinsumDense` kernels `[h, heads, d]` (ours are
    `[h, h]` Dense kernels, reshaped), Glorot initialisers (ours torch defaults; weights are
    copied), and a bucket function without our 1e-4 guard (equal for these sizes, tested
    above). Dropout is off in both (inference).
    """
    from keras_hub.src.models.deberta_v3.disentangled_self_attention import (
        DisentangledSelfAttention as HubAttention,
    )

    rng = np.random.default_rng(3)
    hidden, num_heads, buckets, batch = 32, 4, 8, 2
    d = hidden // num_heads
    x = rng.normal(size=(batch, length, hidden)).astype("float32")
    table = rng.normal(size=(2 * buckets, hidden)).astype("float32")
    mask = (np.arange(length)[None] < np.array([[length], [length - 3]])).astype("float32")

    ours = DisentangledSelfAttention(num_heads, hidden, buckets)
    ours(x, table)
    hub = HubAttention(
        num_heads=num_heads, hidden_dim=hidden, max_position_embeddings=buckets,
        bucket_size=buckets, dropout=0.0,
    )
    hub.build(x.shape)
    for mine, theirs in [
        (ours.query_dense, hub._query_dense),
        (ours.key_dense, hub._key_dense),
        (ours.value_dense, hub._value_dense),
    ]:
        theirs.kernel.assign(np.asarray(mine.kernel).reshape(hidden, num_heads, d))
        theirs.bias.assign(np.asarray(mine.bias).reshape(num_heads, d))
    hub._output_dense.kernel.assign(np.asarray(ours.output_dense.kernel))
    hub._output_dense.bias.assign(np.asarray(ours.output_dense.bias))

    pair_mask = mask[:, :, None] * mask[:, None, :]
    expected = hub(x, np.broadcast_to(table, (batch,) + table.shape), attention_mask=pair_mask)
    got = ours(x, table, padding_mask=mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    # and unmasked (keras-hub 0.32 fails with attention_mask=None: pass an all-ones mask)
    ones = np.ones((batch, length, length), "float32")
    expected = hub(x, np.broadcast_to(table, (batch,) + table.shape), attention_mask=ones)
    np.testing.assert_allclose(np.asarray(ours(x, table)), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_gradients_flow_to_every_weight():
    layer = DisentangledSelfAttention(2, 8, 4)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32"))
    table = tf.Variable(np.random.default_rng(1).normal(size=(8, 8)).astype("float32"))
    mask = tf.constant([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x, table, padding_mask=mask)))
    grads = tape.gradient(loss, [v.value for v in layer.trainable_variables] + [table])
    assert all(g is not None and np.isfinite(np.asarray(g)).all() for g in grads)
    # only the rows reachable at T=5 (bucket(+-4) + 4 -> rows 0..7 for P=4) get gradient
    assert np.abs(np.asarray(grads[-1])).sum() > 0


# The shared layer harness (tests/test_case.py) on the layer.
class TestDisentangledSelfAttention(TestCase):
    def test_disentangled_self_attention(self, tmp_path):
        buckets = 5  # T = 7 > 5 exercises the saturating buckets and the clamp
        batch = {
            "inputs": random(B, T, 32),
            "rel_embeddings": random(2 * buckets, 32, seed=1),
            "padding_mask": padding_mask(),
        }
        self.run_layer_test(
            DisentangledSelfAttention,
            {"num_heads": 4, "hidden_dim": 32, "position_buckets": buckets, "dropout": 0.1},
            batch,
            lambda layer, b, **kw: layer(
                b["inputs"], b["rel_embeddings"], padding_mask=b["padding_mask"], **kw
            ),
            expected_output_shape=(B, T, 32),
            padded_keys=["inputs"],
            static_keys=["rel_embeddings"],
            deterministic_kwargs={"dropout": 0.0},
            long_length=23,
            expected_num_trainable_weights=8,
            tmp_path=tmp_path,
        )
