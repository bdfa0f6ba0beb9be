"""The landmark layout matches seed-spec §2 and §4."""

import numpy as np

from tfislr import landmarks


def test_point_count_and_groups():
    assert len(landmarks.KEPT_ROWS) == 95
    assert len(set(landmarks.KEPT_ROWS)) == 95
    assert landmarks.NUM_POINTS == 100
    assert [len(rows) for _, rows in landmarks.AVERAGED_GROUPS] == [9, 9, 4, 4, 5]
    assert landmarks.KEPT_ROWS[:21] == tuple(range(468, 489))
    assert landmarks.KEPT_ROWS[21:42] == tuple(range(522, 543))
    assert landmarks.KEPT_ROWS[81:93] == tuple(range(500, 512))
    assert max(landmarks.KEPT_ROWS) < landmarks.NUM_RAW_LANDMARKS


def test_type_ids_follow_the_original():
    counts = np.bincount(landmarks.TYPE_IDS, minlength=landmarks.NUM_TYPE_IDS)
    # Hands 21+21, silhouette 18, lips 21, arms 12, cheeks 2 + 5 averaged points share type 6.
    assert counts.tolist() == [0, 21, 21, 18, 21, 12, 7, 0, 0]
    assert landmarks.LANDMARK_IDS.tolist() == list(range(1, 101))


def test_part_point_sets():
    assert len(landmarks.FACE_POINTS) == 25
    assert len(landmarks.FACE_CUTMIX_POINTS) == 46
    assert landmarks.LIPS_POINTS == tuple(range(60, 81))
    assert landmarks.NOSE_POINT == 99


def test_flip_permutation_is_an_involution_with_the_spec_fixed_points():
    perm = landmarks.FLIP_PERMUTATION
    np.testing.assert_array_equal(perm[perm], np.arange(100))
    fixed = np.flatnonzero(perm == np.arange(100)).tolist()
    assert fixed == [42, 47, 60, 99]
    assert perm[0] == 21 and perm[20] == 41
    # Every swapped pair keeps the type (hands excepted: left <-> right).
    same_type = landmarks.TYPE_IDS == landmarks.TYPE_IDS[perm]
    assert not same_type[:42].any() and same_type[42:].all()
