"""Training augmentations of preprocessed sequences, written in TF ops for `tf.data`.

Every function takes a preprocessed sequence `x`: float32 `[T, 100, 3]`, normalized per
sequence, with 0 where a coordinate was missing (docs/recipe.md §4). They are pure, graph-safe and
vectorized over frames (no Python loop over `T`), so they run inside
`tf.data.Dataset.map(..., num_parallel_calls=AUTOTUNE)` for any `T >= 1`. Randomness is
stateless: a function that draws takes an explicit `seed` int32/int64 `[2]`, and the same seed
always gives the same result.

`Augmenter` chains them as the original's training set did (docs/recipe.md §9): per view, face
CutMix → missing-hand fill → `augment`, with two phases (strength 3, then strength 2) given per
call or switched through a `tf.Variable` read at run time. Only landmarks go in and out; labels never pass
through here, so no augmentation can touch them.

Where the original's code and README disagree we follow the code (docs/recipe.md §19–§20).
The missing-hand fill has both: `fill_hand_original` (the default, `augment.hand_fill:
original`) is what the code ran, whose stale type ids made it overwrite the left hand;
`fill_missing_hand` (`missing_frames`) is what the README describes (mirror the present hand
into the absent one, frame by frame).
"""

import numpy as np
import tensorflow as tf

from tfislr import landmarks as lm
from tfislr import timeline
from tfislr.config import AugmentConfig, validate_section

# Function defaults come from the config dataclass so the numbers live in one place.
_DEFAULTS = AugmentConfig()

_LEFT_HAND = np.asarray(lm.LEFT_HAND_POINTS, dtype=np.int32)
_RIGHT_HAND = np.asarray(lm.RIGHT_HAND_POINTS, dtype=np.int32)
_FACE_CUTMIX = np.asarray(lm.FACE_CUTMIX_POINTS, dtype=np.int32)
_ARMS = np.asarray(lm.ARM_POINTS, dtype=np.int32)


def _hand_swap_permutation():
    permutation = np.arange(lm.NUM_POINTS, dtype=np.int32)
    permutation[_LEFT_HAND] = _RIGHT_HAND
    permutation[_RIGHT_HAND] = _LEFT_HAND
    return permutation


# swapped[:, p] = x[:, _HAND_SWAP[p]]: landmark k of one hand <-> landmark k of the other.
_HAND_SWAP = _hand_swap_permutation()


def _hand_of_point():
    hand = np.zeros(lm.NUM_POINTS, dtype=np.int32)
    hand[_LEFT_HAND] = 1
    hand[_RIGHT_HAND] = 2
    return hand


# 0 = not a hand point, 1 = left hand, 2 = right hand (indexes a per-frame [T, 3] choice).
_HAND_OF_POINT = _hand_of_point()

_FACE_CUTMIX_MASK = np.zeros(lm.NUM_POINTS, dtype=bool)
_FACE_CUTMIX_MASK[_FACE_CUTMIX] = True

# The steps of one view, in the order they run (the crop runs before the scale in phase 1,
# after it in phase 2: they commute). `Augmenter.view_parameters` "fires" follows it.
STEPS = ("face_cutmix", "hand_fill", "interpolate", "flip", "rotate", "crop", "scale")


def _as_sequence(x, name="x"):
    """float32 tensor with a static check of the `[T, 100, 3]` layout when it is known."""
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    expected = [None, lm.NUM_POINTS, lm.NUM_COORDINATES]
    if x.shape.rank is not None and not x.shape.is_compatible_with(expected):
        raise ValueError(
            f"{name} must be a preprocessed sequence of shape [T, {lm.NUM_POINTS}, "
            f"{lm.NUM_COORDINATES}], got shape {x.shape}"
        )
    return x


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"seed must be an int32 or int64 tensor of shape [2], got {seed.dtype}")
    if seed.shape.rank is not None and not seed.shape.is_compatible_with([2]):
        raise ValueError(f"seed must have shape [2], got {seed.shape}")
    return seed


def _split(seed, num):
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=num), num=num)


def _absent_frames(x, points):
    """bool [..., T]: the frames of `x` [..., T, 100, 3] where every coordinate of every
    point in `points` is 0."""
    part = tf.gather(x, points, axis=-2)
    return tf.reduce_all(tf.equal(part, 0.0), axis=[-2, -1])


def _is_left_handed(x):
    """The original's `is_left`: fewer frames without the left hand than without the right.

    The original tested only x (sum of |x| over the hand == 0); a present hand never has all
    21 x values exactly 0 after normalization, so testing all three coordinates (the same
    absence rule as `fill_missing_hand`) gives the same answer on real data.
    """
    missing_left = tf.reduce_sum(tf.cast(_absent_frames(x, _LEFT_HAND), tf.int32))
    missing_right = tf.reduce_sum(tf.cast(_absent_frames(x, _RIGHT_HAND), tf.int32))
    return missing_left < missing_right


def flip(x):
    """Horizontal mirror (docs/recipe.md §5): x ← −x, then left/right points swap places.

    `flipped[:, p] = x[:, FLIP_PERMUTATION[p]]` with x negated. Missing values stay exactly
    +0 (computed as `0 − x`, not `−x`), so flipping twice returns the input bit for bit.
    Works on `[..., 100, 3]`.
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    mirrored = tf.concat([0.0 - x[..., :1], x[..., 1:]], axis=-1)
    return tf.gather(mirrored, lm.FLIP_PERMUTATION, axis=-2)


def rotate(x, angle):
    """Rotates every point by `angle` radians about the origin in the x/y plane; z untouched.

    The origin of normalized coordinates is the sequence mean, as in the original.
    x' = cos·x − sin·y, y' = sin·x + cos·y. A point missing in both x and y stays (0, 0).
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    angle = tf.cast(angle, tf.float32)
    return rotate_by(x, tf.cos(angle), tf.sin(angle))


def rotate_by(x, cos, sin):
    """`rotate` by the angle of cosine `cos` and sine `sin` (float32, broadcast against
    `x[..., 0]`, e.g. `[N, 1, 1]` for one angle per sequence of `[N, T, 100, 3]`)."""
    xs, ys = x[..., 0], x[..., 1]
    return tf.stack([cos * xs - sin * ys, sin * xs + cos * ys, x[..., 2]], axis=-1)


def random_rotation_angle(seed, max_degrees=_DEFAULTS.max_rotation_degrees):
    """Angle in radians, uniform in [−max_degrees, +max_degrees)."""
    max_radians = float(np.deg2rad(max_degrees))
    return tf.random.stateless_uniform(
        [], seed=_as_seed(seed), minval=-max_radians, maxval=max_radians
    )


def interpolate_missing(x):
    """Fills missing values (exact 0) by linear interpolation over the frame index.

    Each (point, coordinate) series is handled on its own: frames where its value is non-zero
    are "present". With at least 2 present frames and at least one missing, missing frames
    between two present ones are interpolated linearly and frames before the first / after the
    last present one hold that edge value. Series with fewer than 2 present frames, or none
    missing, are returned unchanged. Present values are never modified.
    """
    x = _as_sequence(x)
    shape = tf.shape(x)
    num_frames = shape[0]
    # Time-major: one column per (point, coordinate) series, [T, N].
    series = tf.reshape(x, [num_frames, -1])
    num_series = tf.shape(series)[1]
    present = tf.not_equal(series, 0.0)
    present_int = tf.cast(present, tf.int32)
    # Group g of a series = its frames from the g-th present one up to the next (g = 0: the
    # frames before the first present one). Each group g >= 1 holds exactly one present
    # frame, so a segment sum recovers that frame's index and value without sorting.
    group = tf.cumsum(present_int, axis=0)
    num_present = tf.reduce_sum(present_int, axis=0)
    column = tf.range(num_series)[None, :]
    frame = tf.range(num_frames)[:, None]
    segment = group * num_series + column
    num_segments = (num_frames + 1) * num_series
    group_frame = tf.math.unsorted_segment_sum(
        tf.where(present, frame, 0), segment, num_segments
    )
    group_value = tf.math.unsorted_segment_sum(
        tf.where(present, series, 0.0), segment, num_segments
    )
    # Neighbours: a present frame is its own; a missing one lies between groups g and g + 1.
    # Clamping to [1, num_present] holds the first / last present value at the edges.
    last = tf.maximum(num_present, 1)[None, :]
    prev_group = tf.minimum(tf.maximum(group, 1), last)
    next_group = tf.minimum(tf.maximum(group + 1 - present_int, 1), last)
    prev_index = prev_group * num_series + column
    next_index = next_group * num_series + column
    prev_frame = tf.gather(group_frame, prev_index)
    next_frame = tf.gather(group_frame, next_index)
    prev_value = tf.gather(group_value, prev_index)
    next_value = tf.gather(group_value, next_index)

    weight = tf.math.divide_no_nan(
        tf.cast(frame - prev_frame, tf.float32), tf.cast(next_frame - prev_frame, tf.float32)
    )
    filled = prev_value + (next_value - prev_value) * weight
    applies = (num_present >= 2) & (num_present < num_frames)
    return tf.reshape(tf.where(applies[None, :], filled, series), shape)


def temporal_crop(
    x,
    seed,
    min_len=_DEFAULTS.crop_min_len,
    max_fraction=_DEFAULTS.crop_max_fraction,
):
    """Drops c frames from the start or (with equal odds) the end.

    Only when `T >= min_len`; c is uniform in [1, int(max_fraction · T)) (upper bound
    exclusive, as the original's `randint`), so `T = 25` loses at most 4 frames and `T = 80`
    at most 15. When that range is empty the sequence is returned unchanged.
    """
    x = _as_sequence(x)
    start, stop = crop_window(seed, tf.shape(x)[0], min_len, max_fraction)
    return x[start:stop]


def crop_window(
    seed,
    num_frames,
    min_len=_DEFAULTS.crop_min_len,
    max_fraction=_DEFAULTS.crop_max_fraction,
):
    """`temporal_crop`'s draw: int32 `(start, stop)`, the frames `[start, stop)` it keeps of
    a sequence of `num_frames` (int32 []) frames (`(0, num_frames)` when it keeps all)."""
    count_seed, side_seed = _split(_as_seed(seed), 2)
    num_frames = tf.cast(num_frames, tf.int32)
    # float64 so that int(0.2 * T) matches Python's double arithmetic exactly.
    upper = tf.cast(tf.floor(tf.cast(num_frames, tf.float64) * max_fraction), tf.int32)
    applies = (num_frames >= min_len) & (upper > 1)
    count = tf.random.stateless_uniform(
        [], seed=count_seed, minval=1, maxval=tf.maximum(upper, 2), dtype=tf.int32
    )
    count = tf.where(applies, count, 0)
    from_start = tf.random.stateless_uniform([], seed=side_seed) < 0.5
    start = tf.where(from_start, count, 0)
    stop = tf.where(from_start, num_frames, num_frames - count)
    return start, stop


def scale(
    x,
    seed,
    scale_min=_DEFAULTS.scale_min,
    scale_max=_DEFAULTS.scale_max,
    distortion_p=_DEFAULTS.distortion_p,
):
    """Multiplies coordinates by s ~ U(scale_min, scale_max), the same for x, y and z.

    With probability `distortion_p` each coordinate k is instead multiplied by s + d_k with
    d_k ~ U(scale_min, scale_max): the original's code added the distortion to the scale
    (multipliers in (1.4, 2.6) with the defaults), and we reproduce what it ran.
    Missing values (0) stay 0.
    """
    x = _as_sequence(x)
    return x * scale_factors(seed, scale_min, scale_max, distortion_p)


def scale_factors(
    seed,
    scale_min=_DEFAULTS.scale_min,
    scale_max=_DEFAULTS.scale_max,
    distortion_p=_DEFAULTS.distortion_p,
):
    """`scale`'s draw: float32 [3], the multiplier of x, y and z."""
    scale_seed, distort_seed, offsets_seed = _split(_as_seed(seed), 3)
    factor = tf.random.stateless_uniform([], seed=scale_seed, minval=scale_min, maxval=scale_max)
    distort = tf.random.stateless_uniform([], seed=distort_seed) < distortion_p
    offsets = tf.random.stateless_uniform(
        [lm.NUM_COORDINATES], seed=offsets_seed, minval=scale_min, maxval=scale_max
    )
    return factor + tf.where(distort, offsets, tf.zeros_like(offsets))


def fill_missing_hand(x):
    """Fills an absent hand with the mirror image of the present one, frame by frame.

    A hand is absent in a frame when all its 21 points are 0 in x, y and z. In a frame where
    exactly one hand is absent, its landmark k becomes landmark k of the other hand with x
    mirrored around the nose (point `NOSE_POINT`): x' = 2·x_nose − x; y and z copied. Frames
    with both hands present or both absent, and all other points, are unchanged.
    (`augment.hand_fill: missing_frames`, the README's behaviour; the original's code ran
    `fill_hand_original`.)
    """
    return _fill_missing_hand(_as_sequence(x))


def _fill_missing_hand(x):
    """`fill_missing_hand` over `[..., T, 100, 3]`."""
    left_absent = _absent_frames(x, _LEFT_HAND)
    right_absent = _absent_frames(x, _RIGHT_HAND)
    return _fill_hands(x, left_absent & ~right_absent, right_absent & ~left_absent)


def fill_hand_original(x):
    """The missing-hand fill as the original's code ran it (`augment.hand_fill: original`).

    Its absence tests used type ids of an older point layout: "left hand missing" read the
    arm points (type 5) and "right hand missing" a type (10) no point has, so it was true in
    every frame. Hence, with the mirror image of `fill_missing_hand` (landmark k of the
    other hand, x' = 2·x_nose − x, y and z copied):

    - in every frame, the left hand's points become the mirrored right hand (where the
      right hand is absent: x = 2·x_nose, y = z = 0);
    - in frames whose 12 arm points all have x = 0 (the original tested x only), the right
      hand's points also become the mirrored left hand (the left one of the input).

    All other points are unchanged. `[T, 100, 3]` → `[T, 100, 3]`.
    """
    x = _as_sequence(x)
    return _fill_hand_original(x)


def _fill_hand_original(x):
    """`fill_hand_original` over `[..., T, 100, 3]`."""
    arms_absent = tf.reduce_all(tf.equal(tf.gather(x[..., 0], _ARMS, axis=-1), 0.0), axis=-1)
    return _fill_hands(x, tf.ones_like(arms_absent), arms_absent)


def _fill_hands(x, fill_left, fill_right):
    """x `[..., T, 100, 3]` with the left (right) hand's points replaced by the mirrored
    other hand in the frames where `fill_left` (`fill_right`) bool `[..., T]` is true; both
    read the input `x`."""
    swapped = tf.gather(x, _HAND_SWAP, axis=-2)
    nose_x = x[..., lm.NOSE_POINT : lm.NOSE_POINT + 1, :1]
    mirrored = tf.concat([2.0 * nose_x - swapped[..., :1], swapped[..., 1:]], axis=-1)
    # Per frame: [keep non-hand points, fill left points?, fill right points?] -> [..., T, 100].
    by_hand = tf.stack([tf.zeros_like(fill_left), fill_left, fill_right], axis=-1)
    fill = tf.gather(by_hand, _HAND_OF_POINT, axis=-1)
    return tf.where(fill[..., None], mirrored, x)


def resize_time(x, length):
    """Linear resampling of `[T, ...]` to `length` frames (torch `interpolate`, linear,
    `align_corners=False`, as the original used for the CutMix partner). Needs T >= 1."""
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    in_len = tf.shape(x)[0]
    length = tf.convert_to_tensor(length, dtype=tf.int32)
    ratio = tf.cast(in_len, tf.float32) / tf.cast(tf.maximum(length, 1), tf.float32)
    source = (tf.cast(tf.range(length), tf.float32) + 0.5) * ratio - 0.5
    source = tf.maximum(source, 0.0)
    lower = tf.minimum(tf.cast(tf.floor(source), tf.int32), in_len - 1)
    upper = tf.minimum(lower + 1, in_len - 1)
    weight = source - tf.cast(lower, tf.float32)
    weight = tf.reshape(weight, tf.concat([[length], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
    return (1.0 - weight) * tf.gather(x, lower) + weight * tf.gather(x, upper)


def face_cutmix(x, partner):
    """Replaces the face points (`FACE_CUTMIX_POINTS`) with those of `partner`.

    `partner` is another preprocessed sequence of the same sign, `[T2, 100, 3]`. It is flipped
    when its dominant hand differs from `x`'s (fewer frames without the left hand = left-
    handed), resampled to `T` frames (`resize_time`), then for each coordinate its face values
    are min-max rescaled from the partner's face range (min/max over face points × frames,
    zeros included, as in the original) onto `x`'s face range, and written over `x`'s face.

    Skipped (x returned unchanged) when the partner's face has zero range in x or in y (no
    face), or when either sequence has no frame. When only the z range is zero, x and y are
    replaced and z is kept: the original checked z only after replacing x and y, and we
    reproduce that. Hands, arms and frame count never change.
    """
    x = _as_sequence(x)
    partner = _as_sequence(partner, "partner")
    num_frames = tf.shape(x)[0]

    def mix():
        aligned = tf.cond(
            tf.not_equal(_is_left_handed(partner), _is_left_handed(x)),
            lambda: flip(partner),
            lambda: partner,
        )
        aligned = resize_time(aligned, num_frames)
        new_face = tf.gather(aligned, _FACE_CUTMIX, axis=1)
        old_face = tf.gather(x, _FACE_CUTMIX, axis=1)
        new_min = tf.reduce_min(new_face, axis=[0, 1])
        new_range = tf.reduce_max(new_face, axis=[0, 1]) - new_min
        old_min = tf.reduce_min(old_face, axis=[0, 1])
        old_range = tf.reduce_max(old_face, axis=[0, 1]) - old_min
        usable = new_range > 0.0  # [3]
        rescaled = tf.math.divide_no_nan(aligned - new_min, new_range) * old_range + old_min
        replace = (
            _FACE_CUTMIX_MASK[None, :, None]
            & usable[None, None, :]
            & (usable[0] & usable[1])
        )
        return tf.where(replace, rescaled, x)

    has_frames = (num_frames > 0) & (tf.shape(partner)[0] > 0)
    return tf.cond(has_frames, mix, lambda: x)


class Augmenter(tf.Module):
    """The training-time augmentation of one view (docs/recipe.md §9), built from `AugmentConfig`.

    `augmenter(landmarks, partner, seed, phase=None)`: `landmarks` float32 `[T, 100, 3]`, `partner`
    `[T2, 100, 3]` (a sequence of the same sign for face CutMix, or None to never CutMix),
    `seed` int32 `[2]` → float32 `[T', 100, 3]`, `T' <= T` (only the crop shortens).
    `views` augments several views of one clip at once (the pipeline's path), identically.
    Each step fires on its own draw, in this order:

    phase 1 (strength 3): face CutMix → missing-hand fill → interpolate → flip → rotate →
    crop (`crop_p`) → scale;
    phase 2 (strength 2): interpolate → flip → rotate → scale → crop (`crop_p_phase2`).

    The phase is the call's `phase` (an int32 scalar tensor, e.g. `phase_of_epoch` of the
    element's own epoch: what a pipeline whose prefetching crosses epoch boundaries needs),
    or else `self.phase`, an int32 `tf.Variable` read when each element is processed, so a
    `tf.data` pipeline built once follows `set_phase` / `set_phase_for_epoch` (elements
    already prefetched keep the phase they were made with). Checked with a
    `MirroredStrategy` distributed dataset, the augmenter built inside or outside the
    strategy scope. `enabled=False` → identity.
    """

    def __init__(self, config=None, name="augmenter"):
        super().__init__(name=name)
        config = AugmentConfig() if config is None else config
        if not isinstance(config, AugmentConfig):
            raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
        validate_section("augment", config)
        self.config = config
        with tf.init_scope():
            self.phase = tf.Variable(1, dtype=tf.int32, trainable=False, name="phase")

    def set_phase(self, phase):
        """1 = strength 3 (all augmentations), 2 = strength 2 (no CutMix/hand fill, rarer crop)."""
        if phase not in (1, 2):
            raise ValueError(f"phase must be 1 or 2, got {phase!r}")
        self.phase.assign(phase)

    def set_phase_for_epoch(self, epoch, epochs):
        """Sets and returns the phase of 0-based `epoch` (Keras numbering) of `epochs`."""
        phase = int(self.phase_of_epoch(epoch, epochs))
        self.set_phase(phase)
        return phase

    def phase_of_epoch(self, epoch, epochs):
        """int32 scalar tensor: the phase (1 or 2) of 0-based `epoch` (int or int tensor) of
        a run of `epochs` (a Python int), by `timeline.augment_phase2_start`."""
        start = timeline.augment_phase2_start(epochs, self.config.phase2_start)
        if start is None:
            return tf.constant(1, tf.int32)
        return tf.where(tf.cast(epoch, tf.int64) >= start, 2, 1)

    def __call__(self, landmarks, partner=None, seed=None, phase=None):
        x = _as_sequence(landmarks, "landmarks")
        if not self.config.enabled:
            return x
        if seed is None:
            raise ValueError("Augmenter needs a seed: an int32 tensor of shape [2]")
        return self._augment(x, partner, seed, phase)

    def views(self, landmarks, partners, seeds, phase=None):
        """Several views of one clip: `[self(landmarks, p(), s, phase) for p, s in
        zip(partners, seeds)]`, the same tensors bit for bit, for less work.

        `partners` are zero-argument callables returning each view's CutMix partner
        `[T2, 100, 3]` (or None), called only when that view's CutMix fires; `seeds` int32
        `[2]` tensors. Views whose interpolation fires on the clip as read (no CutMix or
        hand fill before it) share one `interpolate_missing(landmarks)`.
        """
        x = _as_sequence(landmarks, "landmarks")
        if not self.config.enabled:
            return [x for _ in seeds]
        phase_one = self._phase_one(phase)
        plain = []
        for partner, seed in zip(partners, seeds):
            fires = self._fires(self._draws(seed)[0], phase_one, partner is not None)
            plain.append(fires["interpolate"] & ~self._modifies_input(fires))
        shared = tf.cond(tf.reduce_any(tf.stack(plain)), lambda: interpolate_missing(x),
                         lambda: x)
        return [self._augment(x, partner, seed, phase, interpolated=shared)
                for partner, seed in zip(partners, seeds)]

    def _phase_one(self, phase):
        return tf.equal(self.phase if phase is None else tf.cast(phase, tf.int32), 1)

    @staticmethod
    def _draws(seed):
        """(8 uniform coins, one per step; rotate, crop and scale seeds) of a view's seed."""
        coin_seed, rotate_seed, crop_seed, scale_seed = _split(_as_seed(seed), 4)
        coins = tf.unstack(tf.random.stateless_uniform([8], seed=coin_seed), num=8)
        return coins, rotate_seed, crop_seed, scale_seed

    def _cutmix_fires(self, coins, phase_one, has_partner):
        if not has_partner or self.config.face_cutmix_p <= 0:
            return tf.constant(False)
        return phase_one & (coins[0] < self.config.face_cutmix_p)

    @staticmethod
    def _modifies_input(fires):
        """bool []: CutMix or the hand fill (of a view's `_fires`) runs before interpolation."""
        return fires["face_cutmix"] | fires["hand_fill"]

    def _fires(self, coins, phase_one, has_partner):
        """{step of `STEPS`: bool [], whether it runs} for a view's coins in its phase."""
        cfg = self.config
        crop_p = tf.where(phase_one, cfg.crop_p, cfg.crop_p_phase2)
        return {
            "face_cutmix": self._cutmix_fires(coins, phase_one, has_partner),
            "hand_fill": phase_one & (coins[1] < cfg.hand_fill_p),
            "interpolate": coins[2] < cfg.interpolate_p,
            "flip": coins[3] < cfg.flip_p,
            "rotate": coins[4] < cfg.rotate_p,
            "crop": coins[5] < crop_p,
            "scale": coins[6] < cfg.scale_p,
        }

    def view_parameters(self, seed, num_frames, phase=None):
        """Everything `_augment` draws for the view of `seed` of a `num_frames`-frame clip
        with a CutMix partner, from the same streams, as the tensors
        `tfislr.augment_batch.augment_batch` takes (one view; the pipeline stacks them):

        - "fires": bool [7], whether each step of `STEPS` runs (phase and partner included);
        - "rotation": float32 [2], cosine and sine of the rotation angle;
        - "crop": int32 [2], the crop's `[start, stop)` frames (`crop_window`);
        - "scale": float32 [3], the multiplier of x, y and z (`scale_factors`).
        """
        cfg = self.config
        coins, rotate_seed, crop_seed, scale_seed = self._draws(seed)
        fires = self._fires(coins, self._phase_one(phase), cfg.face_cutmix_p > 0)
        angle = random_rotation_angle(rotate_seed, cfg.max_rotation_degrees)
        return {
            "fires": tf.stack([fires[step] for step in STEPS]),
            "rotation": tf.stack([tf.cos(angle), tf.sin(angle)]),
            "crop": tf.stack(crop_window(crop_seed, num_frames, cfg.crop_min_len,
                                         cfg.crop_max_fraction)),
            "scale": scale_factors(scale_seed, cfg.scale_min, cfg.scale_max, cfg.distortion_p),
        }

    def _augment(self, x, partner, seed, phase, interpolated=None):
        """One view; `partner` a tensor, a zero-argument callable (read only when CutMix
        fires) or None; `interpolated`, if given, is `interpolate_missing(x)`."""
        cfg = self.config
        coins, rotate_seed, crop_seed, scale_seed = self._draws(seed)
        phase_one = self._phase_one(phase)
        has_partner = partner is not None
        fires = self._fires(coins, phase_one, has_partner)

        def maybe(fires, fn, x):
            return tf.cond(fires, lambda: fn(x), lambda: x)

        if has_partner and cfg.face_cutmix_p > 0:
            read = partner if callable(partner) else lambda: partner
            x = maybe(fires["face_cutmix"], lambda v: face_cutmix(v, read()), x)
        hand_fill = fill_hand_original if cfg.hand_fill == "original" else fill_missing_hand
        x = maybe(fires["hand_fill"], hand_fill, x)
        if interpolated is None:
            x = maybe(fires["interpolate"], interpolate_missing, x)
        else:  # the clip as read was interpolated once for every view
            modified = self._modifies_input(fires)
            x = maybe(
                fires["interpolate"],
                lambda v: tf.cond(modified, lambda: interpolate_missing(v), lambda: interpolated),
                x,
            )
        x = maybe(fires["flip"], flip, x)
        angle = random_rotation_angle(rotate_seed, cfg.max_rotation_degrees)
        x = maybe(fires["rotate"], lambda v: rotate(v, angle), x)

        def crop(v):
            return temporal_crop(v, crop_seed, cfg.crop_min_len, cfg.crop_max_fraction)

        # Phase 1 crops before scaling, phase 2 after, as the original did (the two commute:
        # the scale is the same for every frame).
        x = maybe(phase_one & fires["crop"], crop, x)
        x = maybe(
            fires["scale"],
            lambda v: scale(v, scale_seed, cfg.scale_min, cfg.scale_max, cfg.distortion_p),
            x,
        )
        x = maybe(~phase_one & fires["crop"], crop, x)
        return tf.ensure_shape(x, [None, lm.NUM_POINTS, lm.NUM_COORDINATES])
