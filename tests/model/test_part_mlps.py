"""model.part_mlps: PartMLP and PartMLPs through the layer harness, centering on real frames,
the point selection as a gather."""

import numpy as np
import pytest
from tfislr import landmarks as lm
from tfislr.model import PartMLP, PartMLPs

from test_case import B, T, TestCase, padding_mask, random


class TestPartMLP(TestCase):
    def test_part_mlp(self, tmp_path):
        batch = {"features": random(B, T, 100, 8), "padding_mask": padding_mask()}
        self.run_layer_test(
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


class TestPartMLPs(TestCase):
    def test_part_mlps(self, tmp_path):
        batch = {"features": random(B, T, 100, 8), "padding_mask": padding_mask()}
        layer = self.run_layer_test(
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
