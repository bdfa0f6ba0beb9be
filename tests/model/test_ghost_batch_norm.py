"""Ghost batch normalisation: each group of clips normalised as a BatchNorm of its own."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfislr.model.ghost_batch_norm import GhostBatchNormalization, set_virtual_batch_size

CHANNELS = 6
FRAMES = 5


def make_layers(virtual_batch_size, count=1):
    """A ghost layer and `count` plain Keras BatchNorms, all with the same random gamma/beta."""
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 1.5, CHANNELS), rng.normal(size=CHANNELS)
    layers = [GhostBatchNormalization(virtual_batch_size, momentum=0.9, epsilon=1e-5)]
    layers += [keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5) for _ in range(count)]
    for layer in layers:
        layer.build((None, FRAMES, CHANNELS))
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return layers[0], layers[1:]


def batch(clips, seed=1):
    # Groups with different means and spreads, so per-group and whole-batch statistics differ.
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, size=(clips, 1, 1))
    return (rng.normal(size=(clips, FRAMES, CHANNELS)) * scale + scale).astype("float32")


@pytest.mark.parametrize("clips, size", [(12, 4), (10, 4), (3, 4), (8, 8)])
def test_each_group_is_normalised_on_its_own(clips, size):
    """Equal to one plain BatchNorm per group (the last one smaller when `size` does not divide
    the batch), in outputs, gradients and moving statistics (pooled over the groups)."""
    x = batch(clips)
    groups = [x[i:i + size] for i in range(0, clips, size)]
    ghost, plains = make_layers(size, count=len(groups))
    x_ghost, x_plain = tf.constant(x), tf.constant(x)
    weights = tf.constant(np.random.default_rng(2).normal(size=x.shape), "float32")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x_ghost, x_plain])
        out = ghost(x_ghost, training=True)
        expected = tf.concat([plain(x_plain[i * size:(i + 1) * size], training=True)
                              for i, plain in enumerate(plains)], axis=0)
        loss, expected_loss = tf.reduce_sum(out * weights), tf.reduce_sum(expected * weights)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Backpropagation through each group's own mean and variance.
    np.testing.assert_allclose(tape.gradient(loss, x_ghost), tape.gradient(expected_loss, x_plain),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        tape.gradient(loss, ghost.gamma),
        sum(tape.gradient(expected_loss, plain.gamma) for plain in plains), rtol=1e-4, atol=1e-4)

    shares = np.array([len(g) for g in groups], "float32") / clips
    means = np.stack([g.reshape(-1, CHANNELS).mean(0) for g in groups])
    # The moving variance pools each group's unbiased variance (torch's BatchNorm), not the
    # biased one Keras' BatchNorm keeps: the plain layers' variance times n / (n - 1).
    variances = np.stack([g.reshape(-1, CHANNELS).var(0, ddof=1) for g in groups])
    np.testing.assert_allclose(ghost.moving_mean, 0.1 * shares @ means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ghost.moving_variance, 0.9 + 0.1 * shares @ variances, rtol=1e-5)
    plain_variances = np.stack([(plain.moving_variance.numpy() - 0.9) / 0.1 for plain in plains])
    rows = np.array([g.shape[0] * FRAMES for g in groups], "float32")[:, None]
    np.testing.assert_allclose(variances, plain_variances * rows / (rows - 1), rtol=1e-4)
    if clips > size:  # several groups: not the whole-batch statistics
        whole = keras.layers.BatchNormalization(epsilon=1e-5)
        whole.build(x.shape)
        assert np.abs(whole(x, training=True) - out).max() > 1e-2


def test_a_dynamic_batch_and_an_empty_one():
    ghost, _ = make_layers(4)
    call = tf.function(lambda x: ghost(x, training=True),
                       input_signature=[tf.TensorSpec([None, FRAMES, CHANNELS], tf.float32)])
    x = batch(10)
    reference, _ = make_layers(4)
    np.testing.assert_allclose(call(x), reference(x, training=True), rtol=1e-5, atol=1e-5)
    moving = ghost.moving_mean.numpy(), ghost.moving_variance.numpy()
    empty = call(np.zeros((0, FRAMES, CHANNELS), "float32"))
    assert empty.shape == (0, FRAMES, CHANNELS)
    np.testing.assert_array_equal(ghost.moving_mean, moving[0])  # no statistics from 0 clips
    np.testing.assert_array_equal(ghost.moving_variance, moving[1])


def test_inference_and_no_group_are_plain_batch_norm():
    ghost, (plain,) = make_layers(4)
    x = batch(12)
    ghost.moving_mean.assign(np.full(CHANNELS, 0.3))
    plain.moving_mean.assign(np.full(CHANNELS, 0.3))
    np.testing.assert_allclose(ghost(x, training=False), plain(x, training=False), rtol=1e-6)
    ghost.trainable = False  # Keras: a frozen BatchNorm runs in inference mode
    np.testing.assert_allclose(ghost(x, training=True), plain(x, training=False), rtol=1e-6)
    whole, (plain,) = make_layers(None)
    np.testing.assert_allclose(whole(x, training=True), plain(x, training=True), rtol=1e-6)


def test_config_round_trip_and_bad_sizes():
    ghost = GhostBatchNormalization(32, momentum=0.9, epsilon=1e-5)
    assert GhostBatchNormalization.from_config(ghost.get_config()).virtual_batch_size == 32
    for bad in (0, -1, 2.5, True, "32"):
        with pytest.raises(ValueError, match="virtual_batch_size"):
            GhostBatchNormalization(bad)
    with pytest.raises(ValueError, match="channels-last"):
        GhostBatchNormalization(4, axis=1).build((None, FRAMES, CHANNELS))


def test_set_virtual_batch_size_reaches_every_batch_norm_of_the_classifier():
    from tfislr.model import build_classifier

    model = build_classifier({"embed_dim": 8, "dense_dim": 16, "transfo_dim": 32,
                              "distill_dense_dim": 16, "distill_transfo_dim": 32,
                              "transfo_layers": 1, "num_heads": 4, "drop_rate": 0.0}, 5, 6)
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6  # five part MLPs and the combining MLP
    assert set_virtual_batch_size(model, 32) == 6
    assert all(isinstance(n, GhostBatchNormalization) and n.virtual_batch_size == 32 for n in norms)
