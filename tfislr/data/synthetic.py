"""Synthetic sign data in the exact Kaggle `asl-signs` layout: the demo's and the tests' data.

`write_synthetic_dataset` writes

    train.csv                                   path,participant_id,sequence_id,sign
    sign_to_prediction_index_map.json           {sign: label}, labels in alphabetical sign order
    train_landmark_files/<pid>/<sid>.parquet    the real schema: frame int16, row_id string,
                                                type string, landmark_index int16, x/y/z float64
                                                (missing = null), 543 rows a frame in the order
                                                face · left_hand · pose · right_hand, row_id
                                                "{frame}-{type}-{landmark_index}", frame ids
                                                contiguous from a random offset

so every reader, the prepare step and the exported model see it exactly like competition data.

What makes it learnable, and hard enough to be interesting:

* **Signs** differ by the dominant hand's smooth wrist trajectory (a start/end point in the
  signing space plus a few sinusoidal components: lines, arcs, circles, repeated taps), by
  its hand shape (a finger-curl configuration from a small vocabulary of real hand shapes,
  optionally changing to a second one mid-sign), by the palm orientation, by whether the
  other hand takes part (mirrored, or as a static base hand) and by a little mouthing and
  eyebrow movement. Names are pseudo-words; labels follow alphabetical order like Kaggle's.
* **Participants** differ by body proportions (shoulder width, neck, face and hand size),
  position in the image, speed (time warp), signing-space scale/offset, detection quality
  and handedness (left-handed signers mirror every sign onto the left hand).
* **Missing data** follows MediaPipe's patterns: a hand is missing whenever it is out of the
  image (so sequences start and end with handless frames while the hands rise and fall), the
  idle hand of a one-handed sign is usually not seen, detections drop out for a few frames,
  some frames have no hand at all, the face is occasionally not detected (in bursts, when a
  hand covers it, rarely for a whole clip). The pose is always present, with off-image legs
  (y > 1), as in the real data.
* **Lengths** range from 2 frames to a few hundred (log-normal sign durations, lead-in and
  lead-out frames, a few long idle clips and a few truncated ones).

Geometry is in MediaPipe image coordinates (x, y ≈ [0, 1], y down; z small for face and
hands, larger for the pose), with magnitudes matched to the real sample.

Everything is a pure function of `seed` and the sizes: a sign, a participant and a sequence
each get their own random stream (`numpy.random.default_rng([seed, kind, index])`), so the
files do not depend on how the work is split across processes.

CLI: `python -m tfislr.data.synthetic --out DIR --signs N --participants P
--sequences-per-sign K --seed S [--workers W]`.
"""

import json
import multiprocessing
import os
import pathlib
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tfislr import atomic
from tfislr import landmarks as lm
from tfislr.checks import check_int
from tfislr.data.kaggle import SIGN_MAP_JSON, TRAIN_CSV, TRAIN_CSV_COLUMNS

MAX_SIGNS = 250
MAX_FRAMES = 480

# Random-stream kinds, so that e.g. sign 3 and participant 3 never share a stream.
_SIGN, _PARTICIPANT, _SEQUENCE, _LAYOUT = 1, 2, 3, 4

# ---------------------------------------------------------------------------------------
# Raw row layout of one frame (the Kaggle order).

_PART_SIZES = tuple(lm.PART_ROWS[p][1] - lm.PART_ROWS[p][0] for p in lm.PART_ORDER)
FRAME_TYPE_CODES = np.repeat(np.arange(len(lm.PART_ORDER), dtype=np.int32), _PART_SIZES)
FRAME_LANDMARK_INDEX = np.concatenate([np.arange(n) for n in _PART_SIZES]).astype(np.int16)
_ROW_SUFFIX = pa.array(
    [f"-{lm.PART_ORDER[t]}-{i}" for t, i in zip(FRAME_TYPE_CODES, FRAME_LANDMARK_INDEX)]
)
_FACE = slice(*lm.PART_ROWS["face"])
_LEFT = slice(*lm.PART_ROWS["left_hand"])
_POSE = slice(*lm.PART_ROWS["pose"])
_RIGHT = slice(*lm.PART_ROWS["right_hand"])


def frames_to_table(frames, first_frame=0):
    """`[T, 543, 3]` float frames (NaN = missing) → a pyarrow Table with the Kaggle schema.

    Missing values become parquet nulls, as in the competition files. `first_frame` is the
    id of the first frame; ids are contiguous from there.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[1:] != (lm.NUM_RAW_LANDMARKS, 3):
        raise ValueError(f"frames must be [T, 543, 3], got shape {frames.shape}")
    num_frames = frames.shape[0]
    frame_ids = np.arange(first_frame, first_frame + num_frames)
    if num_frames and (frame_ids[0] < -(2**15) or frame_ids[-1] >= 2**15):
        raise ValueError("frame ids must fit in int16")
    frame_column = np.repeat(frame_ids.astype(np.int16), lm.NUM_RAW_LANDMARKS)
    frame_text = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(np.arange(num_frames, dtype=np.int32), lm.NUM_RAW_LANDMARKS)),
        pa.array([str(f) for f in frame_ids], type=pa.string()),
    ).cast(pa.string())
    suffix = pc.take(_ROW_SUFFIX, pa.array(np.tile(np.arange(lm.NUM_RAW_LANDMARKS), num_frames)))
    type_column = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(FRAME_TYPE_CODES, num_frames)), pa.array(list(lm.PART_ORDER))
    ).cast(pa.string())
    flat = frames.reshape(-1, 3)
    return pa.table(
        {
            "frame": pa.array(frame_column),
            "row_id": pc.binary_join_element_wise(frame_text, suffix, ""),
            "type": type_column,
            "landmark_index": pa.array(np.tile(FRAME_LANDMARK_INDEX, num_frames)),
            "x": pa.array(flat[:, 0], from_pandas=True),
            "y": pa.array(flat[:, 1], from_pandas=True),
            "z": pa.array(flat[:, 2], from_pandas=True),
        }
    )


def write_landmark_file(path, frames, first_frame=0):
    """Writes `[T, 543, 3]` frames as one Kaggle landmark parquet file (atomically)."""
    # Dictionary-encoding the float columns (pandas' default) costs 3x the write time for
    # nothing: real-valued coordinates hardly repeat.
    with atomic.atomic_path(path) as tmp:
        pq.write_table(
            frames_to_table(frames, first_frame), tmp,
            use_dictionary=["frame", "type", "landmark_index"],
        )


# ---------------------------------------------------------------------------------------
# Sign names: pronounceable pseudo-words, fixed for all seeds (sign i is always the same word).


def sign_names(num_signs):
    """The first `num_signs` of a fixed list of 250 distinct pseudo-words."""
    if not 1 <= num_signs <= MAX_SIGNS:
        raise ValueError(f"num_signs must be in [1, {MAX_SIGNS}], got {num_signs}")
    rng = np.random.default_rng(20230224)
    onsets = list("bdfgklmnprstvz") + ["br", "ch", "gl", "pl", "sh", "st", "tr"]
    vowels = list("aeiou") + ["ai", "ou"]
    codas = ["", "", "", "n", "r", "l", "s", "t", "m"]
    names, seen = [], set()
    while len(names) < MAX_SIGNS:
        syllables = rng.integers(1, 4)
        word = "".join(
            onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))]
            for _ in range(syllables)
        ) + codas[rng.integers(len(codas))]
        if 3 <= len(word) <= 10 and word not in seen:
            seen.add(word)
            names.append(word)
    return names[:num_signs]


# ---------------------------------------------------------------------------------------
# Face: a fixed 468-point template in face units (x right, y down, z away from the camera;
# width 1 between the sides of the oval), with the points the model uses put where they
# belong (oval, lips, eyes, brows, nose, cheeks); the remaining points fill the oval.

# MediaPipe's face-oval ring, clockwise from the top of the forehead (image orientation).
_FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Lip rings: from the mouth corner on the image left, along the lower lip, back along the upper.
_LIPS_OUTER = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)
_LIPS_INNER = (
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)


def _face_template():
    rng = np.random.default_rng(468)
    points = np.zeros((468, 3))
    # Filler points: uniform in a slightly smaller oval, bulging towards the camera.
    radius = np.sqrt(rng.uniform(0, 1, 468)) * 0.85
    angle = rng.uniform(0, 2 * np.pi, 468)
    points[:, 0] = 0.5 * radius * np.sin(angle)
    points[:, 1] = -0.46 * radius * np.cos(angle)
    points[:, 2] = 0.14 * radius**2 - 0.06
    for k, row in enumerate(_FACE_OVAL):
        a = 2 * np.pi * k / len(_FACE_OVAL)
        points[row] = (0.5 * np.sin(a), -0.46 * np.cos(a), 0.13 * abs(np.sin(a)) + 0.01)
    for ring, half_height in ((_LIPS_OUTER, 0.07), (_LIPS_INNER, 0.025)):
        for k, row in enumerate(ring):
            theta = np.pi - np.pi * k / 10 if k <= 10 else np.pi * (k - 10) / 10
            sign = 1.0 if k <= 10 else -1.0  # lower lip has larger y
            points[row] = (0.17 * np.cos(theta), 0.24 + sign * half_height * np.sin(theta), -0.04)
    for (_, rows), centre in zip(lm.AVERAGED_GROUPS, ((0.2, -0.1), (-0.2, -0.1))):
        for k, row in enumerate(rows):
            a = 2 * np.pi * k / len(rows)
            points[row] = (centre[0] + 0.08 * np.cos(a), centre[1] + 0.03 * np.sin(a), 0.0)
    for (_, rows), centre_x in zip(lm.AVERAGED_GROUPS[2:4], (0.2, -0.2)):
        for k, row in enumerate(rows):
            points[row] = (centre_x + 0.12 * (k / (len(rows) - 1) - 0.5), -0.21, -0.01)
    nose = {1: (0, 0.05, -0.12), 2: (0, 0.1, -0.09), 98: (-0.06, 0.1, -0.06),
            327: (0.06, 0.1, -0.06), 168: (0, -0.12, -0.03)}
    for row, xyz in nose.items():
        points[row] = xyz
    points[205] = (-0.22, 0.1, 0.0)
    points[425] = (0.22, 0.1, 0.0)
    return points


_FACE_TEMPLATE = _face_template()
_LOWER_LIP_ROWS = np.array(_LIPS_OUTER[1:10] + _LIPS_INNER[1:10])
_BROW_ROWS = np.array(lm.AVERAGED_GROUPS[2][1] + lm.AVERAGED_GROUPS[3][1])

# ---------------------------------------------------------------------------------------
# Hand: a 21-point kinematic model in hand-length units (wrist → middle fingertip ≈ 1),
# canonical right hand, palm towards the camera, fingers up. Finger f (thumb, index,
# middle, ring, pinky) = base point + 3 segments that bend towards the camera as it curls.

_FINGER_BASE = np.array(
    [[0.12, -0.08], [0.12, -0.38], [0.035, -0.40], [-0.05, -0.38], [-0.13, -0.33]]
)
_FINGER_ANGLE = np.radians([50.0, 8.0, 0.0, -7.0, -15.0])  # from "up", towards +x
_FINGER_SPREAD = np.radians([25.0, 10.0, 0.0, -10.0, -18.0])  # extra angle at full spread
_FINGER_SEGMENTS = np.array(
    [[0.16, 0.13, 0.11], [0.20, 0.12, 0.10], [0.22, 0.14, 0.10], [0.20, 0.13, 0.10],
     [0.15, 0.10, 0.09]]
)
_JOINT_BEND = np.array(
    [[0.5, 0.6, 0.6], [1.5, 1.75, 1.2], [1.5, 1.75, 1.2], [1.5, 1.75, 1.2], [1.5, 1.75, 1.2]]
)
# Real hand shapes as curls (thumb, index, middle, ring, pinky) and spread.
_HAND_SHAPES = np.array(
    [
        [0.3, 0.0, 0.0, 0.0, 0.0, 0.1],  # flat B
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # open 5
        [0.2, 1.0, 1.0, 1.0, 1.0, 0.0],  # fist A/S
        [0.8, 0.0, 1.0, 1.0, 1.0, 0.0],  # point 1
        [0.8, 0.0, 0.0, 1.0, 1.0, 0.8],  # V
        [0.8, 0.0, 0.0, 0.0, 1.0, 0.6],  # W
        [0.0, 1.0, 1.0, 1.0, 0.0, 0.5],  # Y
        [0.0, 0.0, 1.0, 1.0, 1.0, 0.3],  # L
        [0.8, 1.0, 1.0, 1.0, 0.0, 0.0],  # I
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.2],  # C / O
        [0.4, 0.45, 0.45, 0.45, 0.45, 0.9],  # claw
        [0.8, 0.6, 1.0, 1.0, 1.0, 0.0],  # X hook
        [0.3, 0.6, 0.6, 0.6, 0.6, 0.0],  # bent B
        [0.0, 0.0, 0.0, 1.0, 1.0, 0.5],  # 3
        [0.5, 0.0, 0.0, 0.0, 0.0, 0.7],  # 4-ish
    ]
)


def _rotation(angles):
    """`[T, 3]` (pitch about x, yaw about y, roll about z) → `[T, 3, 3]` = Rz · Ry · Rx."""
    a, b, c = angles[:, 0], angles[:, 1], angles[:, 2]
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rx = np.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).reshape(-1, 3, 3)
    ry = np.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], -1).reshape(-1, 3, 3)
    rz = np.stack([cc, -sc, zero, sc, cc, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return rz @ ry @ rx


def _hand_points(shape, angles):
    """Curls+spread `[T, 6]` and orientation `[T, 3]` → right-hand points `[T, 21, 3]`, wrist at 0."""
    num_frames = shape.shape[0]
    points = np.zeros((num_frames, 21, 3))
    toward_camera = np.array([0.0, 0.0, -1.0])
    for f in range(5):
        curl = np.clip(shape[:, f], 0.0, 1.1)
        direction_angle = _FINGER_ANGLE[f] + shape[:, 5] * _FINGER_SPREAD[f]
        if f == 0:  # a curling thumb swings across the palm
            direction_angle = direction_angle - curl * np.radians(100.0)
        direction = np.stack(
            [np.sin(direction_angle), -np.cos(direction_angle), np.zeros(num_frames)], -1
        )
        position = np.zeros((num_frames, 3))
        position[:, :2] = _FINGER_BASE[f]
        points[:, 1 + 4 * f] = position
        phi = np.zeros(num_frames)
        for j in range(3):
            phi = phi + curl * _JOINT_BEND[f, j]
            step = np.cos(phi)[:, None] * direction + np.sin(phi)[:, None] * toward_camera
            position = position + _FINGER_SEGMENTS[f, j] * step
            points[:, 2 + 4 * f + j] = position
    return points @ np.swapaxes(_rotation(angles), 1, 2)


# ---------------------------------------------------------------------------------------
# Signs, participants, sequences.


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _make_sign(seed, index):
    """Parameters of one sign, in a handedness-neutral frame: positions are (u, v) in shoulder
    widths from the shoulder midpoint, u towards the hand's own side, v downwards."""
    rng = np.random.default_rng([seed, _SIGN, index])
    sign = {}
    sign["two_handed"] = rng.random() < 0.3
    sign["mirrored"] = rng.random() < 0.6  # otherwise the other hand is a static base
    sign["start"] = np.array([rng.uniform(-0.3, 0.9), rng.uniform(-0.8, 0.6)])
    sign["end"] = sign["start"] + rng.normal(0.0, 0.35, 2)
    num_waves = rng.integers(0, 3)
    sign["wave_freq"] = rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], num_waves)
    sign["wave_amp"] = rng.uniform(0.05, 0.3, (num_waves, 2)) * rng.choice([-1, 1], (num_waves, 2))
    sign["wave_phase"] = rng.uniform(0, 2 * np.pi, (num_waves, 2))
    shapes = rng.integers(0, len(_HAND_SHAPES), 3)
    sign["shape_a"] = _HAND_SHAPES[shapes[0]] + rng.normal(0, 0.05, 6)
    sign["shape_b"] = (
        _HAND_SHAPES[shapes[1]] + rng.normal(0, 0.05, 6) if rng.random() < 0.5 else sign["shape_a"]
    )
    sign["shape_switch"] = rng.uniform(0.3, 0.7)
    sign["base_shape"] = _HAND_SHAPES[shapes[2]]
    sign["angles_a"] = np.radians(
        [rng.uniform(-50, 50), rng.uniform(-70, 70), rng.uniform(-70, 70)]
    )
    sign["angles_b"] = sign["angles_a"] + (
        np.radians(rng.normal(0, 35, 3)) if rng.random() < 0.5 else 0.0
    )
    sign["base_position"] = np.array([rng.uniform(-0.2, 0.3), rng.uniform(0.1, 0.6)])
    sign["mouth"] = rng.uniform(0, 0.08) if rng.random() < 0.4 else 0.0
    sign["brows"] = rng.uniform(0, 0.06) if rng.random() < 0.3 else 0.0
    # Typical number of frames of the sign itself (the real median clip is ~20-30 frames).
    sign["duration"] = float(np.clip(rng.lognormal(np.log(18.0), 0.35), 6, 70))
    return sign


def _make_participant(seed, index):
    rng = np.random.default_rng([seed, _PARTICIPANT, index])
    shoulder_width = rng.uniform(0.42, 0.62)
    return {
        "shoulder_width": shoulder_width,
        "centre_x": rng.uniform(0.42, 0.58),
        "shoulder_y": rng.uniform(0.6, 0.78),
        "neck": rng.uniform(0.38, 0.5) * shoulder_width,
        "face_width": rng.uniform(0.48, 0.6) * shoulder_width,
        "hand_length": rng.uniform(0.5, 0.62) * shoulder_width,
        "speed": rng.uniform(0.75, 1.35),
        "space_scale": rng.uniform(0.85, 1.15),
        "space_offset": rng.normal(0.0, 0.05, 2),
        "left_handed": rng.random() < 0.15,
        "dropout": rng.uniform(0.0, 0.06),
        "blank": rng.uniform(0.0, 0.03),
        "idle_hand_visible": rng.uniform(0.0, 0.3),
        "roll": np.radians(rng.normal(0, 3)),
    }


def _markov_mask(rng, num_frames, start_p, stop_p):
    """Boolean `[T]`: True during dropout bursts that start with `start_p`, end with `stop_p`."""
    out = np.zeros(num_frames, bool)
    starts = rng.random(num_frames) < start_p
    lengths = rng.geometric(stop_p, num_frames)
    for t in np.flatnonzero(starts):
        out[t : t + lengths[t]] = True
    return out


def _arm(shoulder, wrist, upper, lower):
    """Elbow positions `[T, 2]` from shoulder and wrist `[T, 2]` (2-D, elbow pointing down)."""
    delta = wrist - shoulder
    dist = np.maximum(np.linalg.norm(delta, axis=-1, keepdims=True), 1e-6)
    reach = np.minimum(dist, upper + lower - 1e-6)
    along = (upper**2 - lower**2 + reach**2) / (2 * reach)
    across = np.sqrt(np.maximum(upper**2 - along**2, 0.0))
    unit = delta / dist
    perp = np.stack([-unit[:, 1], unit[:, 0]], -1)
    perp = np.where(perp[:, 1:2] < 0, -perp, perp)  # the solution below the shoulder-wrist line
    return shoulder + along * unit + across * perp


def _fit_timing(lead, active, trail, num_frames):
    """(lead, active, trail) summing to exactly `num_frames`: the sign is shortened first
    only when it alone is longer; otherwise lead-in and lead-out absorb the difference."""
    active = min(active, num_frames)
    spare = num_frames - active
    if lead + trail > spare:  # shrink both in proportion
        lead = int(round(spare * lead / (lead + trail)))
    else:  # spread the extra frames over both
        lead += (spare - lead - trail) // 2
    return lead, active, spare - lead


def generate_sequence(sign, participant, rng, num_frames=None):
    """One clip: float64 `[T, 543, 3]` with NaN where nothing was detected.

    `num_frames` fixes T (>= 1, e.g. a real clip's frame count, as the full-scale rehearsal
    uses); by default T is drawn (lead-in, sign, lead-out, occasionally truncated).
    The story, one phase each, in the order the phases draw from `rng` (the order is part of
    the data: a seed gives the same clip): timing, hand paths, hand shapes, hands in the image,
    face, pose, what the detector misses.
    """
    if num_frames is not None:
        num_frames = check_int("num_frames", num_frames)
    p = participant
    fixed_length = num_frames is not None
    t, tau, up = _timing(sign, p, rng, num_frames)
    num_frames = len(t)
    dominant_uv, other_uv = _hand_paths(sign, p, rng, tau, up)
    dominant_rel, other_rel = _hand_shapes(sign, rng, tau)

    # --- to image coordinates, around the body's slowly drifting shoulder centre.
    body_drift = np.cumsum(rng.normal(0, 0.0015, (num_frames, 2)), axis=0)
    body_drift -= body_drift.mean(0)
    centre = np.array([p["centre_x"], p["shoulder_y"]]) + body_drift
    hands = _place_hands(p, rng, centre, (dominant_uv, dominant_rel), (other_uv, other_rel))
    face, face_centre = _face(sign, p, rng, t, tau, centre)
    pose = _pose(p, rng, centre, face, face_centre, hands)
    _drop_undetected(p, rng, hands, face, face_centre)

    frames = np.empty((num_frames, lm.NUM_RAW_LANDMARKS, 3))
    frames[:, _FACE], frames[:, _LEFT] = face, hands["left"]
    frames[:, _POSE], frames[:, _RIGHT] = pose, hands["right"]
    if not fixed_length and rng.random() < 0.05 and num_frames > 6:  # truncated: a few frames kept
        keep = int(rng.integers(2, 7))
        start = int(rng.integers(0, num_frames - keep + 1))
        frames = frames[start : start + keep]
    return frames


def _timing(sign, p, rng, num_frames):
    """Lead-in (hands rise), the sign, lead-out (hands fall); sometimes idle time.

    Returns `t` (frame numbers, float64 [T]), `tau` (the sign's warped progress, 0..1,
    float64 [T]) and `up` (float64 [T, 1]: 0 = hands at rest below the image, 1 = signing).
    T is `num_frames`, or drawn when it is None.
    """
    active = sign["duration"] / p["speed"] * rng.lognormal(0.0, 0.25)
    active = int(np.clip(round(active), 3, 300))
    lead = min(rng.geometric(0.15) - 1, 25)
    trail = min(rng.geometric(0.15) - 1, 25)
    if rng.random() < 0.04:
        lead += int(rng.uniform(40, 200))  # a long wait with the hands down
    if num_frames is not None:
        lead, active, trail = _fit_timing(lead, active, trail, num_frames)
    else:
        num_frames = min(lead + active + trail, MAX_FRAMES)
    t = np.arange(num_frames, dtype=np.float64)
    gamma = rng.uniform(0.7, 1.4)
    tau = np.clip((t - lead) / max(active - 1, 1), 0.0, 1.0) ** gamma  # time warp
    rise = _smoothstep((t + 1) / max(lead, 1)) if lead else np.ones(num_frames)
    fall = _smoothstep((lead + active + trail - t) / max(trail, 1)) if trail else np.ones(
        num_frames
    )
    up = np.minimum(rise, fall)[:, None]
    return t, tau, up


def _hand_paths(sign, p, rng, tau, up):
    """Wrist positions `(u, v)` in shoulder widths, float64 [T, 2] each: the dominant
    hand's path, and the other hand (mirroring it, holding the sign's base, or idle)."""
    num_frames = len(tau)
    path = sign["start"] + (sign["end"] - sign["start"]) * _smoothstep(tau)[:, None]
    for f, amp, phase in zip(sign["wave_freq"], sign["wave_amp"], sign["wave_phase"]):
        path = path + amp * np.sin(2 * np.pi * f * tau[:, None] + phase)
    path = path * p["space_scale"] + p["space_offset"] + rng.normal(0, 0.02, 2)
    path = np.clip(path, [-0.5, -0.85], [1.0, 0.9])  # stay in the signing space
    rest = np.array([0.45, 2.0])
    dominant_uv = rest + (path - rest) * up
    if sign["two_handed"] and sign["mirrored"]:
        other_uv = dominant_uv + rng.normal(0, 0.03, 2)
    elif sign["two_handed"]:
        other_uv = rest + (sign["base_position"] - rest) * up
    else:
        idle = np.array([0.5, 1.35]) if rng.random() < p["idle_hand_visible"] else rest
        other_uv = np.broadcast_to(idle, (num_frames, 2)).copy()
    return dominant_uv, other_uv


def _hand_shapes(sign, rng, tau):
    """Hand shapes and orientations: both hands' 21 points relative to the wrist, in hand
    lengths, float64 [T, 21, 3] each (dominant, other)."""
    num_frames = len(tau)
    switch = _smoothstep((tau - sign["shape_switch"]) / 0.25 + 0.5)[:, None]
    jitter = rng.normal(0, 0.05, 6)
    shape = sign["shape_a"] + (sign["shape_b"] - sign["shape_a"]) * switch + jitter
    angles = sign["angles_a"] + (sign["angles_b"] - sign["angles_a"]) * switch
    angles = angles + np.radians(rng.normal(0, 6, 3))
    dominant_rel = _hand_points(shape, angles)
    if sign["two_handed"] and sign["mirrored"]:
        other_rel = _hand_points(shape + rng.normal(0, 0.05, 6), angles)
    else:
        base_shape = sign["base_shape"] if sign["two_handed"] else _HAND_SHAPES[0]
        base_angles = np.radians([20.0, 0.0, 70.0]) if sign["two_handed"] else np.zeros(3)
        other_rel = _hand_points(
            np.broadcast_to(base_shape, (num_frames, 6)), np.broadcast_to(base_angles, (num_frames, 3))
        )
    return dominant_rel, other_rel


def _place_hands(p, rng, centre, dominant, other):
    """`{"left", "right"}` hands in image coordinates, float64 [T, 21, 3] each, from
    `(uv [T, 2], rel [T, 21, 3])` of the dominant and the other hand around `centre`
    (image coordinates, [T, 2]). The right hand's own side is the image left (x smaller)."""
    sw = p["shoulder_width"]
    hands = {}
    for side, (uv, rel) in (("dominant", dominant), ("other", other)):
        is_right = (side == "dominant") != p["left_handed"]
        own = -1.0 if is_right else 1.0
        wrist = np.stack([centre[:, 0] + own * uv[:, 0] * sw, centre[:, 1] + uv[:, 1] * sw], -1)
        pts = rel * p["hand_length"]
        if not is_right:
            pts[..., 0] *= -1  # a left hand is the mirror image of the right-hand model
        pts[..., :2] += wrist[:, None]
        pts += rng.normal(0, 0.0025, pts.shape)
        pts[:, 0, 2] = rng.normal(0, 3e-7, len(uv))  # MediaPipe's hand z is wrist-relative
        hands["right" if is_right else "left"] = pts
    return hands


def _face(sign, p, rng, t, tau, centre):
    """Face: template, head drift/roll, mouthing and brows. Returns the 468 face points,
    float64 [T, 468, 3], and the face centre in image coordinates, [T, 2]."""
    num_frames = len(t)
    face_centre = centre + np.array([0.0, -p["neck"]]) + np.cumsum(
        rng.normal(0, 0.001, (num_frames, 2)), axis=0
    )
    face = np.broadcast_to(_FACE_TEMPLATE, (num_frames, 468, 3)).copy()
    bump = np.sin(np.pi * tau)[:, None]
    face[:, _LOWER_LIP_ROWS, 1] += sign["mouth"] * bump * rng.uniform(0.6, 1.4)
    face[:, _BROW_ROWS, 1] -= sign["brows"] * bump
    head_angles = np.zeros((num_frames, 3))
    head_angles[:, 1] = rng.normal(0, 0.15)
    head_angles[:, 2] = p["roll"] + rng.normal(0, 0.05) + 0.03 * np.sin(t / 9.0 + rng.uniform(0, 6))
    face = (face @ np.swapaxes(_rotation(head_angles), 1, 2)) * p["face_width"]
    face[..., :2] += face_centre[:, None]
    face += rng.normal(0, 0.0012, face.shape)
    return face, face_centre


def _pose(p, rng, centre, face, face_centre, hands):
    """Pose: 33 points, float64 [T, 33, 3], always present; the head's from the face, the
    arms' from the hands (`{"left", "right"}`, [T, 21, 3]), the rest from the body centre."""
    num_frames = len(centre)
    sw = p["shoulder_width"]
    pose = np.zeros((num_frames, 33, 3))
    fw = p["face_width"]
    pose[:, 0] = face[:, 1]
    for rows, eye_rows in (((1, 2, 3), lm.AVERAGED_GROUPS[0][1]), ((4, 5, 6), lm.AVERAGED_GROUPS[1][1])):
        eye = face[:, list(eye_rows)].mean(1)
        for k, row in enumerate(rows):
            pose[:, row] = eye + np.array([(k - 1) * 0.05 * fw * (1 if row < 4 else -1), 0, 0])
    pose[:, 7, :2] = face_centre + np.array([0.5 * fw, -0.03 * fw])
    pose[:, 8, :2] = face_centre + np.array([-0.5 * fw, -0.03 * fw])
    pose[:, 9] = face[:, 291]
    pose[:, 10] = face[:, 61]
    left_shoulder = centre + np.array([0.5 * sw, 0.0])
    right_shoulder = centre + np.array([-0.5 * sw, 0.0])
    pose[:, 11, :2], pose[:, 12, :2] = left_shoulder, right_shoulder
    for shoulder, hand, rows in (
        (left_shoulder, hands["left"], (13, 15, 17, 19, 21)),
        (right_shoulder, hands["right"], (14, 16, 18, 20, 22)),
    ):
        elbow, wrist, pinky, index, thumb = rows
        pose[:, wrist, :2] = hand[:, 0, :2]
        pose[:, elbow, :2] = _arm(shoulder, hand[:, 0, :2], 0.62 * sw, 0.55 * sw)
        pose[:, pinky, :2] = hand[:, 17, :2]
        pose[:, index, :2] = hand[:, 5, :2]
        pose[:, thumb, :2] = hand[:, 2, :2]
        raised = np.clip((shoulder[:, 1] + 1.2 * sw - hand[:, 0, 1]) / sw, 0, 2)
        for row, depth in ((elbow, 0.6), (wrist, 1.0), (pinky, 1.1), (index, 1.1), (thumb, 1.05)):
            pose[:, row, 2] = -0.3 - depth * 0.7 * raised
    pose[:, 23, :2] = centre + np.array([0.33 * sw, 1.15 * sw])
    pose[:, 24, :2] = centre + np.array([-0.33 * sw, 1.15 * sw])
    for k, (dy, dz) in enumerate(((2.0, 0.2), (2.8, 0.9), (2.9, 0.95), (3.0, 0.3))):
        pose[:, 25 + 2 * k, :2] = centre + np.array([0.3 * sw, dy * sw])
        pose[:, 26 + 2 * k, :2] = centre + np.array([-0.3 * sw, dy * sw])
        pose[:, 25 + 2 * k : 27 + 2 * k, 2] = dz
    pose[:, :11, 2] = -1.2
    pose[:, 11:13, 2] = -0.4
    pose += rng.normal(0, [0.004, 0.004, 0.05], pose.shape)
    return pose


def _drop_undetected(p, rng, hands, face, face_centre):
    """What MediaPipe would miss: sets to NaN, in place, the frames of `hands` ([T, 21, 3]
    each) and `face` ([T, 468, 3]) a detector would not have found."""
    num_frames = len(face)
    blank = _markov_mask(rng, num_frames, p["blank"], 0.6)  # no hand at all (motion blur)
    for name, pts in hands.items():
        wrist = pts[:, 0]
        outside = (wrist[:, 1] > 1.0) | (wrist[:, 1] < 0.02) | (np.abs(wrist[:, 0] - 0.5) > 0.48)
        missed = outside | blank | _markov_mask(rng, num_frames, p["dropout"], 0.5)
        pts[missed] = np.nan
    face_missed = _markov_mask(rng, num_frames, 0.005, 0.4)
    dominant_wrist = hands["left" if p["left_handed"] else "right"][:, 0, :2]
    covering = np.all(np.abs(dominant_wrist - face_centre) < 0.35 * p["face_width"], axis=-1)
    face_missed |= covering & (rng.random(num_frames) < 0.1)
    if rng.random() < 0.005:
        face_missed[:] = True
    face[face_missed] = np.nan


# ---------------------------------------------------------------------------------------
# The data set.


def _layout(num_signs, num_participants, sequences_per_sign, seed):
    """train.csv rows: each sign's clips spread evenly over the participants."""
    rng = np.random.default_rng([seed, _LAYOUT])
    participant_ids = np.sort(rng.choice(np.arange(1000, 65000), num_participants, replace=False))
    total = num_signs * sequences_per_sign
    sequence_ids = np.unique(rng.integers(1_000_000, 4_294_967_295, total + 64))
    sequence_ids = rng.permutation(sequence_ids)[:total]
    if len(sequence_ids) < total:  # vanishingly unlikely collisions
        raise RuntimeError("sequence id collision; use another seed")
    rows = []
    for s in range(num_signs):
        order = np.random.default_rng([seed, _LAYOUT, s]).permutation(num_participants)
        for k in range(sequences_per_sign):
            rows.append((s, int(order[k % num_participants])))
    signs, participants = np.array(rows).T
    return pd.DataFrame(
        {
            "sign_index": signs,
            "participant_index": participants,
            "participant_id": participant_ids[participants],
            "sequence_id": sequence_ids,
            "sequence_index": np.arange(total),
        }
    )


def _write_sequences(args):
    out_dir, seed, rows = args
    signs, participants = {}, {}
    for sign_index, participant_index, sequence_index, relative_path, num_frames in rows:
        if sign_index not in signs:
            signs[sign_index] = _make_sign(seed, sign_index)
        if participant_index not in participants:
            participants[participant_index] = _make_participant(seed, participant_index)
        rng = np.random.default_rng([seed, _SEQUENCE, sequence_index])
        frames = generate_sequence(
            signs[sign_index], participants[participant_index], rng, num_frames=num_frames
        )
        first_frame = int(rng.integers(0, 60))
        write_landmark_file(pathlib.Path(out_dir) / relative_path, frames, first_frame)
    return len(rows)


def _write_all(out_dir, seed, table, names, num_workers, progress):
    """Writes every row's parquet file, then train.csv and the sign map (last, so a folder
    with a train.csv holds all its files)."""
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    table["sign"] = [names[i] for i in table["sign_index"]]
    table["path"] = [
        f"train_landmark_files/{pid}/{sid}.parquet"
        for pid, sid in zip(table["participant_id"], table["sequence_id"])
    ]
    lengths = table["num_frames"] if "num_frames" in table else [None] * len(table)
    rows = list(
        zip(
            table["sign_index"].tolist(),
            table["participant_index"].tolist(),
            table["sequence_index"].tolist(),
            table["path"].tolist(),
            [None if n is None else int(n) for n in lengths],
        )
    )
    chunk = 64
    tasks = [(str(out_dir), seed, rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), unit="seq", desc="synthetic", file=sys.stderr)
    if num_workers > 1 and len(tasks) > 1:
        # spawn, not fork: the caller may have TensorFlow (and its threads) loaded.
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            for done in pool.imap_unordered(_write_sequences, tasks):
                if bar is not None:
                    bar.update(done)
    else:
        for task in tasks:
            done = _write_sequences(task)
            if bar is not None:
                bar.update(done)
    if bar is not None:
        bar.close()
    csv = table.sort_values("sequence_id")[list(TRAIN_CSV_COLUMNS)]
    csv.to_csv(out_dir / TRAIN_CSV, index=False)
    sign_map = {name: label for label, name in enumerate(sorted(names))}
    (out_dir / SIGN_MAP_JSON).write_text(json.dumps(sign_map))
    return out_dir


def write_synthetic_dataset(
    out_dir,
    num_signs=10,
    num_participants=8,
    sequences_per_sign=24,
    seed=0,
    num_workers=1,
    progress=False,
):
    """Writes a synthetic data set in the Kaggle layout under `out_dir`; returns its path.

    Args:
        out_dir: target folder (created). Existing files with the same names are replaced.
        num_signs: 1..250 distinct signs.
        num_participants: signers; each sign's clips are spread evenly over them.
        sequences_per_sign: clips per sign (total = num_signs * sequences_per_sign).
        seed: everything (ids, signs, signers, clips) is a deterministic function of it.
        num_workers: processes writing parquet files (same output for any value).
        progress: show a tqdm progress bar.
    """
    if not 1 <= num_signs <= MAX_SIGNS:
        raise ValueError(f"num_signs must be in [1, {MAX_SIGNS}], got {num_signs}")
    check_int("num_participants", num_participants)
    check_int("sequences_per_sign", sequences_per_sign)
    table = _layout(num_signs, num_participants, sequences_per_sign, seed)
    return _write_all(pathlib.Path(out_dir), seed, table, sign_names(num_signs), num_workers, progress)


def write_skeleton_dataset(out_dir, skeleton, num_signs=250, seed=0, num_workers=1, progress=False):
    """Synthetic clips with the ids, signers and frame counts of `skeleton`; returns the path.

    The full-scale rehearsal's data: `skeleton` is a DataFrame with `participant_id`,
    `sequence_id` and `n_frames` (e.g. ../shared/data/skeleton/asl_signs_skeleton.csv, the
    competition's 94,477 clips), one parquet file a row, exactly `n_frames` frames long.
    Signs are synthetic and balanced (clip i of a random order gets sign i mod num_signs);
    signers keep their real ids, so the original's participant → fold map applies.
    """
    if not 1 <= num_signs <= MAX_SIGNS:
        raise ValueError(f"num_signs must be in [1, {MAX_SIGNS}], got {num_signs}")
    missing = {"participant_id", "sequence_id", "n_frames"} - set(skeleton.columns)
    if missing:
        raise ValueError(f"skeleton needs column(s) {', '.join(sorted(missing))}")
    if skeleton["sequence_id"].duplicated().any():
        raise ValueError("skeleton has duplicate sequence_id values")
    if (skeleton["n_frames"] < 1).any():
        raise ValueError("skeleton n_frames must be >= 1")
    rng = np.random.default_rng([seed, _LAYOUT])
    participant_ids = np.sort(skeleton["participant_id"].unique())
    table = pd.DataFrame(
        {
            "sign_index": rng.permutation(len(skeleton)) % num_signs,
            "participant_index": np.searchsorted(participant_ids, skeleton["participant_id"]),
            "participant_id": skeleton["participant_id"].to_numpy(),
            "sequence_id": skeleton["sequence_id"].to_numpy(),
            "sequence_index": np.arange(len(skeleton)),
            "num_frames": skeleton["n_frames"].to_numpy(),
        }
    )
    return _write_all(pathlib.Path(out_dir), seed, table, sign_names(num_signs), num_workers, progress)


if __name__ == "__main__":  # `python -m tfislr.data.synthetic`, the same as the command
    from tfislr.cli.synthetic import main

    sys.exit(main())
