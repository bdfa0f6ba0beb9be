"""The landmark layout: the one place that knows MediaPipe row numbers.

A raw frame is `[543, 3]` with MediaPipe Holistic rows in the Kaggle order
face (468) · left hand (21) · pose (33) · right hand (21). The 6th-place recipe
keeps 95 rows and averages 5 groups, giving the 100 "model points" whose order,
type ids, landmark ids and left/right mirror permutation are defined here.
Every other module imports these constants; none repeats the numbers.
"""

import numpy as np

from tfislr.text import plural

NUM_RAW_LANDMARKS = 543
NUM_COORDINATES = 3

# Row ranges of each MediaPipe part in a raw frame (start, stop).
PART_ROWS = {
    "face": (0, 468),
    "left_hand": (468, 489),
    "pose": (489, 522),
    "right_hand": (522, 543),
}
PART_ORDER = ("face", "left_hand", "pose", "right_hand")
NUM_HAND_LANDMARKS = 21

LEFT_HAND_ROWS = tuple(range(*PART_ROWS["left_hand"]))
RIGHT_HAND_ROWS = tuple(range(*PART_ROWS["right_hand"]))
# A frame is kept by preprocessing iff any of these rows has a non-NaN x.
HAND_ROWS = LEFT_HAND_ROWS + RIGHT_HAND_ROWS

FACE_SILHOUETTE_ROWS = (
    10, 54, 67, 132, 150, 152, 162, 172, 176, 234, 284, 297, 361, 379, 389, 397, 400, 454,
)
LIPS_ROWS = (
    13, 37, 40, 61, 78, 81, 84, 87, 88, 91, 191, 267, 270, 291, 308, 311, 314, 317, 318, 321, 415,
)
# Pose 11..22: shoulders, elbows, wrists, pinkies, index fingers, thumbs.
ARM_ROWS = tuple(range(500, 512))
CHEEK_ROWS = (205, 425)

# Each group becomes one point: the plain mean of its rows (NaN if any row is NaN).
AVERAGED_GROUPS = (
    ("left_eye", (466, 387, 385, 398, 263, 390, 374, 381, 362)),
    ("right_eye", (246, 160, 158, 173, 33, 163, 145, 154, 133)),
    ("left_eyebrow", (383, 293, 296, 285)),
    ("right_eyebrow", (156, 63, 66, 55)),
    ("nose", (1, 2, 98, 327, 168)),
)

# Kept rows in model-point order with their type id (0 is reserved for padding).
_KEPT_GROUPS = (
    ("left_hand", LEFT_HAND_ROWS, 1),
    ("right_hand", RIGHT_HAND_ROWS, 2),
    ("face_silhouette", FACE_SILHOUETTE_ROWS, 3),
    ("lips", LIPS_ROWS, 4),
    ("arms", ARM_ROWS, 5),
    ("cheeks", CHEEK_ROWS, 6),
)
# The original reused its loop variable, so the averaged points share the cheeks' type 6.
AVERAGED_TYPE_ID = 6

KEPT_ROWS = tuple(row for _, rows, _ in _KEPT_GROUPS for row in rows)
NUM_KEPT_POINTS = len(KEPT_ROWS)  # 95
NUM_POINTS = NUM_KEPT_POINTS + len(AVERAGED_GROUPS)  # 100

TYPE_IDS = np.array(
    [type_id for _, rows, type_id in _KEPT_GROUPS for _ in rows]
    + [AVERAGED_TYPE_ID] * len(AVERAGED_GROUPS),
    dtype=np.int32,
)
NUM_TYPE_IDS = 9  # embedding rows, as in the original (ids 1..6 used, 0 = padding)
# Landmark id of point p is p + 1; 0 is padding.
LANDMARK_IDS = np.arange(1, NUM_POINTS + 1, dtype=np.int32)
NUM_LANDMARK_IDS = NUM_POINTS + 1


def _point_range(name):
    start = 0
    for group_name, rows, _ in _KEPT_GROUPS:
        if group_name == name:
            return tuple(range(start, start + len(rows)))
        start += len(rows)
    raise KeyError(name)


LEFT_HAND_POINTS = _point_range("left_hand")  # 0..20
RIGHT_HAND_POINTS = _point_range("right_hand")  # 21..41
FACE_SILHOUETTE_POINTS = _point_range("face_silhouette")  # 42..59
LIPS_POINTS = _point_range("lips")  # 60..80
ARM_POINTS = _point_range("arms")  # 81..92
AVERAGED_POINTS = tuple(range(NUM_KEPT_POINTS, NUM_POINTS))  # 95..99
NOSE_POINT = NUM_POINTS - 1  # 99, the mean of the nose group

# Points each part MLP sees (docs/recipe.md §3): the face branch takes types {3, 6}.
FACE_POINTS = tuple(int(p) for p in np.flatnonzero(np.isin(TYPE_IDS, (3, 6))))  # 25 points
# Points replaced by face CutMix: types {3, 4, 6}.
FACE_CUTMIX_POINTS = tuple(int(p) for p in np.flatnonzero(np.isin(TYPE_IDS, (3, 4, 6))))  # 46

# Mirror pairs in point positions (docs/recipe.md §5); unlisted points map to themselves.
_FLIP_PAIRS = (
    [(p, p + NUM_HAND_LANDMARKS) for p in LEFT_HAND_POINTS]
    + [(43, 52), (44, 53), (45, 54), (46, 55), (48, 56), (49, 57), (50, 58), (51, 59)]
    + [(61, 71), (62, 72), (63, 73), (64, 74), (65, 75), (66, 76), (67, 77), (68, 78),
       (69, 79), (70, 80)]
    + [(81, 82), (83, 84), (85, 86), (87, 88), (89, 90), (91, 92)]
    + [(93, 94), (95, 96), (97, 98)]
)


def _flip_permutation():
    permutation = np.arange(NUM_POINTS, dtype=np.int32)
    for a, b in _FLIP_PAIRS:
        permutation[a], permutation[b] = b, a
    return permutation


# flipped[:, p] = original[:, FLIP_PERMUTATION[p]] (after negating x). An involution.
FLIP_PERMUTATION = _flip_permutation()


def detected_frames(frames):
    """(frames with any landmark, frames with a hand) of raw frames `[T, 543, 3]`.

    A landmark counts when its x is finite, a hand when one of `HAND_ROWS` does: the test
    `tfislr.preprocessing.Preprocess` keeps frames by (NaN and ±inf are missing). A clip
    with no hand frame reaches the model as one all-zero frame, whatever else it holds.
    """
    present = np.isfinite(np.asarray(frames)[..., 0])
    return int(present.any(axis=1).sum()), int(present[:, list(HAND_ROWS)].any(axis=1).sum())


def missing_hands(num_frames, with_landmarks, with_hands):
    """For a clip without a hand frame (`detected_frames`) the words saying so, e.g. "no
    hand in any of its 15 frames" (or "no landmarks in any of ...", MediaPipe found no
    person, or "no frames at all" for an empty clip: nothing was there to detect); None when
    it has one."""
    if with_hands:
        return None
    if num_frames == 0:
        return "no frames at all (the clip is empty)"
    frames = plural(num_frames, "frame")
    if not with_landmarks:
        return f"no landmarks in any of its {frames} (MediaPipe found no person)"
    return f"no hand in any of its {frames}"
