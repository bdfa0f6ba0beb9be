"""DeBERTa-v2 relative positions: log buckets, the distance rows of a sequence, the skew.

`log_bucket_position` is the ONE bucketing used in training and in the exported graph,
evaluated exactly with integer thresholds. `distance_rows` + `skew` give the training
layout of the relative-position scores (Transformer-XL "skew": each query scored against
the `2T - 1` distances of a length-T sequence, then row i shifted by i); `distance_table` +
`frame_ids` give the TFLite layout's row gather, whose shapes all follow from the input's
(`tfislr.model.modes.tflite_layout`).
"""

import math

from keras import ops

def _log_bucket_thresholds(bucket_size, max_position):
    """Integer distances at which the log bucket grows by one (exact, float64 + rounding).

    For `a = |r| > mid`, HF's bucket is `mid + ceil(v(a))` with
    `v(a) = log(a / mid) / log((max_position - 1) / mid) * (mid - 1)`, and
    `ceil(v(a)) = #{k >= 0 : v(a) > k} = #{k : a > mid * base ** (k / (mid - 1))}`.
    Since `a` is an integer, each condition is `a >= threshold_k` with an integer threshold.
    Thresholds stop where the bucket reaches `bucket_size` (every caller clamps there).
    """
    mid = bucket_size // 2
    if mid <= 1:
        return []  # v(a) == 0: every |r| > mid lands in bucket `mid`
    base = (max_position - 1) / mid
    thresholds = []
    for k in range(bucket_size - mid):
        boundary = mid * base ** (k / (mid - 1))
        nearest = round(boundary)
        if abs(boundary - nearest) < 1e-9 * max(1.0, boundary):
            thresholds.append(nearest + 1)  # exact integer boundary: strictly greater
        else:
            thresholds.append(math.floor(boundary) + 1)
    return thresholds


def log_bucket_position(relative_positions, bucket_size, max_position):
    """Maps relative positions to DeBERTa-v2 log buckets (HF `make_log_bucket_position`).

    `mid = bucket_size // 2`; `|r| <= mid` keeps `r`; otherwise
    `sign(r) * (ceil(log(|r| / mid) / log((max_position - 1) / mid) * (mid - 1)) + mid)`.
    This ONE function is used in training and in the exported TFLite graph.

    The formula is evaluated exactly: the `ceil(log ...)` steps are precomputed in Python as
    integer distance thresholds and counted at run time with integer comparisons, so TF, XLA
    and TFLite give bit-identical buckets (a float32 `log` that differs by one ulp between
    kernels would otherwise move the bucket at `|r| = max_position - 1`, where the exact
    value is an integer). Magnitudes saturate at `bucket_size`, which the `[0, 2P)` clamp of
    every caller maps exactly as the unsaturated value.

    Args:
        relative_positions: int tensor of any shape (query index minus key index).
        bucket_size: int, the number of position buckets (the seed: max_len).
        max_position: int, the maximum relative position (the seed: max_len).

    Returns:
        int32 tensor of the same shape.
    """
    bucket_size = int(bucket_size)
    max_position = int(max_position)
    relative_positions = ops.cast(relative_positions, "int32")
    mid = bucket_size // 2
    if mid < 1 or max_position - 1 <= mid:
        # No log range (e.g. bucket_size 2): positions pass through and the caller's clamp
        # to [0, 2 * bucket_size) bounds them.
        return relative_positions
    thresholds = _log_bucket_thresholds(bucket_size, max_position)
    magnitude = ops.abs(relative_positions)
    if thresholds:
        passed = ops.expand_dims(magnitude, -1) >= ops.convert_to_tensor(thresholds, "int32")
        steps = ops.sum(ops.cast(passed, "int32"), axis=-1)
    else:
        steps = ops.zeros_like(magnitude)
    log_bucket = mid + steps
    signed = ops.sign(relative_positions) * log_bucket
    return ops.where(magnitude <= mid, relative_positions, signed)


def distance_rows(length, position_buckets):
    """Table rows of the distances `T-1, T-2, ..., -(T-1)`: `clamp(bucket(d) + P, 0, 2P-1)`."""
    distances = (length - 1) - ops.arange(2 * length - 1, dtype="int32")
    rows = log_bucket_position(distances, position_buckets, position_buckets) + position_buckets
    return ops.clip(rows, 0, 2 * position_buckets - 1)



def _saturated_distance(position_buckets):
    """A distance `D` with `c(d) == c(sign(d) * D)` for every `|d| >= D` (both ends clamped).

    `log_bucket_position` magnitudes stop at `position_buckets` (from the last threshold on,
    or from `P` when there is no log range), and `clamp(bucket + P, 0, 2P - 1)` maps every
    magnitude `>= P` to the same row on each side.
    """
    thresholds = _log_bucket_thresholds(position_buckets, position_buckets)
    return max([position_buckets] + thresholds) + 1


def distance_table(position_buckets):
    """`(D, rows)`: table rows `c(d)` of the distances `d = -D .. D` (a constant [2D + 1])."""
    limit = _saturated_distance(position_buckets)
    distances = ops.arange(-limit, limit + 1, dtype="int32")
    rows = log_bucket_position(distances, position_buckets, position_buckets) + position_buckets
    return limit, ops.clip(rows, 0, 2 * position_buckets - 1)


def frame_ids(frames):
    """int32 `[T]` = 0 .. T-1 from a finite `[T]` float tensor, with no RANGE op.

    `cumsum(x * 0 + 1)` has the shape of `x` in a TFLite graph (a RANGE with a run-time
    limit would be a dynamic tensor, see `tflite_layout`).
    """
    return ops.cast(ops.cumsum(frames * 0.0 + 1.0) - 1.0, "int32")


def skew(scores, length):
    """`[B, H, T, 2T] -> [B, H, T, T]` with `out[..., i, j] = scores[..., i, T-1-i+j]`.

    The last column of `scores` is never read: it makes each row 2T long (the caller scores
    a zero table column there, cheaper than a pad of the `[B, H, T, 2T-1]` scores). In the
    flattened rows, `(T-1) + i * (2T-1) + j` is then the wanted element, i.e. a contiguous
    block reshaped to rows of 2T-1 (works for every T >= 1).
    """
    shape = ops.shape(scores)
    batch, heads = shape[0], shape[1]
    flat = ops.reshape(scores, (batch, heads, 2 * length * length))
    flat = ops.slice(flat, (0, 0, length - 1), (batch, heads, length * (2 * length - 1)))
    rows = ops.reshape(flat, (batch, heads, length, 2 * length - 1))
    return ops.slice(rows, (0, 0, 0, 0), (batch, heads, length, length))


def relative_position_index(length, position_buckets):
    """`c(i, j) = clamp(bucket(i - j) + P, 0, 2P - 1)` for a length-`length` sequence.

    Returns an int32 `[length, length]` tensor of rows of the `[2P, hidden]` relative table.
    Works for any length, also beyond `position_buckets` (the buckets saturate, then clamp).
    Buckets are computed once per distance (`2 * length - 1` values) and then spread.
    """
    rows = distance_rows(length, position_buckets)  # index m <-> distance T-1-m
    ids = ops.arange(length, dtype="int32")
    return ops.take(rows, (length - 1) - (ops.expand_dims(ids, 1) - ops.expand_dims(ids, 0)))

