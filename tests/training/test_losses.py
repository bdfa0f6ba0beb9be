"""Losses of the recipe: smoothed soft-target CE, OUSM, consistency (docs/recipe.md §11)."""

import numpy as np
import pytest
import tensorflow as tf

from tfislr.training import losses


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_smoothing_puts_point_seven_on_the_true_class():
    targets = losses.smooth_targets(tf.one_hot([2, 0], 250), 0.3).numpy()
    assert targets.shape == (2, 250)
    np.testing.assert_allclose(targets[0, 2], 0.7, rtol=1e-6)
    np.testing.assert_allclose(targets[0, 0], 0.3 / 249, rtol=1e-5)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-5)


def test_smoothing_of_mixed_targets_keeps_the_mass():
    mixed = losses.mixed_targets(
        tf.constant([0, 1, 2]), 5, lam=tf.constant([0.25, 1.0, 0.5]), permutation=tf.constant([1, 2, 0])
    ).numpy()
    np.testing.assert_allclose(mixed[0], [0.25, 0.75, 0, 0, 0])
    np.testing.assert_allclose(mixed[1], [0, 1, 0, 0, 0])
    np.testing.assert_allclose(mixed[2], [0.5, 0, 0.5, 0, 0])
    smoothed = losses.smooth_targets(mixed, 0.3).numpy()
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-6)
    # t' = t(1 − ε) + (1 − t)ε/(C − 1) elementwise.
    np.testing.assert_allclose(smoothed, mixed * 0.7 + (1 - mixed) * 0.3 / 4, rtol=1e-6)


def test_smoothing_rejects_bad_values():
    with pytest.raises(ValueError, match="smoothing"):
        losses.smooth_targets(tf.one_hot([0], 3), 1.0)
    with pytest.raises(ValueError, match="classes"):
        losses.smooth_targets(tf.ones((1, 1)), 0.1)


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 7)).astype("float32") * 3
    labels = rng.integers(0, 7, size=6)
    onehot = np.eye(7, dtype="float32")[labels]
    expected = -((onehot * 0.7 + (1 - onehot) * 0.05) * _log_softmax(logits)).sum(-1)
    got = losses.soft_target_cross_entropy(logits, onehot, 0.3).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_ousm_drops_exactly_the_k_largest(k):
    per_sample = tf.Variable([0.5, 9.0, 0.1, 4.0, 2.0, 7.0, 0.3, 1.0])
    with tf.GradientTape() as tape:
        value = losses.ousm_mean(per_sample, k)
    kept = np.sort(per_sample.numpy())[: 8 - k]
    np.testing.assert_allclose(value.numpy(), kept.mean(), rtol=1e-6)
    gradient = tf.convert_to_tensor(tape.gradient(value, per_sample)).numpy()
    # Exactly k samples get no gradient: the k largest.
    assert (gradient == 0).sum() == k
    dropped = np.argsort(per_sample.numpy())[8 - k:]
    assert set(np.flatnonzero(gradient == 0)) == set(dropped)
    np.testing.assert_allclose(gradient[gradient != 0], 1.0 / (8 - k), rtol=1e-6)


def test_ousm_keeps_one_sample_at_least():
    assert losses.ousm_mean(tf.constant([3.0, 1.0]), 5).numpy() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        losses.ousm_mean(tf.constant([1.0]), -1)


def test_ousm_drops_the_k_largest_of_each_group():
    rng = np.random.default_rng(3)
    per_sample = tf.Variable(rng.uniform(size=64).astype("float32"))
    with tf.GradientTape() as tape:
        value = losses.ousm_mean(per_sample, 3, group_size=32)
    groups = per_sample.numpy().reshape(2, 32)
    kept = np.sort(groups, axis=1)[:, :29]
    np.testing.assert_allclose(value.numpy(), kept.mean(), rtol=1e-6)
    gradient = tf.convert_to_tensor(tape.gradient(value, per_sample)).numpy().reshape(2, 32)
    for g in range(2):  # each group loses its own 3 largest, not the batch's 6 largest
        assert set(np.flatnonzero(gradient[g] == 0)) == set(np.argsort(groups[g])[29:])
    # One group = the whole batch.
    whole = losses.ousm_mean(per_sample[:32], 3, group_size=32).numpy()
    assert whole == pytest.approx(losses.ousm_mean(per_sample[:32], 3).numpy())
    assert float(losses.ousm_mean(tf.zeros([0]), 3, group_size=32)) == 0.0  # empty replica
    with pytest.raises(ValueError, match="whole number of OUSM groups of 32"):
        losses.ousm_mean(tf.zeros([48]), 3, group_size=32)
    with pytest.raises(ValueError, match="must exceed k"):
        losses.ousm_mean(tf.zeros([6]), 3, group_size=3)


def test_classification_loss_is_ce_then_ousm():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(10, 4)).astype("float32")
    targets = np.eye(4, dtype="float32")[rng.integers(0, 4, size=10)]
    per_sample = losses.soft_target_cross_entropy(logits, targets, 0.3).numpy()
    expected = np.sort(per_sample)[:7].mean()
    got = losses.classification_loss(logits, targets, smoothing=0.3, ousm_k=3).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_consistency_is_squared_softmax_difference_with_teacher_stopped():
    rng = np.random.default_rng(2)
    student = tf.Variable(rng.normal(size=(5, 6)).astype("float32"))
    teacher = tf.Variable(rng.normal(size=(5, 6)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        value = losses.consistency_loss(student, teacher)
    p, q = np.exp(_log_softmax(student.numpy())), np.exp(_log_softmax(teacher.numpy()))
    np.testing.assert_allclose(value.numpy(), ((p - q) ** 2).sum(-1).mean(), rtol=1e-5)
    assert tape.gradient(value, teacher) is None
    assert np.abs(tape.gradient(value, student).numpy()).sum() > 0
    assert losses.consistency_loss(student, student).numpy() == pytest.approx(0.0, abs=1e-7)


def test_scale_for_replicas_is_identity_on_one_replica():
    assert losses.num_replicas() == 1
    assert losses.scale_for_replicas(tf.constant(3.0)).numpy() == pytest.approx(3.0)
