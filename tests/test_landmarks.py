"""The landmark layout matches docs/recipe.md §3 and §5."""

import numpy as np

from tfislr import landmarks as lm


def test_point_count_and_groups():
    assert len(lm.KEPT_ROWS) == 95
    assert len(set(lm.KEPT_ROWS)) == 95
    assert lm.NUM_POINTS == 100
    assert [len(rows) for _, rows in lm.AVERAGED_GROUPS] == [9, 9, 4, 4, 5]
    assert lm.KEPT_ROWS[:21] == tuple(range(468, 489))
    assert lm.KEPT_ROWS[21:42] == tuple(range(522, 543))
    assert lm.KEPT_ROWS[81:93] == tuple(range(500, 512))
    assert max(lm.KEPT_ROWS) < lm.NUM_RAW_LANDMARKS


def test_type_ids_follow_the_original():
    counts = np.bincount(lm.TYPE_IDS, minlength=lm.NUM_TYPE_IDS)
    # Hands 21+21, silhouette 18, lips 21, arms 12, cheeks 2 + 5 averaged points share type 6.
    assert counts.tolist() == [0, 21, 21, 18, 21, 12, 7, 0, 0]
    assert lm.LANDMARK_IDS.tolist() == list(range(1, 101))


def test_part_point_sets():
    assert len(lm.FACE_POINTS) == 25
    assert len(lm.FACE_CUTMIX_POINTS) == 46
    assert lm.LIPS_POINTS == tuple(range(60, 81))
    assert lm.NOSE_POINT == 99


def test_flip_permutation_is_an_involution_with_the_spec_fixed_points():
    perm = lm.FLIP_PERMUTATION
    np.testing.assert_array_equal(perm[perm], np.arange(100))
    fixed = np.flatnonzero(perm == np.arange(100)).tolist()
    assert fixed == [42, 47, 60, 99]
    assert perm[0] == 21 and perm[20] == 41
    # Every swapped pair keeps the type (hands excepted: left <-> right).
    same_type = lm.TYPE_IDS == lm.TYPE_IDS[perm]
    assert not same_type[:42].any() and same_type[42:].all()


def test_missing_hands_words_each_case():
    """A clip with no frames at all is said to be empty (nothing to blame MediaPipe for); one
    frame is "1 frame"."""
    assert lm.missing_hands(0, 0, 0) == "no frames at all (the clip is empty)"
    assert lm.missing_hands(1, 0, 0) == "no landmarks in any of its 1 frame (MediaPipe found no person)"
    assert lm.missing_hands(15, 15, 0) == "no hand in any of its 15 frames"
    assert lm.missing_hands(15, 15, 1) is None
