"""Mixup draws: stateless Beta/Gamma samplers and the per-group draw of a step."""

import numpy as np
import pytest
import tensorflow as tf

from tfislr.training.mixup import draw_mixup, stateless_beta, stateless_log_gamma


def test_stateless_beta_moments_and_determinism():
    seed = tf.constant([3, 4])
    draws = stateless_beta([20000], 0.4, 0.4, seed).numpy()
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    # Var of Beta(a, a) = 1 / (4 (2a + 1)).
    assert draws.var() == pytest.approx(1 / (4 * 1.8), abs=0.005)
    # U-shaped for a < 1: more mass near the ends than in the middle.
    assert ((draws < 0.1) | (draws > 0.9)).mean() > ((draws > 0.4) & (draws < 0.6)).mean()
    np.testing.assert_array_equal(draws, stateless_beta([20000], 0.4, 0.4, seed).numpy())


@pytest.mark.parametrize("alpha", [0.4, 1.0, 3.0])
def test_stateless_gamma_matches_the_gamma_distribution(alpha):
    from scipy import stats  # installed with scikit-learn
    draws = np.exp(stateless_log_gamma([20000], alpha, tf.constant([5, int(alpha * 10)], tf.int64)).numpy())
    assert np.isfinite(draws).all() and (draws >= 0).all()
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 1e-3


def test_stateless_beta_matches_the_beta_distribution():
    from scipy import stats  # installed with scikit-learn
    draws = stateless_beta([20000], 0.4, 0.4, tf.constant([9, 9])).numpy()
    assert stats.kstest(draws, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_mixup_draw_compiles_with_xla():
    draw = tf.function(
        lambda seed: draw_mixup(8, 0.7, 0.4, 3, 3, seed, group_size=4, replica=1, replicas=2),
        jit_compile=True,
    )
    applied, lam, perm, layers = draw(tf.constant([1, 2], tf.int64))
    assert lam.shape == (8,) and perm.shape == (8,) and layers.shape == (3, 8)


def test_draw_mixup_off_is_exact_identity():
    applied, lam, perm, layers = draw_mixup(16, 0.0, 0.4, 3, 3, tf.constant([1, 2]), group_size=4)
    assert not applied.numpy().any()
    np.testing.assert_array_equal(lam.numpy(), np.ones(16))
    np.testing.assert_array_equal(perm.numpy(), np.arange(16))
    assert layers.shape == (3, 16)


def test_draw_mixup_pairs_clips_within_their_group():
    layer_draws = []
    for i in range(30):
        applied, lam, perm, layers = draw_mixup(16, 1.0, 0.4, 3, 3, tf.constant([i, 7]), group_size=4)
        assert applied.numpy().all()
        perm, layers = perm.numpy(), layers.numpy()
        for g in range(4):  # each group of 4 permutes among itself, one layer per model
            assert sorted(perm[4 * g: 4 * g + 4].tolist()) == list(range(4 * g, 4 * g + 4))
            assert (layers[:, 4 * g: 4 * g + 4] == layers[:, 4 * g: 4 * g + 1]).all()
        assert ((lam.numpy() >= 0) & (lam.numpy() <= 1)).all()
        layer_draws.extend(layers.ravel().tolist())
    assert set(layer_draws) == {0, 1, 2}
    # Without groups the whole batch is one group.
    _, _, perm, layers = draw_mixup(16, 1.0, 0.4, 3, 3, tf.constant([1, 7]))
    assert sorted(perm.numpy().tolist()) == list(range(16)) and len(set(layers.numpy()[0])) == 1


def test_each_group_decides_on_its_own_whether_it_is_mixed():
    mixed_groups = [
        draw_mixup(64, 0.5, 0.4, 3, 3, tf.constant([i, 3]), group_size=8)[0].numpy()[::8]
        for i in range(10)
    ]
    assert any(0 < g.sum() < 8 for g in mixed_groups)  # some groups mixed, others not


@pytest.mark.parametrize("replicas", [2, 4])
def test_replicas_get_their_slice_of_the_one_replica_draw(replicas):
    seed = tf.constant([5, 11])
    whole = [t.numpy() for t in draw_mixup(32, 0.6, 0.4, 3, 3, seed, group_size=8)]
    per_replica = 32 // replicas
    for r in range(replicas):
        part = draw_mixup(per_replica, 0.6, 0.4, 3, 3, seed, group_size=8, replica=r,
                          replicas=replicas)
        clips = slice(r * per_replica, (r + 1) * per_replica)
        np.testing.assert_array_equal(part[0].numpy(), whole[0][clips])
        np.testing.assert_array_equal(part[1].numpy(), whole[1][clips])
        # The permutation indexes the replica's own batch.
        np.testing.assert_array_equal(part[2].numpy() + r * per_replica, whole[2][clips])
        np.testing.assert_array_equal(part[3].numpy(), whole[3][:, clips])


@pytest.mark.parametrize("group_size", [None, 8])
def test_an_empty_replica_draws_nothing(group_size):
    applied, lam, perm, layers = draw_mixup(0, 0.5, 0.4, 3, 3, tf.constant([1, 2]),
                                            group_size=group_size, replica=1, replicas=2)
    assert applied.shape == lam.shape == perm.shape == (0,) and layers.shape == (3, 0)
