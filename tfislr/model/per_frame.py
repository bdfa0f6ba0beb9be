"""Per-row functions on `[B, T, ..., d]` through one 2-D product, for a lean TFLite graph.

Keras computes a Dense on a 3-D (or higher) input with `tensordot`, which in the exported
TFLite graph wraps each FULLY_CONNECTED in ~9 shape ops (SHAPE, GATHER, REDUCE_PROD, PACK,
CONCATENATION, RESHAPE) that run on every call, as the length is only known at run time,
and makes its output a dynamic tensor (see `deberta.tflite_layout`). `per_frame` flattens
first: two RESHAPEs whose shapes are constants when the batch dim is static. The products
and sums are the same (`tensordot` flattens too). Used by the embedding, the part MLPs and
the DeBERTa layers.
"""

from keras import ops


def leading_dims(x):
    """`(B, T)` of `x` (`[B, T, ...]`) for a reshape back to `[B, T, ...]`.

    `T` is -1 when `B` is static and non-zero (the export's batch of one), which keeps the
    reshape's shape a constant; otherwise both are read at run time (as int scalars),
    because -1 is ambiguous for an empty batch.
    """
    if x.shape[0]:
        return x.shape[0], -1
    shape = ops.shape(x)
    return shape[0], shape[1]


def per_frame(dense, x):
    """`dense` applied to each row of `x`: `[B, T, ..., d] -> [B, T, ..., units]`.

    Args:
        dense: a per-row function of `[N, d] -> [N, units]` (a Dense layer, a matmul).
        x: `[B, T, ..., d]`; the dims between T and d must be static.

    Runs `dense` once on `[B * T * ..., d]` and reshapes back (`leading_dims`).
    """
    batch, length = leading_dims(x)
    flat = dense(ops.reshape(x, (-1, x.shape[-1])))
    return ops.reshape(flat, (batch, length, *x.shape[2:-1], flat.shape[-1]))
