"""`tfislr.model.per_frame`: a per-row function through one 2-D product, any batch size."""

import keras
import numpy as np
import tensorflow as tf

from tfislr.model.per_frame import leading_dims, per_frame


def test_per_frame_equals_the_dense_on_the_full_tensor():
    dense = keras.layers.Dense(7)
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype("float32")
    out = per_frame(dense, x)
    assert tuple(out.shape) == (2, 5, 3, 7)
    np.testing.assert_allclose(out, dense(x), rtol=1e-5, atol=1e-6)
    assert leading_dims(tf.constant(x)) == (2, -1)  # static batch: a constant reshape


def test_per_frame_with_an_unknown_or_empty_batch():
    dense = keras.layers.Dense(7)
    dense.build((None, 4))

    @tf.function(input_signature=[tf.TensorSpec((None, None, 3, 4), tf.float32)])
    def run(x):
        return per_frame(dense, x)

    for batch in (0, 2):
        x = np.ones((batch, 5, 3, 4), "float32")
        out = run(x)
        assert tuple(out.shape) == (batch, 5, 3, 7)
        np.testing.assert_allclose(out, dense(x), rtol=1e-5, atol=1e-6)
