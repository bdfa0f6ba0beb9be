"""Landmark preprocessing of the 6th-place recipe, written once in TF ops.

The same `Preprocess` module builds the prepared training store and runs inside the
exported TFLite graph, so what the model sees in training is what it sees on device.
It uses only ops that map to TFLite builtins (no Select TF ops, no control flow).
"""

import functools

import numpy as np
import tensorflow as tf

from tfislr import landmarks as lm
from tfislr.checks import check_int

_MAX_FLOAT32 = float(np.finfo(np.float32).max)


def _averaging_tables():
    """Row indices, member flags and sizes that average all groups with one gather.

    Groups have different sizes, so each is padded to the longest one by repeating its
    first row with member flag 0. The repeat is harmless for NaN semantics: if that row
    is NaN the group mean is NaN anyway (0 * NaN = NaN), and if it is finite it adds
    exactly 0.
    """
    width = max(len(rows) for _, rows in lm.AVERAGED_GROUPS)
    rows = np.zeros((len(lm.AVERAGED_GROUPS), width), np.int32)
    member = np.zeros((len(lm.AVERAGED_GROUPS), width, 1), np.float32)
    sizes = np.zeros((len(lm.AVERAGED_GROUPS), 1), np.float32)
    for g, (_, group_rows) in enumerate(lm.AVERAGED_GROUPS):
        rows[g] = list(group_rows) + [group_rows[0]] * (width - len(group_rows))
        member[g, : len(group_rows)] = 1.0
        sizes[g] = len(group_rows)
    return rows, member, sizes


class Preprocess(tf.Module):
    """Raw MediaPipe frames `[T, 543, 3]` → normalized model points `[T', 100, 3]`.

    Steps, in the original's order (docs/recipe.md §4):

    1. Drop every frame in which none of the 42 hand rows (`lm.HAND_ROWS`)
       has a usable x.
    2. Stride to `max_len` with the original's rule: with `n` frames left, keep all
       of them if `n <= max_len`; otherwise `divisor = n // max_len + 1` and keep the
       0-based frames `divisor-1, 2*divisor-1, ...`, i.e. `n // divisor` frames
       (at most `max_len - 1`; lossy on purpose, that is what the models were trained on).
    3. Select the 100 points: `lm.KEPT_ROWS` followed by the plain mean of each
       of `lm.AVERAGED_GROUPS` (a missing member makes the mean missing).
    4. Normalize per sequence and per coordinate: subtract the mean and divide by the
       population std of all present values (all kept frames, all 100 points).
    5. Missing values → 0, i.e. the sequence mean.

    Choices where the original was undefined or fragile (it had no guard at all):

    * `±inf` is treated exactly like NaN ("missing") everywhere, including the hand
      test of step 1.
    * A coordinate whose std is 0 (constant sequence, a single present point) is only
      centred, not scaled: it comes out as 0. The statistics are computed on values
      shifted by the mid-range of that coordinate, which is mathematically the same
      normalization, but makes a constant coordinate give exactly 0 instead of
      float32 rounding noise divided by a noise-sized std.
    * Nothing left after step 1 (0 input frames, no hand in any frame, all-NaN input)
      → ONE all-zero frame, shape `[1, 100, 3]` (the project-wide contract), so the
      model always gets a defined, finite input.
    * A non-finite result, possible only for inputs near the float32 limit (~1e38)
      whose statistics overflow, is set to 0; normal results are never touched.

    Other edge inputs: 1 frame with a hand → `[1, 100, 3]` normalized over that frame;
    very long inputs (10,000 frames) → at most `max_len - 1` frames, no special path.

    Args:
        max_len: the model's sequence length `M` (25 or 80 in the original).

    Call:
        frames: float32 `[T, 543, 3]`, `T >= 0`, NaN where MediaPipe saw nothing.

    Returns:
        float32 `[T', 100, 3]`, finite, with `1 <= T' <= max(1, min(T, max_len))`.
    """

    def __init__(self, max_len, name=None):
        super().__init__(name=name)
        self.max_len = check_int("max_len", max_len)
        rows, member, sizes = _averaging_tables()
        self._num_groups, self._group_width = rows.shape
        # One gather fetches the kept rows and every averaged group's (padded) rows.
        self._point_rows = np.concatenate(
            [np.asarray(lm.KEPT_ROWS, np.int32), rows.reshape(-1)]
        )
        self._group_member = member
        self._group_size = sizes

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, lm.NUM_RAW_LANDMARKS, 3], tf.float32, name="inputs")
        ]
    )
    def frame_indices(self, frames):
        """int32 `[T']`: the raw frames steps 1–2 keep (may be empty; for inspection)."""
        return self._frame_indices(frames)

    def _frame_indices(self, frames):
        # abs(v) <= FLT_MAX is false for NaN and ±inf; it is TFLite-builtin (is_finite is not).
        # Gather the 42 hand rows before taking x: slicing x out of all 543 rows first is
        # a strided copy of the whole input, ~7x slower in TFLite at 1000 frames.
        hand_x = tf.gather(frames, lm.HAND_ROWS, axis=1)[:, :, 0]
        has_hand = tf.reduce_any(tf.abs(hand_x) <= _MAX_FLOAT32, axis=1)
        kept = tf.cast(tf.reshape(tf.where(has_hand), [-1]), tf.int32)  # frame indices
        n = tf.shape(kept)[0]

        max_len = tf.constant(self.max_len, tf.int32)
        divisor = tf.where(n <= max_len, 1, n // max_len + 1)
        return tf.gather(kept, tf.range(divisor - 1, n, divisor))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, lm.NUM_RAW_LANDMARKS, 3], tf.float32, name="inputs")
        ]
    )
    def __call__(self, frames):
        strided = self._frame_indices(frames)

        # Gather the frames first (at most max_len of them), then the 126 rows needed.
        points = tf.gather(tf.gather(frames, strided), self._point_rows, axis=1)
        present = tf.abs(points) <= _MAX_FLOAT32
        points = tf.where(present, points, tf.constant(np.nan, tf.float32))

        num_kept = len(lm.KEPT_ROWS)
        kept_points = points[:, :num_kept]
        group_points = tf.reshape(
            points[:, num_kept:], [-1, self._num_groups, self._group_width, 3]
        )
        # Mean as first member + mean offset from it: same value, but exact when all
        # members are equal, so a constant sequence stays exactly constant (std 0).
        first = group_points[:, :, 0]
        offsets = (group_points - first[:, :, tf.newaxis]) * self._group_member
        averaged = first + tf.reduce_sum(offsets, axis=2) / self._group_size
        points = tf.concat([kept_points, averaged], axis=1)  # [T', 100, 3]

        normalized = _normalize(points)

        # "Nothing left" → one all-zero frame: append a zero frame, keep max(T', 1) frames.
        num_frames = tf.shape(normalized)[0]
        padded = tf.concat(
            [normalized, tf.zeros([1, lm.NUM_POINTS, 3], tf.float32)], axis=0
        )
        return padded[: tf.maximum(num_frames, 1)]


def _normalize(points):
    """Per-coordinate (x, y, z) standardisation over all present values; missing → 0."""
    present = tf.abs(points) <= _MAX_FLOAT32  # NaN (and any inf) is missing
    count = tf.reduce_sum(tf.cast(present, tf.float32), axis=[0, 1])
    safe_count = tf.maximum(count, 1.0)
    inf = tf.constant(np.inf, tf.float32)
    # Shift by the mid-range (exact for a constant coordinate, see the class docstring).
    high = tf.reduce_max(tf.where(present, points, -inf), axis=[0, 1])
    low = tf.reduce_min(tf.where(present, points, inf), axis=[0, 1])
    shift = tf.where(count > 0, 0.5 * high + 0.5 * low, 0.0)
    shifted = tf.where(present, points - shift, 0.0)
    mean = tf.reduce_sum(shifted, axis=[0, 1]) / safe_count
    centred = tf.where(present, shifted - mean, 0.0)
    std = tf.sqrt(tf.reduce_sum(tf.square(centred), axis=[0, 1]) / safe_count)
    # The original divided by std with no epsilon; std == 0 only centres (→ all zeros).
    normalized = centred / tf.where(std > 0, std, 1.0)
    return tf.where(tf.abs(normalized) <= _MAX_FLOAT32, normalized, 0.0)


@functools.lru_cache(maxsize=None)
def _module(max_len):
    return Preprocess(max_len)


def preprocess_numpy(frames, max_len):
    """Run `Preprocess(max_len)` on one sequence and return a float32 `np.ndarray`.

    Args:
        frames: array-like `[T, 543, 3]` (any float dtype; cast to float32).
        max_len: positive int, the model's sequence length.

    Returns:
        float32 `[T', 100, 3]` (see `Preprocess` for the edge-case rules).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[1:] != (lm.NUM_RAW_LANDMARKS, 3):
        raise ValueError(
            f"frames must have shape [T, {lm.NUM_RAW_LANDMARKS}, 3], got {frames.shape}"
        )
    return _module(check_int("max_len", max_len))(tf.constant(frames)).numpy()
