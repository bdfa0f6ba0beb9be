"""Augmentations: what each must preserve and what it must change (docs/recipe.md §5, §9)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfislr import augment
from tfislr import landmarks as lm
from tfislr.config import AugmentConfig

LEFT = np.asarray(lm.LEFT_HAND_POINTS)
RIGHT = np.asarray(lm.RIGHT_HAND_POINTS)
FACE = np.asarray(lm.FACE_CUTMIX_POINTS)
NOT_FACE = np.setdiff1d(np.arange(lm.NUM_POINTS), FACE)
NOSE = lm.NOSE_POINT
SEED = np.array([3, 7], dtype=np.int32)


def make_sequence(num_frames, seed=0, missing=0.0):
    """A normalized-looking sequence: N(0, 1) values, a fraction set to 0 (missing)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_frames, lm.NUM_POINTS, 3)).astype(np.float32)
    if missing:
        x[rng.random(x.shape[:2]) < missing] = 0.0
    return x


def many(fn, x, num_seeds, partner=None):
    """fn(x, [partner,] seed) for seeds [i, 11], i < num_seeds, as a list of numpy arrays.

    Runs through one tf.data map (one trace), which is also how the pipeline calls it.
    """
    seeds = tf.data.Dataset.range(num_seeds).map(
        lambda i: tf.stack([tf.cast(i, tf.int32), tf.constant(11)])
    )
    if partner is None:
        ds = seeds.map(lambda s: fn(tf.constant(x), s))
    else:
        ds = seeds.map(lambda s: fn(tf.constant(x), tf.constant(partner), s))
    return [out.numpy() for out in ds]


def reference_interpolation(x):
    x = x.copy()
    num_frames = x.shape[0]
    for p in range(x.shape[1]):
        for c in range(x.shape[2]):
            values = x[:, p, c]
            present = np.flatnonzero(values != 0)
            if 2 <= len(present) < num_frames:
                x[:, p, c] = np.interp(np.arange(num_frames), present, values[present])
    return x


# --- flip -----------------------------------------------------------------------------------


def test_flip_twice_is_bitwise_identity():
    x = make_sequence(17, missing=0.3)
    twice = augment.flip(augment.flip(x)).numpy()
    assert twice.tobytes() == x.tobytes()  # -0.0 would differ from +0.0 byte-wise


def test_flip_swaps_hands_negates_x_and_keeps_missing_zeros():
    x = make_sequence(9, missing=0.3)
    x[:, LEFT] = 0.0  # left hand absent everywhere
    flipped = augment.flip(x).numpy()
    np.testing.assert_array_equal(flipped[:, RIGHT, 0], -x[:, LEFT, 0])
    np.testing.assert_array_equal(flipped[:, LEFT, 0], -x[:, RIGHT, 0])
    np.testing.assert_array_equal(flipped[:, LEFT, 1:], x[:, RIGHT, 1:])
    assert not flipped[:, RIGHT].any()  # the absent hand moved sides, still all zero
    np.testing.assert_array_equal(flipped[:, NOSE], x[:, NOSE] * [-1, 1, 1])  # nose fixed
    np.testing.assert_array_equal(flipped == 0, (x == 0)[:, lm.FLIP_PERMUTATION])
    assert not np.signbit(flipped[flipped == 0]).any()


# --- rotate ---------------------------------------------------------------------------------


def test_rotate_preserves_norms_and_z():
    x = make_sequence(12, missing=0.2)
    x[:, 5, :2] = 0.0
    out = augment.rotate(x, 0.4).numpy()
    np.testing.assert_allclose(
        np.hypot(out[..., 0], out[..., 1]), np.hypot(x[..., 0], x[..., 1]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(out[..., 2], x[..., 2])
    assert not out[:, 5, :2].any()  # a point missing in x and y stays at the origin
    assert not np.allclose(out[..., 0], x[..., 0])


def test_rotate_direction_and_random_angle_range():
    point = np.zeros((1, lm.NUM_POINTS, 3), np.float32)
    point[0, 0] = [1.0, 0.0, 0.5]
    out = augment.rotate(point, np.pi / 2).numpy()
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, 0.5], atol=1e-6)
    angles = np.array(
        [augment.random_rotation_angle(tf.constant([i, 1])).numpy() for i in range(200)]
    )
    limit = np.deg2rad(AugmentConfig().max_rotation_degrees)
    assert np.all(np.abs(angles) <= limit)
    assert angles.min() < -0.8 * limit and angles.max() > 0.8 * limit


# --- interpolate ----------------------------------------------------------------------------


def test_interpolate_fills_interior_linearly_and_holds_edges():
    x = np.zeros((7, lm.NUM_POINTS, 3), np.float32)
    x[:, 3, 0] = [0, 1, 0, 0, 4, 0, 0]  # gaps inside and at both edges
    x[:, 4, 1] = [0, 0, 5, 0, 0, 0, 0]  # one present frame: unchanged
    x[:, 6, 2] = [1, 2, 3, 4, 5, 6, 7]  # nothing missing: unchanged
    out = augment.interpolate_missing(x).numpy()
    np.testing.assert_allclose(out[:, 3, 0], [1, 1, 2, 3, 4, 4, 4])
    np.testing.assert_array_equal(out[:, 4, 1], x[:, 4, 1])
    np.testing.assert_array_equal(out[:, 6, 2], x[:, 6, 2])
    untouched = np.ones(x.shape, bool)
    untouched[:, 3, 0] = False
    assert not out[untouched & (x == 0)].any()  # all-zero series stay zero


@pytest.mark.parametrize("num_frames", [1, 2, 3, 25, 80])
def test_interpolate_matches_numpy_reference(num_frames):
    x = make_sequence(num_frames, seed=num_frames, missing=0.5)
    out = augment.interpolate_missing(x).numpy()
    np.testing.assert_allclose(out, reference_interpolation(x), rtol=1e-6, atol=1e-6)
    present = x != 0
    np.testing.assert_array_equal(out[present], x[present])


# --- temporal crop --------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames, max_dropped", [(19, 0), (20, 3), (25, 4), (80, 15)])
def test_crop_bounds_over_many_seeds(num_frames, max_dropped):
    x = make_sequence(num_frames)
    outs = many(augment.temporal_crop, x, 150)
    dropped = np.array([num_frames - len(out) for out in outs])
    if max_dropped == 0:
        assert not dropped.any()
        return
    assert dropped.min() == 1 and dropped.max() == max_dropped
    from_start = 0
    for out, c in zip(outs, dropped):
        if np.array_equal(out, x[c:]):
            from_start += 1
        else:
            np.testing.assert_array_equal(out, x[: num_frames - c])
    assert 0.3 < from_start / len(outs) < 0.7


def test_crop_does_nothing_when_the_range_is_empty():
    # min_len lowered: int(0.2 * 9) = 1, so randint(1, 1) is empty.
    x = make_sequence(9)
    out = augment.temporal_crop(x, SEED, min_len=2).numpy()
    np.testing.assert_array_equal(out, x)
    one = make_sequence(1)
    np.testing.assert_array_equal(augment.temporal_crop(one, SEED, min_len=1).numpy(), one)


# --- scale ----------------------------------------------------------------------------------


def test_scale_factor_ranges_and_distortion_rule():
    cfg = AugmentConfig()
    x = np.ones((3, lm.NUM_POINTS, 3), np.float32)
    x[1, 7] = 0.0

    def factors(distortion_p, num_seeds=120):
        outs = many(lambda v, s: augment.scale(v, s, distortion_p=distortion_p), x, num_seeds)
        for out in outs:
            assert not out[1, 7].any()  # missing stays missing
        return np.array([out[0, 0] for out in outs])  # per-coordinate multipliers

    plain = factors(0.0)
    assert np.all(plain[:, 0] == plain[:, 1]) and np.all(plain[:, 1] == plain[:, 2])
    assert plain.min() >= cfg.scale_min and plain.max() < cfg.scale_max
    assert plain.min() < cfg.scale_min + 0.05 and plain.max() > cfg.scale_max - 0.05

    distorted = factors(1.0)  # s + d_k, as the original coded it
    assert distorted.min() >= 2 * cfg.scale_min and distorted.max() < 2 * cfg.scale_max
    assert np.all(np.ptp(distorted, axis=1) > 0)

    mixed = factors(cfg.distortion_p, num_seeds=400)
    share = np.mean(np.ptp(mixed, axis=1) > 0)
    assert 0.17 < share < 0.33


# --- missing-hand fill ----------------------------------------------------------------------


def test_fill_missing_hand_mirrors_the_present_hand_around_the_nose():
    x = make_sequence(4, seed=5)
    x[1, LEFT] = 0.0  # frame 1: left absent
    x[2, RIGHT] = 0.0  # frame 2: right absent
    x[3, LEFT] = 0.0  # frame 3: both absent
    x[3, RIGHT] = 0.0
    out = augment.fill_missing_hand(x).numpy()

    np.testing.assert_array_equal(out[0], x[0])  # both present
    np.testing.assert_array_equal(out[3], x[3])  # both absent
    nose_x = x[:, NOSE, 0]
    np.testing.assert_allclose(out[1, LEFT, 0], 2 * nose_x[1] - x[1, RIGHT, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[1, LEFT, 1:], x[1, RIGHT, 1:])
    np.testing.assert_allclose(out[2, RIGHT, 0], 2 * nose_x[2] - x[2, LEFT, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[2, RIGHT, 1:], x[2, LEFT, 1:])
    np.testing.assert_array_equal(out[1, RIGHT], x[1, RIGHT])
    np.testing.assert_array_equal(out[2, LEFT], x[2, LEFT])
    others = np.setdiff1d(np.arange(lm.NUM_POINTS), np.concatenate([LEFT, RIGHT]))
    np.testing.assert_array_equal(out[:, others], x[:, others])


def reference_fill_as_coded(x):
    """The original's `add_missing_hand` (docs/recipe.md §9) transcribed to the [T, 100, 3]
    layout with NumPy, step by step: the mirror of every point (hands swapped, x around the
    nose), then "left missing" tested on the arm points' x and "right missing" on a type no
    point has, each writing the mirror over the other hand in the frames where it holds."""
    mirror = x[:, np.r_[RIGHT, LEFT]].copy()  # landmark k of the other hand
    mirror[..., 0] = 2 * x[:, NOSE, 0][:, None] - mirror[..., 0]
    out = x.copy()
    left_missing = np.abs(x[:, lm.ARM_POINTS, 0]).sum(-1) == 0
    right_missing = np.ones(len(x), bool)  # the sum over no point is 0
    out[np.ix_(left_missing, RIGHT)] = mirror[left_missing][:, len(LEFT):]
    out[np.ix_(right_missing, LEFT)] = mirror[right_missing][:, :len(LEFT)]
    return out


def test_fill_hand_original_overwrites_the_left_hand_as_the_code_ran():
    x = make_sequence(5, seed=6)
    x[1, RIGHT] = 0.0  # right absent: the left hand becomes (2 x_nose, 0, 0)
    x[2, LEFT] = 0.0  # left absent
    x[3, lm.ARM_POINTS, 0] = 0.0  # arms' x all 0: the right hand is overwritten too
    x[4, LEFT] = 0.0
    x[4, RIGHT] = 0.0
    out = augment.fill_hand_original(x).numpy()

    np.testing.assert_allclose(out, reference_fill_as_coded(x), rtol=1e-6, atol=1e-6)
    nose_x = x[:, NOSE, 0]
    # Both hands present (frame 0): the left hand is still replaced by the mirrored right.
    np.testing.assert_allclose(out[0, LEFT, 0], 2 * nose_x[0] - x[0, RIGHT, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[0, LEFT, 1:], x[0, RIGHT, 1:])
    np.testing.assert_array_equal(out[0, RIGHT], x[0, RIGHT])
    np.testing.assert_allclose(out[1, LEFT, 0], 2 * nose_x[1], rtol=1e-6)
    np.testing.assert_array_equal(out[1, LEFT, 1:], 0.0)
    # Frame 3: the hands trade places, mirrored.
    np.testing.assert_allclose(out[3, RIGHT, 0], 2 * nose_x[3] - x[3, LEFT, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[3, RIGHT, 1:], x[3, LEFT, 1:])
    others = np.setdiff1d(np.arange(lm.NUM_POINTS), np.concatenate([LEFT, RIGHT]))
    np.testing.assert_array_equal(out[:, others], x[:, others])
    # What differs from the README's fill: frames with both hands present change.
    assert not np.array_equal(out[0], augment.fill_missing_hand(x).numpy()[0])


@pytest.mark.parametrize("hand_fill", ["original", "missing_frames"])
def test_augmenter_fills_hands_as_configured(hand_fill):
    x = make_sequence(6, seed=8)
    x[2, LEFT] = 0.0
    config = dataclasses.replace(only(hand_fill_p=1.0), hand_fill=hand_fill)
    out = augment.Augmenter(config)(x, None, SEED).numpy()
    fill = {"original": augment.fill_hand_original, "missing_frames": augment.fill_missing_hand}
    np.testing.assert_array_equal(out, fill[hand_fill](x).numpy())
    assert AugmentConfig().hand_fill == "original"  # the code's behaviour is the default


# --- face CutMix ----------------------------------------------------------------------------


def test_resize_time_matches_torch_linear_half_pixel():
    down = augment.resize_time(np.arange(4, dtype=np.float32)[:, None], 2).numpy()[:, 0]
    np.testing.assert_allclose(down, [0.5, 2.5])
    up = augment.resize_time(np.array([[0.0], [1.0]], np.float32), 4).numpy()[:, 0]
    np.testing.assert_allclose(up, [0.0, 0.25, 0.75, 1.0])
    same = make_sequence(5)
    np.testing.assert_allclose(augment.resize_time(same, 5).numpy(), same)


def test_face_cutmix_replaces_only_the_face_within_the_target_range():
    x = make_sequence(10, seed=1, missing=0.1)
    partner = 3.0 * make_sequence(14, seed=2) + 5.0  # other range, other length
    out = augment.face_cutmix(x, partner).numpy()
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[:, NOT_FACE], x[:, NOT_FACE])
    assert not np.allclose(out[:, FACE], x[:, FACE])
    face, new = x[:, FACE], out[:, FACE]
    np.testing.assert_allclose(new.min(axis=(0, 1)), face.min(axis=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(new.max(axis=(0, 1)), face.max(axis=(0, 1)), atol=1e-5)
    # The new face is an increasing affine image of the resampled partner face, per coordinate.
    source = augment.resize_time(partner, 10).numpy()[:, FACE]
    for c in range(3):
        assert np.corrcoef(source[..., c].ravel(), new[..., c].ravel())[0, 1] > 0.9999


def test_face_cutmix_flips_a_partner_with_the_other_dominant_hand():
    x = make_sequence(8, seed=3)
    x[:5, LEFT] = 0.0  # x is right-handed (left hand missing more often)
    partner = make_sequence(8, seed=4)
    partner[:, RIGHT] = 0.0  # left-handed partner
    flipped_partner = augment.flip(partner).numpy()  # right-handed, used as is
    out = augment.face_cutmix(x, partner).numpy()
    np.testing.assert_allclose(out, augment.face_cutmix(x, flipped_partner).numpy(), atol=1e-6)
    # Control: had the partner not been flipped, the face would be different.
    x_left = augment.flip(x).numpy()  # now left-handed like the partner: no flip
    unflipped = augment.face_cutmix(x_left, partner).numpy()
    assert not np.allclose(augment.flip(unflipped).numpy()[:, FACE], out[:, FACE])


def test_face_cutmix_skips_faceless_partner_and_keeps_z_when_its_range_is_zero():
    x = make_sequence(6, seed=5)
    faceless = make_sequence(6, seed=6)
    faceless[:, FACE] = 0.0
    np.testing.assert_array_equal(augment.face_cutmix(x, faceless).numpy(), x)
    flat_y = make_sequence(6, seed=6)
    flat_y[:, FACE, 1] = 0.25
    np.testing.assert_array_equal(augment.face_cutmix(x, flat_y).numpy(), x)

    flat_z = make_sequence(6, seed=7)
    flat_z[:, FACE, 2] = 0.5
    out = augment.face_cutmix(x, flat_z).numpy()
    np.testing.assert_array_equal(out[..., 2], x[..., 2])
    assert not np.allclose(out[:, FACE, :2], x[:, FACE, :2])


@pytest.mark.parametrize("num_frames", [1, 2])
def test_face_cutmix_short_sequences(num_frames):
    x = make_sequence(num_frames, seed=8)
    out = augment.face_cutmix(x, make_sequence(30, seed=9)).numpy()
    assert out.shape == x.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, NOT_FACE], x[:, NOT_FACE])


# --- Augmenter ------------------------------------------------------------------------------


def only(**probabilities):
    """An AugmentConfig with every probability 0 except the given ones."""
    zero = {
        name: 0.0
        for name in (
            "face_cutmix_p", "hand_fill_p", "interpolate_p", "flip_p", "rotate_p",
            "crop_p", "crop_p_phase2", "scale_p", "distortion_p",
        )
    }
    return dataclasses.replace(AugmentConfig(), **{**zero, **probabilities})


def test_augmenter_deterministic_per_seed_and_different_across_seeds():
    aug = augment.Augmenter()
    x, partner = make_sequence(40, seed=1, missing=0.2), make_sequence(33, seed=2)
    first = aug(x, partner, tf.constant([5, 6])).numpy()
    again = aug(x, partner, tf.constant([5, 6])).numpy()
    np.testing.assert_array_equal(first, again)
    outs = many(aug, x, 12, partner=partner)
    distinct = {out.tobytes() for out in outs}
    assert len(distinct) >= 10
    for out in outs:
        assert out.shape[1:] == (lm.NUM_POINTS, 3) and 32 <= out.shape[0] <= 40
        assert np.isfinite(out).all()


def test_views_equal_one_call_per_view_bit_for_bit_and_read_partners_only_for_cutmix():
    """`Augmenter.views` (shared interpolation, lazy partners) gives each view exactly what
    `__call__` gives it; a partner is read only when that view's CutMix fires."""
    aug = augment.Augmenter()
    x = make_sequence(40, seed=1, missing=0.2)
    partners = [make_sequence(33 + v, seed=2 + v) for v in range(3)]
    for phase in (1, 2):
        for first in range(0, 48, 3):  # 16 clips x 3 views: every branch mix occurs
            seeds = [tf.constant([first + v, 9]) for v in range(3)]
            reads = []

            def reader(v):
                def read():
                    reads.append(v)
                    return partners[v]
                return read

            views = aug.views(x, [reader(v) for v in range(3)], seeds, phase=phase)
            for v, view in enumerate(views):
                expected = aug(x, partners[v], seeds[v], phase=phase).numpy()
                assert view.numpy().tobytes() == expected.tobytes()
            coins = [augment.Augmenter._draws(s)[0][0].numpy() for s in seeds]
            fired = [v for v in range(3) if phase == 1 and coins[v] < aug.config.face_cutmix_p]
            assert reads == fired


def test_augmenter_disabled_is_identity():
    aug = augment.Augmenter(dataclasses.replace(AugmentConfig(), enabled=False))
    x = make_sequence(30, missing=0.2)
    np.testing.assert_array_equal(aug(x, x, SEED).numpy(), x)


@pytest.mark.parametrize("hand_fill", ["original", "missing_frames"])
def test_phase_switch_changes_which_augmentations_fire(hand_fill):
    x = make_sequence(30, seed=3)
    x[:, LEFT] = 0.0
    aug = augment.Augmenter(dataclasses.replace(
        only(hand_fill_p=1.0, crop_p=1.0, crop_p_phase2=0.0), hand_fill=hand_fill))
    out = aug(x, None, SEED).numpy()
    assert len(out) < 30 and out[:, LEFT].any()  # phase 1: cropped, hand filled
    aug.set_phase(2)
    np.testing.assert_array_equal(aug(x, None, SEED).numpy(), x)  # phase 2: neither

    aug = augment.Augmenter(only(crop_p=0.0, crop_p_phase2=1.0))
    assert len(aug(x, None, SEED)) == 30
    aug.set_phase(2)
    assert len(aug(x, None, SEED)) < 30
    # A phase given per call wins over the variable (pipelines pass each element's own).
    assert len(aug(x, None, SEED, phase=tf.constant(1))) == 30
    aug.set_phase(1)
    assert len(aug(x, None, SEED, phase=tf.constant(2))) < 30


def test_crop_frequency_follows_the_phase():
    aug = augment.Augmenter()
    x = make_sequence(80, seed=4)
    for phase, expected in ((1, aug.config.crop_p), (2, aug.config.crop_p_phase2)):
        aug.set_phase(phase)
        share = np.mean([len(out) < 80 for out in many(aug, x, 200, partner=x)])
        assert abs(share - expected) < 0.12, (phase, share)


def test_set_phase_for_epoch_follows_the_original_schedule():
    aug = augment.Augmenter()
    # Original: 1-based epoch 50 of 100 starts phase 2 -> 0-based epoch 49.
    assert aug.set_phase_for_epoch(48, 100) == 1
    assert aug.set_phase_for_epoch(49, 100) == 2 and int(aug.phase.numpy()) == 2
    assert aug.set_phase_for_epoch(99, 100) == 2
    assert aug.set_phase_for_epoch(0, 1) == 1  # int(0.5) = 0: never switches
    # The graph-side schedule is the same one, for tensor epochs too.
    epochs = tf.constant([0, 48, 49, 99], tf.int64)
    np.testing.assert_array_equal(aug.phase_of_epoch(epochs, 100), [1, 1, 2, 2])
    assert int(aug.phase_of_epoch(tf.constant(0, tf.int64), 1)) == 1
    with pytest.raises(ValueError, match="phase"):
        aug.set_phase(3)


def test_invalid_config_and_inputs_raise():
    with pytest.raises(ValueError, match="flip_p"):
        augment.Augmenter(dataclasses.replace(AugmentConfig(), flip_p=1.5))
    with pytest.raises(ValueError, match="seed"):
        augment.Augmenter()(make_sequence(3), None, None)
    with pytest.raises(ValueError, match=r"\[T, 100, 3\]"):
        augment.interpolate_missing(np.zeros((3, 99, 3), np.float32))


def test_augmenter_in_parallel_tf_data_map_with_dynamic_lengths():
    aug = augment.Augmenter(only(
        face_cutmix_p=1.0, hand_fill_p=1.0, interpolate_p=1.0, flip_p=0.5, rotate_p=1.0,
        crop_p=1.0, scale_p=1.0, distortion_p=0.5,
    ))
    lengths = [1, 2, 19, 25, 80, 3]
    sequences = [make_sequence(n, seed=n, missing=0.2) for n in lengths]

    def generator():
        for i, seq in enumerate(sequences):
            yield seq, sequences[(i + 1) % len(sequences)], np.array([i, 0], np.int32)

    spec = tf.TensorSpec([None, lm.NUM_POINTS, 3], tf.float32)
    ds = tf.data.Dataset.from_generator(
        generator, output_signature=(spec, spec, tf.TensorSpec([2], tf.int32))
    ).map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    first = [out.numpy() for out in ds]
    second = [out.numpy() for out in ds]
    for n, seq, a, b in zip(lengths, sequences, first, second):
        np.testing.assert_array_equal(a, b)
        assert a.shape[1:] == (lm.NUM_POINTS, 3) and 1 <= a.shape[0] <= n
        assert np.isfinite(a).all()
    # Same element, same seed, eager call: same result as inside the map.
    eager = aug(sequences[4], sequences[5], tf.constant([4, 0])).numpy()
    np.testing.assert_allclose(first[4], eager, rtol=1e-6, atol=1e-6)
