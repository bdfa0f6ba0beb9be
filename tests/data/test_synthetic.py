"""The synthetic generator: exact Kaggle layout and schema, determinism, realistic and learnable data."""

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfislr.cli import synthetic as synthetic_cli
from tfislr import landmarks as lm
from tfislr.data import kaggle, synthetic
from conftest import SYNTHETIC_SIZES

REAL_SCHEMA = pa.schema(
    [
        ("frame", pa.int16()),
        ("row_id", pa.string()),
        ("type", pa.string()),
        ("landmark_index", pa.int16()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("z", pa.float64()),
    ]
)


def test_layout_matches_kaggle(synthetic_data_dir):
    table = pd.read_csv(synthetic_data_dir / "train.csv")
    assert list(table.columns) == ["path", "participant_id", "sequence_id", "sign"]
    total = SYNTHETIC_SIZES["num_signs"] * SYNTHETIC_SIZES["sequences_per_sign"]
    assert len(table) == total
    assert table["sequence_id"].is_unique
    assert table["participant_id"].nunique() == SYNTHETIC_SIZES["num_participants"]
    # Every sign is spread evenly over the participants.
    counts = table.groupby(["sign", "participant_id"]).size()
    assert counts.min() == counts.max() == 2
    expected_paths = [
        f"train_landmark_files/{p}/{s}.parquet"
        for p, s in zip(table["participant_id"], table["sequence_id"])
    ]
    assert table["path"].tolist() == expected_paths
    files = sorted(
        str(p.relative_to(synthetic_data_dir))
        for p in (synthetic_data_dir / "train_landmark_files").rglob("*.parquet")
    )
    assert files == sorted(expected_paths)
    sign_map = json.loads((synthetic_data_dir / "sign_to_prediction_index_map.json").read_text())
    assert sorted(sign_map) == sorted(table["sign"].unique())
    # Labels in alphabetical order of the signs, like the Kaggle map.
    assert [sign_map[s] for s in sorted(sign_map)] == list(range(len(sign_map)))


def test_files_have_the_real_schema(synthetic_data_dir):
    table = pd.read_csv(synthetic_data_dir / "train.csv")
    first_frames = []
    for path in table["path"][:12]:
        arrow = pq.read_table(synthetic_data_dir / path)
        assert arrow.schema.remove_metadata().equals(REAL_SCHEMA), arrow.schema
        frame = arrow.column("frame").to_numpy()
        assert len(frame) % 543 == 0
        num_frames = len(frame) // 543
        ids = frame.reshape(num_frames, 543)[:, 0]
        np.testing.assert_array_equal(ids, np.arange(ids[0], ids[0] + num_frames))
        first_frames.append(ids[0])
        types = np.array(arrow.column("type").to_pylist()).reshape(num_frames, 543)
        expected_types = np.repeat(lm.PART_ORDER, [468, 21, 33, 21])
        assert (types == expected_types).all()
        index = arrow.column("landmark_index").to_numpy().reshape(num_frames, 543)
        assert (index[:, 468:489] == np.arange(21)).all() and (index[:, :468] == np.arange(468)).all()
        row_id = arrow.column("row_id").to_pylist()
        for k in (0, 470, 500, len(row_id) - 1):
            assert row_id[k] == f"{frame[k]}-{types.ravel()[k]}-{index.ravel()[k]}"
        # Missing values are parquet nulls, as in the competition files.
        assert arrow.column("x").null_count == np.isnan(arrow.column("x").to_numpy()).sum()
    assert max(first_frames) > 0  # clips start at an offset, as the real ones do


def test_every_file_passes_the_kaggle_validator(synthetic_data_dir):
    table = kaggle.read_train_csv(synthetic_data_dir)
    for path in table["path"]:
        frames = kaggle.read_landmark_file(synthetic_data_dir / path)
        assert frames.dtype == np.float32 and frames.shape[1:] == (543, 3)


def test_deterministic_and_seed_dependent(tmp_path):
    sizes = dict(num_signs=3, num_participants=2, sequences_per_sign=2)
    a = synthetic.write_synthetic_dataset(tmp_path / "a", seed=5, **sizes)
    b = synthetic.write_synthetic_dataset(tmp_path / "b", seed=5, **sizes)
    c = synthetic.write_synthetic_dataset(tmp_path / "c", seed=6, **sizes)
    assert (a / "train.csv").read_bytes() == (b / "train.csv").read_bytes()
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()
    for path in pd.read_csv(a / "train.csv")["path"]:
        assert (a / path).read_bytes() == (b / path).read_bytes()


@pytest.mark.extra_large
def test_worker_count_does_not_change_the_output(tmp_path):
    sizes = dict(num_signs=4, num_participants=3, sequences_per_sign=40, seed=1)
    a = synthetic.write_synthetic_dataset(tmp_path / "a", num_workers=1, **sizes)
    b = synthetic.write_synthetic_dataset(tmp_path / "b", num_workers=2, **sizes)
    for path in pd.read_csv(a / "train.csv")["path"]:
        assert (a / path).read_bytes() == (b / path).read_bytes()


def test_sign_names_are_stable_and_distinct():
    names = synthetic.sign_names(250)
    assert len(set(names)) == 250
    assert synthetic.sign_names(7) == names[:7]
    assert all(re.fullmatch(r"[a-z]+", n) for n in names)
    for bad in (0, 251):
        with pytest.raises(ValueError, match="num_signs"):
            synthetic.sign_names(bad)
    with pytest.raises(ValueError, match="num_signs"):
        synthetic.write_synthetic_dataset("/nonexistent/never", num_signs=300)


def _clips(num_signs, num_participants, per_pair, seed=3):
    """Clips generated in memory: (frames, sign, participant index, participant dict)."""
    clips = []
    for s in range(num_signs):
        sign = synthetic._make_sign(seed, s)
        for p in range(num_participants):
            participant = synthetic._make_participant(seed, p)
            for k in range(per_pair):
                rng = np.random.default_rng([seed, s, p, k])
                clips.append((synthetic.generate_sequence(sign, participant, rng), s, p, participant))
    return clips


@pytest.fixture(scope="module")
def clips():
    return _clips(num_signs=10, num_participants=6, per_pair=5)


def test_missing_data_patterns_look_like_mediapipe(clips):
    lengths = np.array([len(c[0]) for c in clips])
    assert lengths.min() <= 6 and lengths.max() >= 80
    frames = np.concatenate([c[0] for c in clips])
    x = frames[..., 0]
    left = np.isnan(x[:, lm.LEFT_HAND_ROWS]).all(1)
    right = np.isnan(x[:, lm.RIGHT_HAND_ROWS]).all(1)
    face = np.isnan(x[:, :468]).all(1)
    # Parts are detected as a whole or not at all, as in the real files.
    for rows, missing in ((lm.LEFT_HAND_ROWS, left), (lm.RIGHT_HAND_ROWS, right), (range(468), face)):
        assert (np.isnan(x[:, list(rows)]).any(1) == missing).all()
    assert not np.isnan(frames[:, 489:522]).any()  # the pose is always there
    no_hand = left & right
    assert 0.1 < no_hand.mean() < 0.6
    assert (~left & ~right).mean() > 0.02  # two-handed frames exist
    assert 0.002 < face.mean() < 0.1
    # Clips typically start and end with handless frames (hands rising and falling).
    starts_handless = np.mean([np.isnan(c[0][0, lm.HAND_ROWS, 0]).all() for c in clips])
    assert starts_handless > 0.3
    # Some clips lose a hand in the middle of the sign.
    def has_gap(clip):
        seen = ~np.isnan(clip[:, lm.HAND_ROWS, 0]).all(1)
        idx = np.flatnonzero(seen)
        return len(idx) > 1 and not seen[idx[0] : idx[-1] + 1].all()
    assert np.mean([has_gap(c[0]) for c in clips]) > 0.05


def test_geometry_is_plausible(clips):
    frames = np.concatenate([c[0] for c in clips])
    hands = frames[:, lm.HAND_ROWS]
    face = frames[:, :468]
    assert np.nanmin(hands[..., :2]) > -0.25 and np.nanmax(hands[..., :2]) < 1.25
    assert np.nanmin(face[..., :2]) > 0.0 and np.nanmax(face[..., :2]) < 1.0
    assert np.nanmax(np.abs(face[..., 2])) < 0.3 and np.nanmax(np.abs(hands[..., 2])) < 0.4
    # Hand z is relative to the wrist, whose z is ~0 (MediaPipe convention).
    assert np.nanmax(np.abs(frames[:, [468, 522], 2])) < 1e-5
    # Face above shoulders, shoulders in the image, legs below it.
    assert np.nanmean(face[..., 1]) < np.mean(frames[:, 489 + 11, 1])
    assert np.mean(frames[:, 489 + 27, 1]) > 1.0


def test_participants_differ_including_handedness():
    participants = [synthetic._make_participant(0, p) for p in range(40)]
    assert 0 < sum(p["left_handed"] for p in participants) < 20
    widths = [p["shoulder_width"] for p in participants]
    assert max(widths) - min(widths) > 0.1
    # A left-handed signer signs with the left hand.
    left_handed = next(p for p in participants if p["left_handed"])
    right_handed = next(p for p in participants if not p["left_handed"])
    sign = synthetic._make_sign(0, 0)
    for participant, dominant, other in (
        (left_handed, lm.LEFT_HAND_ROWS, lm.RIGHT_HAND_ROWS),
        (right_handed, lm.RIGHT_HAND_ROWS, lm.LEFT_HAND_ROWS),
    ):
        seen = [
            ~np.isnan(synthetic.generate_sequence(sign, participant, np.random.default_rng(k))[:, rows, 0]).all(1)
            for k in range(8)
            for rows in (dominant, other)
        ]
        assert sum(s.sum() for s in seen[0::2]) > sum(s.sum() for s in seen[1::2])


def _features(frames, participant):
    """Sign-relevant, signer-normalized features of one clip (a crude hand-made encoder)."""
    dominant = lm.LEFT_HAND_ROWS if participant["left_handed"] else lm.RIGHT_HAND_ROWS
    hand = frames[:, dominant]
    seen = ~np.isnan(hand[:, 0, 0])
    if seen.sum() == 0:
        return np.zeros(16 + 15)
    hand = hand[seen]
    pose = frames[seen, 489:522]
    centre = (pose[:, 11, :2] + pose[:, 12, :2]) / 2
    width = np.linalg.norm(pose[:, 11, :2] - pose[:, 12, :2], axis=-1, keepdims=True)
    wrist = (hand[:, 0, :2] - centre) / width
    rel = (hand[:, [4, 8, 12, 16, 20], :2] - hand[:, :1, :2]) / width[:, None]
    if participant["left_handed"]:
        wrist[:, 0] *= -1
        rel[..., 0] *= -1
    grid = np.linspace(0, len(wrist) - 1, 8)
    track = np.stack([np.interp(grid, np.arange(len(wrist)), wrist[:, k]) for k in range(2)], -1)
    shape = np.concatenate([rel.mean(0).ravel(), np.linalg.norm(rel, axis=-1).mean(0)])
    return np.concatenate([track.ravel(), shape])


def test_signs_are_learnable_across_participants(clips):
    """A linear model on crude features generalises to unseen signers far above chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.stack([_features(c[0], c[3]) for c in clips])
    signs = np.array([c[1] for c in clips])
    participant = np.array([c[2] for c in clips])
    train, test = participant < 4, participant >= 4
    scaler = StandardScaler().fit(features[train])
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(features[train]), signs[train])
    accuracy = model.score(scaler.transform(features[test]), signs[test])
    assert accuracy > 0.6, accuracy  # chance is 0.1


def test_frames_to_table_validates_shape():
    with pytest.raises(ValueError, match=r"\[T, 543, 3\]"):
        synthetic.frames_to_table(np.zeros((2, 542, 3)))
    table = synthetic.frames_to_table(np.zeros((0, 543, 3)))
    assert table.num_rows == 0 and table.schema.equals(REAL_SCHEMA)


def test_cli_writes_a_data_set(tmp_path, capsys):
    synthetic_cli.main(
        ["--out", str(tmp_path / "d"), "--signs", "2", "--participants", "2",
         "--sequences-per-sign", "3", "--seed", "4", "--workers", "1"]
    )
    assert "wrote 6 sequences" in capsys.readouterr().out
    table = kaggle.read_train_csv(tmp_path / "d")
    assert len(table) == 6 and table["label"].nunique() == 2


def test_skeleton_dataset_keeps_ids_signers_and_frame_counts(tmp_path):
    """The full-scale rehearsal's data: the competition's ids, signers and frame counts."""
    skeleton = pd.DataFrame({
        "participant_id": [2044, 2044, 62590, 62590, 37055],
        "sequence_id": [1000035562, 5, 77, 1016834986, 3],
        "fold": [0, 0, 1, 1, 3],
        "n_frames": [1, 2, 23, 537, 7],
    })
    out = synthetic.write_skeleton_dataset(tmp_path / "d", skeleton, num_signs=3, seed=1)
    table = kaggle.read_train_csv(out).merge(skeleton, on=["sequence_id", "participant_id"])
    assert len(table) == len(skeleton) and table["label"].nunique() == 3
    for path, frames in zip(table["path"], table["n_frames"]):
        clip = kaggle.read_landmark_file(kaggle.landmark_path(out, path))
        assert len(clip) == frames, path
    with pytest.raises(ValueError, match="n_frames"):
        synthetic.write_skeleton_dataset(tmp_path / "e", skeleton.drop(columns="n_frames"))
