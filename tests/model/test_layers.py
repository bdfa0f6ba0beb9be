"""The shared layer harness on every layer of tfislr.model (small dimensions, CPU-fast)."""

import numpy as np
import pytest

from test_case import run_layer_test
from tfislr import landmarks as lm
from tfislr.model import (
    DebertaEncoder,
    DebertaLayer,
    DisentangledSelfAttention,
    LandmarkEmbedding,
    PartMLP,
    PartMLPs,
)

B, T = 3, 7
LENGTHS = (7, 4, 2)  # element 0 unpadded, the others padded


def padding_mask(lengths=LENGTHS, length=T):
    return (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype("float32")


def random(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_landmark_embedding(tmp_path):
    batch = {"landmarks": random(B, T, 100, 3), "padding_mask": padding_mask()}
    run_layer_test(
        LandmarkEmbedding,
        {"embed_dim": 16},
        batch,
        lambda layer, b, **kw: layer(b["landmarks"], padding_mask=b["padding_mask"]),
        expected_output_shape=(B, T, 100, 16),
        padded_keys=["landmarks"],
        expected_num_trainable_weights=12,
        tmp_path=tmp_path,
    )


def test_landmark_embedding_padded_frames_get_padding_ids():
    """At padded frames the ids act as the original's padding id 0 (LayerNorm(0) = beta)."""
    layer = LandmarkEmbedding(embed_dim=16)
    x = random(1, 3, 100, 3)
    out = np.asarray(layer(x, padding_mask=np.array([[1, 1, 0]], "float32")))
    real = np.asarray(layer(x, padding_mask=np.ones((1, 3), "float32")))
    # The padded frame differs from the same frame treated as real (ids and zeroed xyz) ...
    assert not np.allclose(out[0, 2], real[0, 2])
    # ... and equals the projection of [beta_type, beta_landmark, position] for every point.
    kernel = np.asarray(layer.feature_dense.kernel)
    beta = np.concatenate([np.asarray(layer.type_norm.beta), np.asarray(layer.landmark_norm.beta)])
    id_part = beta @ kernel[:32] + np.asarray(layer.feature_dense.bias)
    zeroed = x.copy()
    zeroed[:, 2] = 0
    extended = np.pad(zeroed, [(0, 0), (0, 2), (0, 0), (0, 0)])  # zero-extended time
    # conv_2 is "valid" on conv_1's outputs with the 2 front zeros of a "same" convolution
    front = np.pad(layer.conv_1(extended), [(0, 0), (2, 0), (0, 0), (0, 0)])
    conv = np.asarray(layer.conv_2(front))
    position = np.asarray(layer.position_dense(np.concatenate([zeroed, conv], -1)))
    np.testing.assert_allclose(out[0, 2], position[0, 2] @ kernel[32:] + id_part, atol=1e-5)


def test_landmark_embedding_rejects_wrong_point_count():
    with pytest.raises(ValueError, match="100, 3"):
        LandmarkEmbedding()(np.zeros((1, 2, 99, 3), "float32"))


def test_part_mlp(tmp_path):
    batch = {"features": random(B, T, 100, 8), "padding_mask": padding_mask()}
    run_layer_test(
        PartMLP,
        {"points": lm.FACE_POINTS, "units": 12, "dropout": 0.1, "center": True},
        batch,
        lambda layer, b, **kw: layer(b["features"], padding_mask=b["padding_mask"], **kw),
        expected_output_shape=(B, T, 12),
        padded_keys=["features"],
        # BN batch statistics include padded rows by design (as the original); the classifier
        # test shows that raw padded values still cannot leak.
        training_padding_invariant=False,
        expected_num_trainable_weights=4,
        tmp_path=tmp_path,
    )


def test_part_mlp_centering_uses_real_frames_only():
    layer = PartMLP(lm.LEFT_HAND_POINTS, 4, center=True)
    features = random(1, 5, 100, 2)
    mask = np.array([[1, 1, 1, 0, 0]], "float32")
    layer(features, padding_mask=mask)
    captured = {}
    original = layer.dense.call

    def spy(x):
        captured["x"] = np.asarray(x)
        return original(x)

    layer.dense.call = spy
    layer(features, padding_mask=mask)
    x = captured["x"].reshape(1, 5, 21, 2)
    hand = features[:, :, :21]
    expected = (hand - hand[:, :3].mean(axis=(1, 2), keepdims=True)) * mask[:, :, None, None]
    np.testing.assert_allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize(
    "point_lists",
    [
        [list(range(lm.NUM_POINTS)), lm.LEFT_HAND_POINTS, lm.RIGHT_HAND_POINTS, lm.LIPS_POINTS,
         lm.FACE_POINTS],  # what PartMLPs selects
        [lm.FACE_POINTS],
        [list(range(lm.NUM_POINTS))],
        [[5, 3, 4, 99], [4, 5, 6]],  # out of order, overlapping
    ],
)
def test_select_points_is_a_gather(point_lists):
    """One split picks exactly `features[:, :, points]` per list, and so does its gradient."""
    import tensorflow as tf

    from tfislr.model.part_mlps import select_points

    features = tf.constant(random(2, 3, 100, 2))
    weights = [tf.constant(random(2, 3, len(p), 2, seed=k)) for k, p in enumerate(point_lists)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        selected = select_points(features, point_lists)
        reference = [tf.gather(features, points, axis=2) for points in point_lists]
        loss, reference_loss = (
            sum(tf.reduce_sum(x * w) for x, w in zip(xs, weights)) for xs in (selected, reference)
        )
    for x, expected in zip(selected, reference):
        np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(
        tape.gradient(loss, features), tape.gradient(reference_loss, features)
    )
    if len(point_lists) == 1:
        np.testing.assert_array_equal(PartMLP(point_lists[0], 4)._select(features), reference[0])


def test_part_mlps(tmp_path):
    batch = {"features": random(B, T, 100, 8), "padding_mask": padding_mask()}
    layer = run_layer_test(
        PartMLPs,
        {"dense_dim": 16, "output_dim": 24, "drop_rate": 0.05},
        batch,
        lambda layer, b, **kw: layer(b["features"], padding_mask=b["padding_mask"], **kw),
        expected_output_shape=(B, T, 24),
        padded_keys=["features"],
        training_padding_invariant=False,  # see test_part_mlp
        expected_num_trainable_weights=24,
        tmp_path=tmp_path,
    )
    out = np.asarray(layer(batch["features"], padding_mask=batch["padding_mask"]))
    assert (out[batch["padding_mask"] == 0] == 0).all(), "padded frames must be zero"
    # dropout rule: halved below 256 units
    assert layer.left_hand_mlp.dropout == pytest.approx(0.025)
    assert layer.combine_dropout.rate == pytest.approx(0.05)
    assert PartMLPs(256, 8, 0.05).face_mlp.dropout == pytest.approx(0.05)


def test_disentangled_self_attention(tmp_path):
    buckets = 5  # T = 7 > 5 exercises the saturating buckets and the clamp
    batch = {
        "inputs": random(B, T, 32),
        "rel_embeddings": random(2 * buckets, 32, seed=1),
        "padding_mask": padding_mask(),
    }
    run_layer_test(
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


def test_deberta_layer(tmp_path):
    batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
    run_layer_test(
        DebertaLayer,
        {"hidden_dim": 32, "output_dim": 24, "num_heads": 4, "position_buckets": 6, "dropout": 0.1},
        batch,
        lambda layer, b, **kw: layer(b["hidden"], padding_mask=b["padding_mask"], **kw),
        expected_output_shape=(B, T, 24),
        padded_keys=["hidden"],
        deterministic_kwargs={"dropout": 0.0},
        long_length=19,
        expected_num_trainable_weights=19,
        tmp_path=tmp_path,
    )


def test_deberta_encoder(tmp_path):
    batch = {"hidden": random(B, T, 32), "padding_mask": padding_mask()}
    run_layer_test(
        DebertaEncoder,
        {
            "hidden_dims": [32, 48, 48],
            "output_dims": [48, 48, 24],
            "dropout_rates": [0.05, 0.1, 0.2],
            "num_heads": 4,
            "position_buckets": 6,
        },
        batch,
        lambda layer, b, **kw: layer(b["hidden"], padding_mask=b["padding_mask"], **kw),
        expected_output_shape=(B, T, 24),
        padded_keys=["hidden"],
        deterministic_kwargs={"dropout_rates": [0.0, 0.0, 0.0]},
        long_length=15,
        expected_num_trainable_weights=57,
        tmp_path=tmp_path,
    )


def test_deberta_encoder_rejects_mismatched_widths():
    with pytest.raises(ValueError, match="layer 0 outputs"):
        DebertaEncoder([32, 48], [40, 24], [0.0, 0.0], num_heads=4, position_buckets=4)
    with pytest.raises(ValueError, match="divisible"):
        DisentangledSelfAttention(num_heads=5, hidden_dim=32, position_buckets=4)
