"""Synthetic continuous signing: signers performing known sign sequences, with the true timeline.

The stream recognizer's evaluation data (`tfislr.stream`, `benchmarks/stream.py`). The signs
are the ones `tfislr.data.synthetic` draws for the same `seed` (sign i is `_make_sign(seed,
i)`, its motion made by the same path and hand-shape generators), so a model trained on that
module's isolated clips knows them; the signers are drawn by the same rule too, and signer
indices from the training set's `num_participants` on are people the model never saw.

A stream, frame by frame (30 frames a second in the timings below):

    idle, hands down ─ rise ─ sign 1 ─ [link] ─ sign 2 ─ ... ─ sign N ─ fall ─ idle

* **A sign** moves as in an isolated clip: its path, hand shapes, mouthing and brows along
  its own warped progress (`tau` 0 → 1), for its own duration at the signer's speed.
* **A link** between two signs is, with probability `rest_probability`, a rest (the hands
  fall below the picture, stay down 5-40 frames, rise again to the next sign's start),
  otherwise a chained transition: a hold on the last posture (2-8 frames), a move of 5-14
  frames to the next sign's first posture (path and hand shape interpolated), and a hold
  there (2-8 frames), as signers hold briefly between chained signs.
* **Around the hands**, face, pose, body drift and what MediaPipe misses come from
  `tfislr.data.synthetic` over the whole stream (missing hands out of the picture,
  dropouts, blank frames, face occlusions).

The ground truth of a sign is its first and last frame of motion (`tau` leaving 0, reaching
1): holds, transitions, rises and falls belong to no sign. Two consecutive signs are never the
same sign, so a recognized sequence is scored without guessing how many repeats were meant.

`write_stream_dataset` writes

    OUT/streams/<stream>.parquet   one stream, the Kaggle landmark schema, frames from 0
    OUT/timeline.csv               stream, path, participant_index, sign, label, start_frame,
                                   end_frame (inclusive, 0-based frame numbers)
    OUT/sign_to_prediction_index_map.json   as in the isolated data set (alphabetical labels)
"""

import json
import pathlib

import numpy as np
import pandas as pd

from tfislr.checks import check_int
from tfislr.data import synthetic
from tfislr.data.kaggle import SIGN_MAP_JSON
from tfislr.data.synthetic import (
    _face, _hand_paths, _hand_shapes, _make_participant, _make_sign, _place_hands, _pose,
    _drop_undetected, _smoothstep,
)

# Random-stream kind of a stream (synthetic.py uses 1..4), so no stream shares a clip's stream.
_STREAM = 5
REST = np.array([0.45, 2.0])  # synthetic.py's resting wrist (u, v): below the picture
TIMELINE_CSV = "timeline.csv"
STREAMS_DIR = "streams"


def _sign_motion(sign, participant, rng):
    """One sign's own frames: (dominant uv [n, 2], other uv [n, 2], dominant rel [n, 21, 3],
    other rel [n, 21, 3], tau [n]) with n its drawn duration, as `synthetic._timing` draws it."""
    active = sign["duration"] / participant["speed"] * rng.lognormal(0.0, 0.25)
    active = int(np.clip(round(active), 3, 300))
    tau = (np.arange(active) / max(active - 1, 1)) ** rng.uniform(0.7, 1.4)
    up = np.ones((active, 1))
    dominant_uv, other_uv = _hand_paths(sign, participant, rng, tau, up)
    dominant_rel, other_rel = _hand_shapes(sign, rng, tau)
    return [dominant_uv, other_uv, dominant_rel, other_rel], tau


def _between(first, last, num_frames, ease=True):
    """`num_frames` frames going from `first` to `last` (arrays of one frame), ends excluded."""
    s = np.arange(1, num_frames + 1) / (num_frames + 1)
    s = _smoothstep(s) if ease else s
    s = s.reshape((-1,) + (1,) * np.ndim(first))
    return first + (last - first) * s


def _hold(value, num_frames):
    return np.repeat(value[None], num_frames, axis=0)


class _Track:
    """The stream's motion, frame by frame, as it is assembled: both wrists' (u, v), both
    hands' points relative to the wrist, the current sign's progress `tau`, mouthing and
    brows (0 outside signs)."""

    def __init__(self):
        self.pieces = [[], [], [], []]  # dominant uv, other uv, dominant rel, other rel
        self.tau, self.mouth, self.brows = [], [], []
        self.length = 0

    def add(self, parts, tau=None, sign=None):
        n = len(parts[0])
        for store, part in zip(self.pieces, parts):
            store.append(part)
        self.tau.append(np.zeros(n) if tau is None else tau)
        self.mouth.append(np.full(n, 0.0 if sign is None else sign["mouth"]))
        self.brows.append(np.full(n, 0.0 if sign is None else sign["brows"]))
        self.length += n

    def idle(self, num_frames):
        """Hands down, holding their last shape (a flat hand before the first sign)."""
        if self.pieces[2]:
            hand, other = (_hold(self.pieces[k][-1][-1], num_frames) for k in (2, 3))
        else:
            hand = other = _hold(synthetic._hand_points(
                synthetic._HAND_SHAPES[:1], np.zeros((1, 3)))[0], num_frames)
        self.add([_hold(REST, num_frames), _hold(REST, num_frames), hand, other])

    def move(self, last, target, num_frames):
        """The wrists from the posture `last` to the (u, v) `target` pair, shapes held."""
        self.add([_between(last[0], target[0], num_frames),
                  _between(last[1], target[1], num_frames),
                  _hold(last[2], num_frames), _hold(last[3], num_frames)])

    def arrays(self):
        return ([np.concatenate(p) for p in self.pieces], np.concatenate(self.tau),
                {"mouth": np.concatenate(self.mouth)[:, None],
                 "brows": np.concatenate(self.brows)[:, None]})


def _link(track, rng, previous, first, rest_probability):
    """The frames between the posture `previous` (None before the first sign) and the next
    sign's first posture `first`: a rest (fall, stay down, rise) or a chained transition."""
    if previous is None or rng.random() < rest_probability:
        if previous is not None:  # fall, stay down, then rise
            track.move([part[-1] for part in previous], (REST, REST), int(rng.integers(6, 13)))
            track.idle(int(rng.integers(5, 41)))
        rise = int(rng.integers(6, 13))
        track.add([_between(REST, first[0], rise), _between(REST, first[1], rise),
                   _hold(first[2], rise), _hold(first[3], rise)])
        return
    last = [part[-1] for part in previous]  # chained: hold, move to the next posture, hold
    end_hold, move, start_hold = (int(rng.integers(2, 9)), int(rng.integers(5, 15)),
                                  int(rng.integers(2, 9)))
    track.add([_hold(v, end_hold) for v in last])
    track.add([_between(a, b, move) for a, b in zip(last, first)])
    track.add([_hold(v, start_hold) for v in first])


def _render(participant, rng, track):
    """The assembled motion → raw frames float64 `[T, 543, 3]`: body, face, pose and what
    MediaPipe misses, as `synthetic.generate_sequence` makes them."""
    (dominant_uv, other_uv, dominant_rel, other_rel), tau, expression = track.arrays()
    length = track.length
    body_drift = np.cumsum(rng.normal(0, 0.0015, (length, 2)), axis=0)
    body_drift -= body_drift.mean(0)
    centre = np.array([participant["centre_x"], participant["shoulder_y"]]) + body_drift
    hands = _place_hands(participant, rng, centre, (dominant_uv, dominant_rel),
                         (other_uv, other_rel))
    # Mouthing and brows of the sign being made, per frame ([T, 1] broadcasts like a scalar).
    t = np.arange(length, dtype=np.float64)
    face, face_centre = _face(expression, participant, rng, t, tau, centre)
    pose = _pose(participant, rng, centre, face, face_centre, hands)
    _drop_undetected(participant, rng, hands, face, face_centre)
    frames = np.empty((length, 543, 3))
    frames[:, synthetic._FACE], frames[:, synthetic._LEFT] = face, hands["left"]
    frames[:, synthetic._POSE], frames[:, synthetic._RIGHT] = pose, hands["right"]
    return frames


def generate_stream(seed, participant_index, sign_indices, stream_index,
                    rest_probability=0.4):
    """One signer performing `sign_indices` in order.

    Args:
        seed: the synthetic data set's seed (the signs and signers are its).
        participant_index: the signer (index in `synthetic`'s signer streams).
        sign_indices: the signs, in order; two consecutive ones must differ.
        stream_index: picks this stream's random draws (timing, links, detection misses).
        rest_probability: the chance that the hands go down between two signs.

    Returns:
        `(frames, timeline)`: float64 `[T, 543, 3]` (NaN where nothing was detected) and
        one `(sign_index, start_frame, end_frame)` a sign, frames inclusive and 0-based.

    Raises:
        ValueError: no signs, or the same sign twice in a row.
    """
    sign_indices = [check_int("sign index", s, minimum=0) for s in sign_indices]
    if not sign_indices:
        raise ValueError("a stream needs at least one sign")
    if any(a == b for a, b in zip(sign_indices, sign_indices[1:])):
        raise ValueError("two consecutive signs of a stream must differ")
    rng = np.random.default_rng([seed, _STREAM, participant_index, stream_index])
    participant = _make_participant(seed, participant_index)
    track, timeline, previous = _Track(), [], None
    track.idle(int(rng.integers(10, 31)))
    for sign_index in sign_indices:
        sign = _make_sign(seed, sign_index)
        motion, tau = _sign_motion(sign, participant, rng)
        _link(track, rng, previous, [part[0] for part in motion], rest_probability)
        start = track.length
        track.add(motion, tau, sign)
        timeline.append((sign_index, start, track.length - 1))
        previous = motion
    track.move([part[-1] for part in previous], (REST, REST), int(rng.integers(6, 13)))
    track.idle(int(rng.integers(10, 31)))
    return _render(participant, rng, track), timeline


def stream_plan(num_signs, participant_indices, streams_per_participant, signs_per_stream, seed):
    """`[(name, participant_index, stream_index, [sign indices])]`: each stream's signs drawn
    uniformly, never the same twice in a row."""
    plan = []
    for participant_index in participant_indices:
        for k in range(streams_per_participant):
            rng = np.random.default_rng([seed, _STREAM, participant_index, k, 0])
            signs = [int(rng.integers(num_signs))]
            while len(signs) < signs_per_stream:
                candidate = int(rng.integers(num_signs))
                if candidate != signs[-1] or num_signs == 1:
                    signs.append(candidate)
            plan.append((f"p{participant_index}_s{k}", participant_index, k, signs))
    return plan


def write_stream_dataset(out_dir, num_signs, participant_indices, streams_per_participant=4,
                         signs_per_stream=10, seed=0, rest_probability=0.4):
    """Writes streams and their timeline under `out_dir` (see the module docstring).

    `num_signs` and `seed` must be those of the isolated data set the model learnt (the
    signs and their names are functions of both); `participant_indices` at or above its
    `num_participants` are signers it never saw. Returns the timeline as a DataFrame.
    """
    if num_signs < 2 and signs_per_stream > 1:
        raise ValueError("a stream of several signs needs at least 2 signs")
    out_dir = pathlib.Path(out_dir)
    (out_dir / STREAMS_DIR).mkdir(parents=True, exist_ok=True)
    names = synthetic.sign_names(num_signs)
    sign_map = {name: label for label, name in enumerate(sorted(names))}
    rows = []
    for name, participant_index, k, signs in stream_plan(
            num_signs, participant_indices, streams_per_participant, signs_per_stream, seed):
        frames, timeline = generate_stream(seed, participant_index, signs, k, rest_probability)
        relative = f"{STREAMS_DIR}/{name}.parquet"
        synthetic.write_landmark_file(out_dir / relative, frames)
        for sign_index, start, end in timeline:
            rows.append({"stream": name, "path": relative, "participant_index": participant_index,
                         "frames": len(frames), "sign": names[sign_index],
                         "label": sign_map[names[sign_index]], "start_frame": start,
                         "end_frame": end})
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / TIMELINE_CSV, index=False)
    (out_dir / SIGN_MAP_JSON).write_text(json.dumps(sign_map))
    return table


def read_timeline(out_dir):
    """`TIMELINE_CSV` of a stream data set → `{stream: (path, [(sign, start, end)])}`."""
    out_dir = pathlib.Path(out_dir)
    table = pd.read_csv(out_dir / TIMELINE_CSV)
    streams = {}
    for row in table.itertuples():
        entry = streams.setdefault(row.stream, (out_dir / row.path, []))
        entry[1].append((row.sign, int(row.start_frame), int(row.end_frame)))
    return streams
