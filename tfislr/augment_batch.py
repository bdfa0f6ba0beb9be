"""The training augmentation of `tfislr.augment.Augmenter`, batched for the accelerator.

`augment.device: accelerator` (docs/training.md): the host draws each view's random
parameters (`Augmenter.view_parameters`, the very same per-(seed, epoch, clip, view)
streams as the host path) and reads and pads the clip and, only where that view's CutMix
fires, its partner; the train step then runs `augment_views` on each replica's batch,
before the models. `augment_batch` is vectorized over the batch (no loop, no per-sample branch: a step
that fires for any sequence of the batch is computed for all of them and kept where it
fires), has static shapes apart from the batch size, runs for any batch size including 0,
and compiles with XLA.

Its result equals the host path's, padded (`tests/test_augment_batch.py`): the same chain
in the same order — face CutMix → missing-hand fill → interpolate → flip → rotate → scale
→ crop. The host path crops before the scale in phase 1 and after it in phase 2; the scale
multiplies every frame alike, so the two orders give the same numbers, and the batch
crops last in both phases.

Sequences are left-aligned in `[N, L, 100, 3]`, frames from `lengths` on all zero (how the
pipeline pads); a clip longer than `L` is cut to its first `L` frames by the host before
it is augmented (the host path augments it whole and cuts after).
"""

import numpy as np
import tensorflow as tf

from tfislr import augment
from tfislr import landmarks as lm

# Keys of the raw training element (`tfislr.data.pipeline.make_train_dataset` with
# `augment_device="accelerator"`), batched: B clips of V views.
RAW_KEYS = ("landmarks", "length", "partner_landmarks", "partner_length", "fires", "rotation",
            "crop", "scale")


# The face points of a flipped sequence, read from the unflipped one (flip(x)[:, :, FACE] =
# x[:, :, _FLIPPED_FACE] with x negated), and each point's slot among the face points (the
# non-face points' 0 is never used).
_FLIPPED_FACE = np.asarray(lm.FLIP_PERMUTATION)[augment._FACE_CUTMIX]
_FACE_SLOT = np.zeros(lm.NUM_POINTS, np.int32)
_FACE_SLOT[augment._FACE_CUTMIX] = np.arange(len(augment._FACE_CUTMIX))


def _fires(parameters, step):
    return parameters["fires"][:, augment.STEPS.index(step)]


def _select(fires, augmented, x):
    """Per sequence: `augmented` where `fires` bool [N], else `x`."""
    return tf.where(fires[:, None, None, None], augmented, x)


def _apply(fires, step, x):
    """`step(x)` for the sequences where `fires` bool [N], `x` for the others. One branch
    per batch, none per sequence: a step that fires for no sequence (CutMix and the hand
    fill in phase 2, say) is not computed at all."""
    return tf.cond(tf.reduce_any(fires), lambda: _select(fires, step(x), x), lambda: x)


def augment_batch(x, lengths, partners, partner_lengths, parameters, hand_fill="original"):
    """Augments N sequences, each by its own parameters; `(x [N, L, 100, 3], lengths [N])`.

    Args:
        x: float32 `[N, L, 100, 3]`, left-aligned, zero after each sequence's length. L must
            be static.
        lengths: int32 `[N]`, frames of each sequence (`0 <= lengths <= L`).
        partners: float32 `[N, L, 100, 3]`, each sequence's face-CutMix partner, laid out
            like `x` (any values where the partner is absent).
        partner_lengths: int32 `[N]`; 0 = no partner (CutMix then never runs).
        parameters: `Augmenter.view_parameters` of each sequence, stacked: "fires" bool
            `[N, 7]`, "rotation" `[N, 2]`, "crop" int32 `[N, 2]`, "scale" `[N, 3]`.
        hand_fill: `augment.hand_fill`, "original" or "missing_frames".

    Returns:
        The augmented sequences, left-aligned and zero-padded as the inputs (which must
        be zero after their lengths: no step writes there), and their lengths (only the
        crop shortens).

    Raises:
        ValueError: a non-static L or an unknown `hand_fill`.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    max_len = x.shape[1]
    if max_len is None:
        raise ValueError("augment_batch needs a static sequence length (x's axis 1)")
    fills = {"original": augment._fill_hand_original, "missing_frames": augment._fill_missing_hand}
    if hand_fill not in fills:
        raise ValueError(f"hand_fill must be one of {', '.join(fills)}, got {hand_fill!r}")
    lengths = tf.cast(lengths, tf.int32)
    partner_lengths = tf.cast(partner_lengths, tf.int32)
    valid = tf.sequence_mask(lengths, max_len)  # [N, L]

    cutmix = _fires(parameters, "face_cutmix") & (partner_lengths > 0) & (lengths > 0)
    x = _apply(cutmix, lambda v: face_cutmix_batch(v, valid, partners, partner_lengths), x)
    x = _apply(_fires(parameters, "hand_fill"), fills[hand_fill], x)
    x = _apply(_fires(parameters, "interpolate"), lambda v: interpolate_batch(v, valid), x)
    x = _apply(_fires(parameters, "flip"), augment.flip, x)
    cos, sin = tf.unstack(parameters["rotation"][:, :, None, None], axis=1)  # [N, 1, 1] each
    x = _apply(_fires(parameters, "rotate"), lambda v: augment.rotate_by(v, cos, sin), x)
    x = _apply(_fires(parameters, "scale"), lambda v: v * parameters["scale"][:, None, None, :],
               x)
    crop = _fires(parameters, "crop")
    return tf.cond(tf.reduce_any(crop), lambda: crop_batch(x, lengths, crop, parameters["crop"]),
                   lambda: (x, lengths))


def augment_views(raw, names, hand_fill="original"):
    """The training views of a raw batch: `{name: {"landmarks": [B, L, 100, 3],
    "padding_mask": float32 [B, L]}}` for the `names` (V of them, in the order of the raw
    element's views).

    `raw` holds `RAW_KEYS`: "landmarks" `[B, L, 100, 3]` and "length" `[B]` of each clip,
    "partner_landmarks" `[B, V, L, 100, 3]` and "partner_length" `[B, V]`, and the view
    parameters `[B, V, ...]` (`augment_batch`).
    """
    num_views = len(names)
    clips = raw["landmarks"]
    max_len = clips.shape[1]
    shape = tf.shape(clips)

    def views_first(t):  # [B, V, ...] -> [B * V, ...]
        return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))

    x, lengths = augment_batch(
        tf.repeat(clips, num_views, axis=0),
        tf.repeat(raw["length"], num_views, axis=0),
        views_first(raw["partner_landmarks"]),
        views_first(raw["partner_length"]),
        {key: views_first(raw[key]) for key in ("fires", "rotation", "crop", "scale")},
        hand_fill,
    )
    x = tf.reshape(x, tf.concat([[shape[0], num_views], shape[1:]], 0))
    masks = tf.reshape(tf.sequence_mask(lengths, max_len, tf.float32), [-1, num_views, max_len])
    return {name: {"landmarks": x[:, v], "padding_mask": masks[:, v]}
            for v, name in enumerate(names)}


def crop_batch(x, lengths, fires, windows):
    """Each sequence keeps the frames `[start, stop)` of its `windows` int32 `[N, 2]` where
    `fires` bool `[N]` (else all its frames), moved to the front; every frame from the new
    length on is zero. Returns `(x, new lengths)`."""
    max_len = x.shape[1]
    start = tf.where(fires, windows[:, 0], 0)
    lengths = tf.where(fires, windows[:, 1] - windows[:, 0], lengths)
    frames = tf.minimum(start[:, None] + tf.range(max_len)[None, :], max_len - 1)  # [N, L]
    cropped = tf.gather(x, frames, axis=1, batch_dims=1)
    keep = tf.sequence_mask(lengths, max_len)
    return tf.where(keep[:, :, None, None], cropped, 0.0), lengths


def _running(values, combine, reverse):
    """Inclusive running `combine` (tf.maximum / tf.minimum) of int32 `[N, S, L]` over L,
    from the end when `reverse`: log2(L) shifted combinations (Hillis–Steele), no scatter."""
    max_len = values.shape[-1]
    shift = 1
    while shift < max_len:
        if reverse:
            shifted = tf.concat([values[..., shift:], tf.repeat(values[..., -1:], shift, -1)], -1)
        else:
            shifted = tf.concat([tf.repeat(values[..., :1], shift, -1), values[..., :-shift]], -1)
        values = combine(values, shifted)
        shift *= 2
    return values


def interpolate_batch(x, valid):
    """`augment.interpolate_missing` of each sequence over its own frames (`valid` bool
    `[N, L]`); frames past a sequence's length stay as they are."""
    max_len = x.shape[1]
    shape = tf.shape(x)
    # Series-major, [N, S, L]: one row per (point, coordinate) series of a sequence.
    series = tf.transpose(tf.reshape(x, [shape[0], max_len, -1]), [0, 2, 1])
    present = tf.not_equal(series, 0.0) & valid[:, None, :]
    frame = tf.range(max_len)
    # The neighbours of each frame: the last present frame at or before it and the first at
    # or after it; before the first (after the last) present frame both are that frame.
    last_before = _running(tf.where(present, frame, -1), tf.maximum, reverse=False)
    first_after = _running(tf.where(present, frame, max_len), tf.minimum, reverse=True)
    prev_frame = tf.where(last_before >= 0, last_before, first_after[..., :1])
    next_frame = tf.where(first_after < max_len, first_after, last_before[..., -1:])
    prev_frame = tf.clip_by_value(prev_frame, 0, max_len - 1)  # no present frame: unused
    next_frame = tf.clip_by_value(next_frame, 0, max_len - 1)
    prev_value = tf.gather(series, prev_frame, axis=2, batch_dims=2)
    next_value = tf.gather(series, next_frame, axis=2, batch_dims=2)

    weight = tf.math.divide_no_nan(
        tf.cast(frame - prev_frame, tf.float32), tf.cast(next_frame - prev_frame, tf.float32)
    )
    filled = prev_value + (next_value - prev_value) * weight
    num_present = tf.reduce_sum(tf.cast(present, tf.int32), axis=2, keepdims=True)  # [N, S, 1]
    num_frames = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)[:, None, None]
    applies = (num_present >= 2) & (num_present < num_frames) & valid[:, None, :]
    out = tf.where(applies, filled, series)
    return tf.reshape(tf.transpose(out, [0, 2, 1]), shape)


def _is_left_handed(x, valid):
    """bool [N]: `augment._is_left_handed` of each sequence, over its own frames."""
    def missing(points):
        absent = augment._absent_frames(x, points) & valid
        return tf.reduce_sum(tf.cast(absent, tf.int32), axis=1)

    return missing(augment._LEFT_HAND) < missing(augment._RIGHT_HAND)


def _resize_batch(x, lengths, new_lengths):
    """`augment.resize_time` of each sequence `x[n, :lengths[n]]` to `new_lengths[n]`
    frames, left-aligned in `[N, L, ...]` (frames past the new length: unspecified)."""
    max_len = x.shape[1]
    ratio = tf.cast(lengths, tf.float32) / tf.cast(tf.maximum(new_lengths, 1), tf.float32)
    source = (tf.cast(tf.range(max_len), tf.float32)[None, :] + 0.5) * ratio[:, None] - 0.5
    source = tf.maximum(source, 0.0)  # [N, L]
    last = tf.maximum(lengths - 1, 0)[:, None]
    lower = tf.minimum(tf.cast(tf.floor(source), tf.int32), last)
    upper = tf.minimum(lower + 1, last)
    weight = (source - tf.cast(lower, tf.float32))[:, :, None, None]
    return ((1.0 - weight) * tf.gather(x, lower, axis=1, batch_dims=1)
            + weight * tf.gather(x, upper, axis=1, batch_dims=1))


def _face_range(face, valid):
    """(min, max − min) float32 [N, 3] of `face` [N, L, F, 3] over F and the valid frames."""
    inside = valid[:, :, None, None]
    low = tf.reduce_min(tf.where(inside, face, float("inf")), axis=[1, 2])
    high = tf.reduce_max(tf.where(inside, face, float("-inf")), axis=[1, 2])
    return low, high - low


def face_cutmix_batch(x, valid, partners, partner_lengths):
    """`augment.face_cutmix` of each sequence (frames `valid` bool [N, L]) with its
    partner (`partner_lengths` frames of `partners`); needs both lengths >= 1 to mean
    anything (`augment_batch` keeps x elsewhere). Only the face points are flipped,
    resampled and rescaled (a flip maps the face onto itself)."""
    max_len = x.shape[1]
    partners = tf.convert_to_tensor(partners, tf.float32)
    partner_valid = tf.sequence_mask(partner_lengths, max_len)
    flip = tf.not_equal(_is_left_handed(partners, partner_valid), _is_left_handed(x, valid))
    flipped = tf.gather(partners, _FLIPPED_FACE, axis=2)  # flip(partners)'s face, x negated:
    flipped = tf.concat([0.0 - flipped[..., :1], flipped[..., 1:]], axis=-1)
    aligned = _select(flip, flipped, tf.gather(partners, augment._FACE_CUTMIX, axis=2))
    aligned = _resize_batch(aligned, partner_lengths, tf.reduce_sum(tf.cast(valid, tf.int32), 1))
    new_min, new_range = _face_range(aligned, valid)
    old_min, old_range = _face_range(tf.gather(x, augment._FACE_CUTMIX, axis=2), valid)
    usable = new_range > 0.0  # [N, 3]

    def per_coordinate(t):  # [N, 3] -> [N, 1, 1, 3]
        return t[:, None, None, :]

    rescaled = (tf.math.divide_no_nan(aligned - per_coordinate(new_min),
                                      per_coordinate(new_range))
                * per_coordinate(old_range) + per_coordinate(old_min))
    replace = (
        augment._FACE_CUTMIX_MASK[None, None, :, None]
        & per_coordinate(usable)
        & (usable[:, 0] & usable[:, 1])[:, None, None, None]
        & valid[:, :, None, None]
    )
    return tf.where(replace, tf.gather(rescaled, _FACE_SLOT, axis=2), x)
