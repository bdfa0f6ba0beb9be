"""Videos → Kaggle-layout landmark files (tfislr.video) and `tfislr-predict`.

The layout, folder and predict tests run in the main environment. The extraction tests
need the extraction environment (`scripts/extract_env.sh` → .venv-extract, or
$TFISLR_EXTRACT_PYTHON) and skip without it: there is no signing video here, so they turn
a real photograph of a person (scikit-image's astronaut) into short videos.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tfislr.cli import extract as extract_cli
from tfislr.cli import predict as predict_cli
from tfislr.cli import prepare as prepare_cli
from tfislr import landmarks as lm
from tfislr import predict
from tfislr.data.kaggle import read_landmark_file, read_sign_map, read_train_csv
from tfislr.errors import DataError, MissingFileError
from tfislr.video import environment, extract
from tfislr.video.layout import landmark_table, write_landmark_file

TESTS = pathlib.Path(__file__).resolve().parents[1]
FACE = slice(*lm.PART_ROWS["face"])
POSE = slice(*lm.PART_ROWS["pose"])
HANDS = list(lm.HAND_ROWS)
MAX_LEN = 12


# ------------------------------------------------------------------------ layout (main env)
def test_written_file_matches_a_competition_file(real_data_dir, tmp_path):
    """Re-writing a real file's values gives the competition's schema, row ids and nulls."""
    source = sorted((real_data_dir / "train_landmark_files").rglob("*.parquet"))[0]
    real = pq.read_table(source)
    values = real.select(["x", "y", "z"]).to_pandas().to_numpy(np.float64)
    frame_ids = real.column("frame").to_numpy()[:: lm.NUM_RAW_LANDMARKS]
    ours = pq.read_table(write_landmark_file(
        tmp_path / "clip.parquet", values.reshape(-1, lm.NUM_RAW_LANDMARKS, 3), frame_ids))
    assert ours.schema.names == real.schema.names
    for name in real.schema.names:
        assert ours.schema.field(name).type == real.schema.field(name).type, name
        assert ours.column(name).null_count == real.column(name).null_count, name
        assert ours.column(name).to_pylist() == real.column(name).to_pylist(), name
    assert ours.column("row_id")[0].as_py() == f"{frame_ids[0]}-face-0"


def test_layout_round_trip_and_checks(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(3, lm.NUM_RAW_LANDMARKS, 3))
    frames[0, HANDS] = np.nan  # no hand in frame 0
    frames[2, FACE] = np.nan
    path = write_landmark_file(tmp_path / "a" / "clip.parquet", frames, [0, 2, 7])
    read, ids = read_landmark_file(path, return_frame_ids=True)
    np.testing.assert_array_equal(ids, [0, 2, 7])
    np.testing.assert_array_equal(read, frames.astype(np.float32))
    assert not list(path.parent.glob("*.partial"))
    table = landmark_table(frames, [0, 1, 40_000])  # past int16: the ids stay exact
    assert str(table.schema.field("frame").type) == "int32"
    assert table.column("frame")[-1].as_py() == 40_000
    assert landmark_table(np.zeros((0, 543, 3)), []).num_rows == 0
    with pytest.raises(ValueError, match="increasing"):
        landmark_table(frames, [0, 2, 2])
    with pytest.raises(ValueError, match=r"\[T, 543, 3\]"):
        landmark_table(frames[:, :500], [0, 1, 2])


def test_extraction_modules_import_neither_tensorflow_nor_mediapipe():
    """What runs in the extraction env must not need TensorFlow (protobuf clash), and what
    the main env imports must not need mediapipe."""
    code = ("import sys, tfislr.video.extract, tfislr.video.layout, tfislr.video.holistic, "
            "tfislr.video.environment; print(sorted(m for m in ('tensorflow', 'keras', "
            "'mediapipe', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(TESTS.parent)), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- folders, ids, sign map
def test_find_clips_takes_signs_from_folders(tmp_path):
    videos = tmp_path / "videos"
    names = ("hello/a.mp4", "hello/take2/b.MOV", "thanks/c.webm", "loose.mp4", "hello/notes.txt")
    for name in names:
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(b"")
    found = {key: sign for _, key, sign in extract.find_clips([videos])}
    assert found == {"hello/a.mp4": "hello", "hello/take2/b.MOV": "hello",
                     "thanks/c.webm": "thanks", "loose.mp4": None}
    loose = videos / "loose.mp4"
    assert extract.find_clips([loose]) == [(loose, loose.resolve().as_posix(), None)]
    assert {s for _, _, s in extract.find_clips([videos], sign="bye")} == {"bye"}
    with pytest.raises(MissingFileError, match="video file or folder not found"):
        extract.find_clips([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        extract.find_clips([tmp_path / "empty"])


def test_extract_refuses_a_file_that_is_no_video_and_goes_on(monkeypatch, capsys, tmp_path):
    """A file given directly is a video only by a known suffix (tfislr-predict's rule): any
    other is refused in one line naming it, before any extraction (no MediaPipe needed
    here), the other inputs are still extracted, and the exit code is then 2."""
    videos = tmp_path / "videos"
    (videos / "hello").mkdir(parents=True)
    (videos / "hello" / "a.mp4").write_bytes(b"")
    (videos / "hello" / "notes.txt").write_bytes(b"")  # in a folder: passed over, as before
    clip, notes, bare = tmp_path / "clip.MP4", tmp_path / "train.csv", tmp_path / "README"
    for path in (clip, notes, bare):
        path.write_bytes(b"")
    calls = []
    monkeypatch.setattr(extract_cli, "_in_extraction_env", lambda: True)
    monkeypatch.setattr(extract, "extract", lambda inputs, out_dir, **kw: calls.append(inputs) or
                        {"extracted": 0, "already_done": 0, "skipped": [], "frames": 0,
                         "rows": 0, "signs": 0})
    argv = [str(notes), str(videos), str(clip), str(bare), "--out", str(tmp_path / "out")]
    assert extract_cli.main(argv) == 2
    assert calls == [[str(videos), str(clip)]]
    err = capsys.readouterr().err.strip().splitlines()
    suffixes = ", ".join(sorted(extract.VIDEO_SUFFIXES))
    assert err == [
        f"tfislr-extract: error: {notes}: unsupported video type .csv (a video: {suffixes})",
        f"tfislr-extract: error: {bare}: unsupported video type (no suffix) (a video: {suffixes})"]
    # Nothing left to extract: only the refusal, nothing extracted, still exit code 2.
    assert extract_cli.main([str(notes), "--out", str(tmp_path / "out")]) == 2
    assert calls == [[str(videos), str(clip)]]
    assert capsys.readouterr().err.count("\n") == 1
    # Videos and folders alone: exit code 0. The library refuses such a file too.
    assert extract_cli.main([str(videos), str(clip), "--out", str(tmp_path / "out")]) == 0
    with pytest.raises(DataError, match=f"{notes}: unsupported video type .csv"):
        extract.find_clips([videos, notes])


def test_extract_notes_each_clip_without_a_hand(monkeypatch, capfd, tmp_path):
    """A video in which MediaPipe found no hand (or nobody) is extracted (kept, as such clips
    are in the competition's data) with a note naming it, and counted in the summary: the
    model sees nothing of it (tester8 #2). MediaPipe is replaced by fixed landmarks here."""
    from tfislr.video import holistic

    frames = np.full((3, lm.NUM_RAW_LANDMARKS, 3), np.nan)
    found = {"nobody.mp4": frames, "face.mp4": frames.copy(), "hand.mp4": frames.copy()}
    found["face.mp4"][:, :468] = 0.5
    found["hand.mp4"][1, lm.LEFT_HAND_ROWS] = 0.5

    class FixedLandmarks:
        def __init__(self, mirror=False):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __call__(self, path):
            values = found[pathlib.Path(path).name]
            return values, np.arange(len(values))

    monkeypatch.setattr(holistic, "HolisticExtractor", FixedLandmarks)
    videos = tmp_path / "videos" / "hello"
    videos.mkdir(parents=True)
    for name in found:
        (videos / name).write_bytes(b"")
    summary = extract.extract([videos.parent], tmp_path / "out", progress=False)
    assert sorted(pathlib.Path(v).name for v in summary["without_hands"]) == [
        "face.mp4", "nobody.mp4"]
    err = sorted(capfd.readouterr().err.strip().splitlines())  # the notes go to fd 2
    assert err == [
        f"tfislr-extract: note: {(videos / 'face.mp4').resolve()}: no hand in any of its 3 "
        "frames: the model reads only frames with a hand, so it sees nothing of this clip",
        f"tfislr-extract: note: {(videos / 'nobody.mp4').resolve()}: no landmarks in any of its "
        "3 frames (MediaPipe found no person): the model reads only frames with a hand, so it "
        "sees nothing of this clip"]
    assert extract.format_summary(summary, tmp_path / "out").startswith(
        "extracted 3 clips (9 frames; 2 with no hand in any frame), 0 already done")


def test_sequence_ids_are_stable_per_participant_and_clip():
    first = extract.sequence_id(0, "hello/a.mp4")
    assert first == extract.sequence_id(0, "hello/a.mp4") and 0 < first < 2**48
    others = {extract.sequence_id(1, "hello/a.mp4"), extract.sequence_id(0, "hello/b.mp4")}
    assert len({first} | others) == 3


def test_two_videos_never_share_a_landmark_file(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder / "hello").mkdir(parents=True)
        (tmp_path / folder / "hello" / "1.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="would both be clip"):
        extract.extract([tmp_path / "a", tmp_path / "b"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train.csv").exists()


def test_sign_map_keeps_existing_labels(tmp_path):
    (tmp_path / extract.SIGN_MAP_JSON).write_text(json.dumps({"TV": 0, "after": 1}))
    merged = extract.merge_sign_map(tmp_path, ["zoo", "after", "bye"])
    assert merged == {"TV": 0, "after": 1, "bye": 2, "zoo": 3}
    assert read_sign_map(tmp_path) == merged


def test_extract_without_the_environment_is_a_user_error(monkeypatch, capsys, tmp_path):
    if importlib.util.find_spec("mediapipe") is not None:
        pytest.skip("this environment has mediapipe: extract runs here")
    monkeypatch.setenv(environment.ENV_VAR, str(tmp_path / "no-python"))
    assert extract_cli.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"tfislr-extract: error: {tmp_path / 'no-python'}: interpreter not found "
                     f"(set by {environment.ENV_VAR})"]


# ------------------------------------------------------------------ predict on parquet
@pytest.fixture(scope="module")
def exported(synthetic_export):
    """(.tflite path, signs) of the session's tiny untrained export on the synthetic signs."""
    _, path, signs = synthetic_export
    return path, signs


def _check_top_k(result, signs, k):
    probabilities = [p["probability"] for p in result["top_k"]]
    assert len(probabilities) == k and np.all(np.isfinite(probabilities))
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-5
    assert all(signs[p["label"]] == p["sign"] for p in result["top_k"])


def test_predict_parquet_clips(exported, synthetic_data_dir, capsys, tmp_path, monkeypatch):
    model, signs = exported
    table = read_train_csv(synthetic_data_dir)
    clips = [str(synthetic_data_dir / p) for p in table["path"][:2]]
    assert predict_cli.main([str(model), *clips, "--top-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["clip"] for r in results] == clips
    for result in results:
        _check_top_k(result, signs, 3)
    # The same numbers as evaluate's runner on the same file.
    from tfislr.export import TFLiteRunner

    direct = TFLiteRunner(model)(read_landmark_file(clips[0]))
    assert results[0]["top_k"][0]["probability"] == pytest.approx(float(direct.max()), abs=1e-6)

    # A missing clip: one error line and exit code 2; the good clip is still predicted.
    assert predict_cli.main([str(model), clips[0], str(tmp_path / "nope.parquet")]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(clips[0]) and "frames)" in captured.out
    assert captured.err.strip().splitlines() == [
        f"tfislr-predict: error: {tmp_path / 'nope.parquet'}: file not found"]
    # A folder and a file that is no clip (never sent to the extraction environment, which
    # does not exist here): one line each, the good clip still predicted.
    monkeypatch.setenv("TFISLR_EXTRACT_PYTHON", str(tmp_path / "no-such-python"))
    csv = tmp_path / "clip.csv"
    csv.write_text("a,b\n")
    assert predict_cli.main([str(model), str(tmp_path), clips[0], str(csv)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(clips[0])
    errors = captured.err.strip().splitlines()
    assert errors[0] == f"tfislr-predict: error: {tmp_path}: is a folder; pass .parquet files or videos"
    assert errors[1].startswith(f"tfislr-predict: error: {csv}: unsupported clip type .csv "
                                "(landmark .parquet, or a video: ")
    assert len(errors) == 2
    # Without a report next to the model (or one without names) labels are numbers, and a
    # note on stderr says why and what to pass; --signs silences it.
    alone = tmp_path / "alone" / "model.tflite"
    alone.parent.mkdir()
    shutil.copy(model, alone)
    assert predict_cli.main([str(alone), clips[0], "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["top_k"][0]["sign"].isdigit()
    assert captured.err.strip() == (
        f"tfislr-predict: note: no report {alone.with_suffix('.json')} next to the model: "
        "labels are numbers; pass --signs (a sign map sign_to_prediction_index_map.json, or "
        "a data dir with one) for sign names")
    nameless = {k: v for k, v in json.loads(model.with_suffix(".json").read_text()).items()
                if k != "signs"}
    alone.with_suffix(".json").write_text(json.dumps(nameless))
    assert predict_cli.main([str(alone), clips[0]]) == 0
    assert f"note: {alone.with_suffix('.json')} lists no sign names: labels are numbers" \
        in capsys.readouterr().err
    assert predict_cli.main([str(alone), clips[0], "--signs", str(synthetic_data_dir)]) == 0
    assert capsys.readouterr().err == ""
    # Sign names from a run's signs.json list; a wrong count is a user error.
    (tmp_path / "signs.json").write_text(json.dumps(signs[:-1]))
    assert predict_cli.main([str(alone), clips[0], "--signs", str(tmp_path / "signs.json")]) == 2
    assert "lists 5 signs" in capsys.readouterr().err
    # A model whose report names its signs takes only that list (evaluate's rule too).
    assert predict_cli.main([str(model), clips[0], "--signs", str(tmp_path / "signs.json")]) == 2
    assert "does not match the signs" in capsys.readouterr().err
    # A sign map under any name goes through the Kaggle sign map's own checks.
    sign_map = tmp_path / "my_map.json"
    sign_map.write_text(json.dumps({name: label for label, name in enumerate(signs)}))
    assert predict_cli.main([str(model), clips[0], "--signs", str(sign_map), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top_k"][0]["sign"] in signs
    sign_map.write_text(json.dumps({name: label + 1 for label, name in enumerate(signs)}))
    assert predict_cli.main([str(model), clips[0], "--signs", str(sign_map)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfislr-predict: error: {sign_map}: labels must be 0..{len(signs) - 1}, each used once")
    # A missing or unreadable --signs file: the same reader's one line naming the file.
    assert predict_cli.main([str(model), clips[0], "--signs", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfislr-predict: error: {tmp_path / 'nope.json'}: file not found")
    sign_map.write_text("{not json")
    assert predict_cli.main([str(model), clips[0], "--signs", str(sign_map)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"tfislr-predict: error: {sign_map}: not valid JSON (")
    assert len(error.splitlines()) == 1


def test_predict_flags_clips_without_a_hand(exported, synthetic_data_dir, capsys, tmp_path):
    """A clip with no hand in any frame (tester8 #2: a video of nobody, or of a face only)
    reaches the model as one all-zero frame: its top k is shown but flagged, in the table,
    in a stderr note per clip and in --json; a clip with a hand is not flagged."""
    model, signs = exported
    clip = str(synthetic_data_dir / read_train_csv(synthetic_data_dir)["path"][0])
    frames = read_landmark_file(clip)
    no_hand = frames.copy()
    no_hand[:, list(lm.HAND_ROWS)] = np.nan
    no_hand[0, lm.HAND_ROWS[0], 1:] = 0.5  # a y and z without an x: not a usable hand
    one_hand_frame = no_hand.copy()
    one_hand_frame[-1, lm.RIGHT_HAND_ROWS] = frames[len(frames) // 2, lm.RIGHT_HAND_ROWS]
    paths = {}
    for name, values in (("nobody", np.full_like(frames, np.nan)), ("face_only", no_hand),
                         ("one_hand_frame", one_hand_frame)):
        paths[name] = str(write_landmark_file(tmp_path / f"{name}.parquet", values,
                                              np.arange(len(frames))))
    n = len(frames)
    argv = [str(model), clip, paths["nobody"], paths["face_only"], paths["one_hand_frame"]]
    assert predict_cli.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    results = {r["clip"]: r for r in json.loads(captured.out)}
    nobody = f"no landmarks in any of its {n} frames (MediaPipe found no person): the " \
             "prediction carries no information"
    face_only = f"no hand in any of its {n} frames: the prediction carries no information"
    assert [(r["frames_with_landmarks"], r["frames_with_hands"], r["no_information"], r["note"])
            for r in results.values()] == [
        (n, int(np.isfinite(frames[:, list(lm.HAND_ROWS), 0]).any(axis=1).sum()), False, None),
        (0, 0, True, nobody), (n, 0, True, face_only), (n, 1, False, None)]
    for result in results.values():
        _check_top_k(result, signs, 5)  # still predicted
    assert captured.err.strip().splitlines() == [
        f"tfislr-predict: note: {paths['nobody']}: {nobody}",
        f"tfislr-predict: note: {paths['face_only']}: {face_only}"]
    assert predict_cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [f"({n} frames, no hand: no information)" in line for line in lines] == [
        False, True, True, False]


def test_predict_says_once_when_top_k_is_above_the_model_signs(exported, synthetic_data_dir,
                                                                 capsys):
    """A --top-k above the model's sign count shows every sign, and one stderr line says so
    (however many clips); a --top-k within it prints no note."""
    model, signs = exported
    table = read_train_csv(synthetic_data_dir)
    clips = [str(synthetic_data_dir / p) for p in table["path"][:2]]
    asked = len(signs) + 4
    assert predict_cli.main([str(model), *clips, "--top-k", str(asked), "--json"]) == 0
    captured = capsys.readouterr()
    for result in json.loads(captured.out):
        _check_top_k(result, signs, len(signs))
    assert captured.err.strip().splitlines() == [
        f"tfislr-predict: note: asked --top-k {asked}, the model has {len(signs)} signs: "
        f"showing {len(signs)}"]
    assert predict_cli.main([str(model), clips[0], "--top-k", str(len(signs))]) == 0
    assert capsys.readouterr().err == ""


def test_predict_without_extraction_environment_refuses_only_the_videos(
        exported, synthetic_data_dir, capsys, tmp_path, monkeypatch):
    """No extraction environment: each video is refused in one line naming why, the landmark
    clips are still predicted, and the exit code is 2 as for any refused clip."""
    model, _ = exported
    clip = str(synthetic_data_dir / read_train_csv(synthetic_data_dir)["path"][0])
    missing = tmp_path / "no-such-python"
    monkeypatch.setenv(environment.ENV_VAR, str(missing))
    videos = [tmp_path / "fake.mp4", tmp_path / "other.mov"]
    for video in videos:
        video.write_bytes(b"not really a video")
    assert predict_cli.main([str(model), str(videos[0]), clip, str(videos[1])]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(clip) and len(captured.out.strip().splitlines()) == 1
    reason = f"{missing}: interpreter not found (set by {environment.ENV_VAR})"
    assert captured.err.strip().splitlines() == [
        f"tfislr-predict: error: {video}: not predicted: {reason}" for video in videos]


def test_predict_hashes_the_model_once(exported, synthetic_data_dir, capsys, monkeypatch,
                                      tmp_path):
    """Without --signs the export report is read, and the .tflite hashed against it, once:
    for the sign names and for the numbered-labels note alike."""
    from tfislr.export import pair

    model, signs = exported
    clip = str(synthetic_data_dir / read_train_csv(synthetic_data_dir)["path"][0])
    hashed = []
    sha256_of = pair.sha256_of
    monkeypatch.setattr(pair, "sha256_of", lambda path: hashed.append(path) or sha256_of(path))
    assert predict_cli.main([str(model), clip, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top_k"][0]["sign"] in signs
    assert hashed == [model]
    # A report without names: hashed once, and the note still says why labels are numbers.
    nameless = tmp_path / "model.tflite"
    shutil.copy(model, nameless)
    report = json.loads(model.with_suffix(".json").read_text())
    del report["signs"]
    nameless.with_suffix(".json").write_text(json.dumps(report))
    hashed.clear()
    assert predict_cli.main([str(nameless), clip]) == 0
    assert "lists no sign names: labels are numbers" in capsys.readouterr().err
    assert hashed == [nameless]


# --------------------------------------------------- extraction environment (skips without)
@pytest.fixture(scope="module")
def extraction_python():
    try:
        return environment.extraction_python()
    except MissingFileError as error:
        pytest.skip(str(error))


def make_video(python, path, frames=4, mirror=False):
    """A short video of the astronaut photograph, written by the extraction env's OpenCV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), str(TESTS / "make_video.py"), str(path), "--frames", str(frames)],
                   check=True, timeout=300)
    return path


@pytest.fixture(scope="module")
def extracted(extraction_python, tmp_path_factory):
    """`videos/hello/a.mp4` (4 frames), `videos/thanks/b.mp4` (3), a broken `hello/bad.mp4`,
    extracted through `tfislr-extract` started from this (main) environment."""
    root = tmp_path_factory.mktemp("video")
    videos = root / "videos"
    make_video(extraction_python, videos / "hello" / "a.mp4", frames=4)
    make_video(extraction_python, videos / "thanks" / "b.mp4", frames=3)
    (videos / "hello" / "bad.mp4").write_bytes(b"not a video")
    out = root / "data"
    result = run_extract_cli(videos, "--out", out, "--participant-id", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    return videos, out, result


def run_extract_cli(*args):
    """`tfislr-extract ARGS` started from the main environment (it hands over to the
    extraction env), as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    return subprocess.run([sys.executable, "-m", "tfislr.video.extract", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=600)


def test_astronaut_video_gives_face_and_pose_and_no_hands(extracted):
    videos, out, result = extracted
    table = read_train_csv(out)
    assert read_sign_map(out) == {"hello": 0, "thanks": 1}
    assert sorted(table["sign"]) == ["hello", "thanks"]
    assert set(table["participant_id"]) == {5}
    skipped = pd.read_csv(out / extract.SKIPPED_CSV)
    assert skipped["video"].tolist() == [str((videos / "hello" / "bad.mp4").resolve())]
    assert "cannot be opened as a video" in skipped["reason"][0]
    assert "skipped" in result.stderr
    assert "extracted 2 clips (7 frames; 2 with no hand in any frame)" in result.stdout
    assert (f"tfislr-extract: note: {(videos / 'hello' / 'a.mp4').resolve()}: no hand in any of "
            "its 4 frames: the model reads only frames with a hand") in result.stderr
    assert "W0000" not in result.stderr  # MediaPipe's own log went to extract.log

    row = table[table["sign"] == "hello"].iloc[0]
    frames, ids = read_landmark_file(out / row["path"], return_frame_ids=True)
    np.testing.assert_array_equal(ids, [0, 1, 2, 3])
    assert np.isfinite(frames[:, FACE]).all() and np.isfinite(frames[:, POSE]).all()
    assert np.isnan(frames[:, HANDS]).all()  # the hands are outside the photograph
    face_xy = frames[:, FACE, :2]
    assert (face_xy > 0).all() and (face_xy < 1).all()  # image-normalized coordinates
    nose = frames[:, POSE.start + 0, :2]
    assert (nose > face_xy.min(axis=1)).all() and (nose < face_xy.max(axis=1)).all()
    # The picture moves 2 px right and 1 px down a frame (of 256): so do the landmarks.
    shift = face_xy.mean(axis=1)[-1] - face_xy.mean(axis=1)[0]
    np.testing.assert_allclose(shift, [6 / 256, 3 / 256], atol=0.01)
    # Sides as on a person facing the camera: pose 11 ("left shoulder") on the picture's
    # right, as in the competition's data (left_hand right of right_hand; see holistic.py).
    assert (frames[:, POSE.start + 11, 0] > frames[:, POSE.start + 12, 0]).all()


def test_extraction_is_resumable_and_mirror_swaps_sides(extracted, extraction_python, tmp_path):
    videos, out, _ = extracted
    files = sorted((out / "train_landmark_files").rglob("*.parquet"))
    before = {f: f.stat().st_mtime_ns for f in files}
    again = run_extract_cli(videos, "--out", out, "--participant-id", "5", "--quiet")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "extracted 0 clips (0 frames), 2 already done, 1 skipped" in again.stdout
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert len(read_train_csv(out)) == 2

    mirrored = run_extract_cli(videos / "hello" / "a.mp4", "--out", tmp_path, "--mirror", "--quiet")
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    assert not (tmp_path / "train.csv").exists()  # a file on its own has no sign
    manifest = pd.read_csv(tmp_path / extract.EXTRACTED_CSV)
    flipped = read_landmark_file(tmp_path / manifest["path"][0])
    table = read_train_csv(out)
    plain = read_landmark_file(out / table[table["sign"] == "hello"]["path"].iloc[0])
    # Holistic names sides as they look on a person facing the camera, so a flipped
    # picture mirrors x and swaps the names: the "left shoulder" is the other shoulder.
    np.testing.assert_allclose(flipped[:, POSE.start + 11, 0], 1 - plain[:, POSE.start + 12, 0],
                               atol=0.03)
    np.testing.assert_allclose(flipped[:, FACE, 0].mean(1), 1 - plain[:, FACE, 0].mean(1),
                               atol=0.01)


def test_predict_on_a_video(extracted, exported, capsys, tmp_path):
    videos, _, _ = extracted
    model, signs = exported
    video = videos / "hello" / "a.mp4"
    keep = tmp_path / "landmarks"
    assert predict_cli.main([str(model), str(video), "--json", "--landmarks-dir", str(keep)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["clip"] == str(video) and result["frames"] == 4
    _check_top_k(result, signs, 5)
    assert len(list(keep.rglob("*.parquet"))) == 1  # kept, so the next run reuses it
    # A broken video among good clips: reported on its own line, exit code 2.
    # Two videos with the same file name are two clips.
    other = tmp_path / "a.mp4"
    shutil.copy(videos / "thanks" / "b.mp4", other)
    assert predict_cli.main([str(model), str(video), str(other), "--json"]) == 0
    assert [r["frames"] for r in json.loads(capsys.readouterr().out)] == [4, 3]
    assert predict_cli.main([str(model), str(video), str(videos / "hello" / "bad.mp4")]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(str(video))
    assert captured.err.strip().splitlines()[-1].startswith(
        f"tfislr-predict: error: {(videos / 'hello' / 'bad.mp4').resolve()}: cannot be opened")


@pytest.mark.extra_large
def test_videos_to_prediction_end_to_end(extraction_python, synthetic_data_dir, tmp_path, capsys):
    """videos → parquet → prepare → train → export → predict, with the commands a user runs.

    Training data: the synthetic set (landmark data of several signers) with the extracted
    astronaut clips merged in under two of its signs, as a user adds recordings to a set.
    """
    from tfislr.cli import export as export_cli
    from tfislr.cli import train as train_cli
    from tfislr.data import prepare

    data = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, data, ignore=shutil.ignore_patterns("prepared"))
    signs = sorted(read_sign_map(data), key=read_sign_map(data).get)
    videos = tmp_path / "videos"
    for sign in signs[:2]:
        make_video(extraction_python, videos / sign / "take1.mp4", frames=4)
    result = run_extract_cli(videos, "--out", data, "--participant-id", "900", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    table = read_train_csv(data)
    assert (table["participant_id"] == 900).sum() == 2 and len(set(table["sign"])) == len(signs)

    assert prepare_cli.main(["--data-dir", str(data), "--max-len", str(MAX_LEN), "--workers", "1",
                         "--quiet"]) == 0
    assert f"prepared {len(table)} of {len(table)}" in capsys.readouterr().out
    tiny = ["data.global_batch_size=8", "train.batch_group_size=8", "model.dense_dim=16",
            "model.transfo_dim=32",
            "model.distill_dense_dim=16", "model.distill_transfo_dim=32", "model.num_heads=4",
            "train.soup_last_n=1", f"data.max_len={MAX_LEN}"]
    runs = tmp_path / "runs"
    argv = ["--config", "demo", "--data-dir", str(data), "--full", "--epochs", "1",
            "--output", str(runs), "--verbose", "0"]
    assert train_cli.main(argv + [item for s in tiny for item in ("--set", s)]) == 0
    (run_dir,) = (runs / "demo").iterdir()
    model = tmp_path / "mine.tflite"
    assert export_cli.main(["single", "--run", str(run_dir), "--output", str(model)]) == 0
    capsys.readouterr()
    assert predict_cli.main([str(model), str(videos / signs[0] / "take1.mp4"), "--json",
                         "--top-k", "3"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    _check_top_k(prediction, signs, 3)


def test_extract_help_needs_no_environment(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(environment.ENV_VAR, str(tmp_path / "no-python"))
    with pytest.raises(SystemExit) as exit_info:
        extract_cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage: tfislr-extract" in capsys.readouterr().out
