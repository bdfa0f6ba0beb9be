"""Empty batches (B = 0): what a replica gets when a last global batch is smaller than the
replica count. Every layer must map `[0, ...]` to `[0, ...]` with zero gradients and no
state change; two things in TensorFlow do not on their own:

- the oneDNN CPU convolution returns its *input* for an empty batch (so the next layer sees
  the wrong channel count); a reshape cannot repair that inside a graph, because Grappler
  removes reshapes it believes redundant from the static shapes;
- batch statistics over 0 rows are 0/0 = NaN: a training-mode BatchNorm would write NaN
  into its moving statistics and give NaN gradients.

`if_rows` runs the computation only when there are rows; the test harness
(`tests/test_case.py`, check 8) runs every layer and the classifier at B = 0.
"""

import keras
from keras import ops


def if_rows(x, compute, empty):
    """`compute()` when `x` has at least one row (axis 0), else `empty()`.

    With a static non-empty batch (the export's `[1, T, ...]`) no branch is built.
    Both callables return tensors of the same structure and dtypes.
    """
    if x.shape[0] is not None and x.shape[0] > 0:
        return compute()
    return ops.cond(ops.shape(x)[0] > 0, compute, empty)


@keras.saving.register_keras_serializable(package="tfislr")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization that treats an empty training batch as inference.

    With no rows there are no statistics: the moving mean/variance stay as they are and the
    gradients are zero (instead of NaN). Synchronized BN is left alone: its statistics are
    global, and TensorFlow forbids its cross-replica merge inside a conditional.
    """

    def call(self, inputs, training=None, mask=None):
        call = super().call
        if not training or self.synchronized:
            return call(inputs, training=training, mask=mask)
        return if_rows(
            inputs,
            lambda: call(inputs, training=True, mask=mask),
            lambda: call(inputs, training=False, mask=mask),
        )
