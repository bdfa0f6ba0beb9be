"""The stream path without video: segmentation, recognition, the baseline, scoring, sources.

The fast tests use hand-made frames (one wrist moving in front of a fixed pose) and
classifiers that read the sign off the frames, so what they check is the cutting and the
bookkeeping; `test_well_separated_signs_are_recognized_in_order` (slow, ci) runs a model
trained on the synthetic signs' isolated clips.
"""

import dataclasses
import json
import pathlib
import stat

import numpy as np
import pytest

from tfislr import landmarks as lm
from tfislr.data import synthetic_stream
from tfislr.data.kaggle import LandmarkFileError, read_landmark_file
from tfislr.data.synthetic import write_landmark_file
from tfislr.stream import report, scoring
from tfislr.stream.recognizer import StreamRecognizer, refine_window
from tfislr.stream.segmentation import (SHOULDER_ROWS, WRIST_ROWS, SegmentationParams,
                                        Segmenter)
from tfislr.stream.sources import VideoSource, parquet_frames
from tfislr.stream.windows import SlidingWindowRecognizer
from tfislr.video import live

RIGHT_HAND = slice(*lm.PART_ROWS["right_hand"])
SHOULDER_Y, SHOULDER_WIDTH = 0.7, 0.4
MARKER_ROW = 0  # face row 0's z carries the sign of a hand-made frame (the segmenter ignores it)
# The hand-made streams' settings (the defaults are chosen from data and may move).
PARAMS = SegmentationParams(speed_window=3, pause_speed=0.012, pause_frames=4,
                            min_motion_frames=8, gap_frames=4, min_frames=4, max_frames=96)


def frame(wrist=None, marker=np.nan):
    """A raw frame: shoulders at y 0.7 (0.4 apart), the right hand with its wrist at
    `wrist` (x, y) or absent, and `marker` in face row 0's z."""
    values = np.full((lm.NUM_RAW_LANDMARKS, 3), np.nan, np.float32)
    values[SHOULDER_ROWS[0]] = (0.7, SHOULDER_Y, 0.0)
    values[SHOULDER_ROWS[1]] = (0.3, SHOULDER_Y, 0.0)
    if wrist is not None:
        values[RIGHT_HAND, :2] = wrist
        values[RIGHT_HAND, 2] = 0.0
    values[MARKER_ROW, 2] = marker
    return values


def moving(n, marker=np.nan, start=(0.4, 0.5), speed=0.02):
    """`n` frames of the wrist moving right at `speed` image units a frame (0.05 shoulder
    widths, well above the default pause speed)."""
    return [frame((start[0] + speed * k, start[1]), marker) for k in range(n)]


def still(n, at=(0.5, 0.5), marker=np.nan):
    return [frame(at, marker) for _ in range(n)]


def idle(n):
    return [frame() for _ in range(n)]


def segments_of(frames, params=PARAMS):
    segmenter = Segmenter(params)
    found = [s for f in frames for s in segmenter.push(f)]
    return found + segmenter.flush()


def marker_classifier(num_classes):
    """Probabilities from the frames' markers: 0.9 on the most common one; without a marker
    (no sign in the clip), the same for every sign."""
    def classify(frames):
        markers = frames[:, MARKER_ROW, 2]
        markers = markers[np.isfinite(markers)].astype(int)
        if not len(markers):
            return np.full(num_classes, 1.0 / num_classes, np.float32)
        probabilities = np.full(num_classes, 0.1 / (num_classes - 1), np.float32)
        probabilities[np.bincount(markers, minlength=num_classes).argmax()] = 0.9
        return probabilities
    return classify


# ----------------------------------------------------------------------------- segmentation
def test_hands_entering_and_leaving_make_segments():
    stream = idle(10) + moving(20) + idle(10) + moving(15) + idle(3)
    found = segments_of(stream)
    assert [(s.start, s.end, s.reason) for s in found] == [(10, 29, "rest"), (40, 54, "end")]
    assert [len(s.frames) for s in found] == [20, 15]
    np.testing.assert_array_equal(found[0].frames, np.stack(stream[10:30]))
    # A dropout shorter than gap_frames does not split a sign.
    assert len(segments_of(moving(10) + idle(3) + moving(10, start=(0.6, 0.5)))) == 1


def test_a_pause_ends_a_sign_and_a_short_move_is_the_next_ones_lead_in():
    params = PARAMS
    first = moving(15)
    stream = (idle(5) + first + still(8, first[-1][WRIST_ROWS[1], :2]) + moving(5, start=(0.7, 0.5))
              + still(6, (0.8, 0.5)) + moving(15, start=(0.8, 0.45), speed=-0.02) + idle(5))
    found = segments_of(stream, params)
    assert [s.reason for s in found] == ["pause", "rest"]
    # The first ends where the hand stopped (within the speed window), the second starts with
    # the 5-frame move before its hold (shorter than min_motion_frames: a lead-in).
    assert 5 + 15 - 1 <= found[0].end <= 5 + 15 - 1 + params.speed_window
    assert found[1].start <= 5 + 15 + 8 and found[1].end == len(stream) - 6


def test_a_hand_below_the_signing_space_rests():
    low = SHOULDER_Y + 1.5 * SHOULDER_WIDTH  # below the default 1.2 shoulder widths
    stream = moving(12) + moving(10, start=(0.4, low)) + moving(12, start=(0.6, 0.5))
    found = segments_of(stream)
    assert [(s.start, s.end) for s in found] == [(0, 11), (22, 33)]
    assert len(segments_of(stream, dataclasses.replace(PARAMS, signing_space=2.0))) == 1


def test_max_frames_cuts_and_flickers_are_dropped():
    params = dataclasses.replace(PARAMS, max_frames=40)
    found = segments_of(moving(100, speed=0.003) + idle(5) + moving(3) + idle(10), params)
    assert [(s.start, s.end, s.reason) for s in found] == [
        (0, 39, "max_frames"), (40, 79, "max_frames"), (80, 99, "rest")]
    with pytest.raises(ValueError, match="min_frames"):
        SegmentationParams(min_frames=50, max_frames=40)
    with pytest.raises(ValueError, match=r"shape \[543, 3\]"):
        Segmenter().push(np.zeros((543, 2)))


def test_memory_stays_bounded_on_a_long_stream():
    """A stream of any length: the segmenter holds at most max_frames + speed_window frames,
    and the classifier never sees more than max_frames, however long the signing goes on."""
    params = dataclasses.replace(PARAMS, max_frames=48)
    pattern = idle(7) + moving(30) + still(9, (1.0, 0.5)) + moving(80, speed=0.004)

    def frames(n):  # a generator: the stream never exists as a whole
        for k in range(n):
            yield pattern[k % len(pattern)]

    lengths = []

    def classify(clip):
        lengths.append(len(clip))
        return np.array([0.5, 0.5], np.float32)

    recognizer = StreamRecognizer(classify, ["a", "b"], params)
    most = 0
    for f in frames(20_000):
        recognizer.push(f)
        most = max(most, recognizer.segmenter.buffered_frames)
    recognizer.flush()
    assert most <= params.max_frames + params.speed_window
    assert len(lengths) > 200 and max(lengths) <= params.max_frames


# ------------------------------------------------------------------------------ recognizer
def test_recognizer_emits_top_k_in_order_with_times_and_confidence():
    stream = (idle(4) + moving(12, marker=2) + idle(8) + moving(12, marker=0) + idle(8)
              + moving(12, marker=1))
    names = ["alpha", "beta", "gamma"]
    recognizer = StreamRecognizer(marker_classifier(3), names, PARAMS, top_k=2, fps=10.0)
    signs = list(recognizer.run(stream))
    assert [s.sign for s in signs] == ["gamma", "alpha", "beta"]
    assert [(s.start_frame, s.end_frame) for s in signs] == [(4, 15), (24, 35), (44, 55)]
    assert signs[0].start_seconds == pytest.approx(0.4) and signs[0].end_seconds == pytest.approx(1.5)
    assert [p["sign"] for p in signs[0].top_k] == ["gamma", "alpha"]  # ties in label order
    assert signs[0].top_k[0]["probability"] == pytest.approx(0.9)
    # Its line comes when no later segment can be the same sign: the next one's answer
    # (it opened within merge_gap frames), or, without merging, the rest gap_frames later.
    assert signs[0].emitted_at == 36 + PARAMS.gap_frames
    unmerged = StreamRecognizer(marker_classifier(3), names, PARAMS, merge_gap=0)
    assert list(unmerged.run(stream))[0].emitted_at == 16 + PARAMS.gap_frames
    # Times given with the frames are used as they are.
    timed = StreamRecognizer(marker_classifier(3), names, PARAMS)
    signs = list(timed.run((f, 100.0 + k) for k, f in enumerate(stream)))
    assert signs[0].start_seconds == 104.0 and signs[-1].end_seconds == 155.0
    # min_confidence: nothing reaches 0.95, so nothing is emitted, and it is counted.
    strict = StreamRecognizer(marker_classifier(3), names, PARAMS, min_confidence=0.95)
    assert list(strict.run(stream)) == [] and strict.dropped == 3 == strict.segments


def test_segments_of_one_sign_close_together_are_merged():
    """A sign cut in two by a dropout longer than gap_frames is one line; the same sign
    again after a longer rest is another."""
    params = PARAMS
    stream = (moving(12, marker=1) + idle(params.gap_frames + 2) + moving(12, marker=1)
              + idle(20) + moving(12, marker=1) + idle(5))
    merged = list(StreamRecognizer(marker_classifier(2), ["a", "b"], PARAMS, merge_gap=10).run(stream))
    assert [(s.start_frame, s.end_frame, s.sign) for s in merged] == [(0, 29, "b"), (50, 61, "b")]
    assert len(list(StreamRecognizer(marker_classifier(2), ["a", "b"], PARAMS, merge_gap=0).run(stream))) == 3


def test_refinement_keeps_the_most_confident_window():
    """A segment whose first quarter belongs to another sign reads best without it."""
    clip = np.stack(moving(8, marker=1) + moving(24, marker=0))

    def classify(frames):
        share = np.mean(frames[:, MARKER_ROW, 2] == 0)
        return np.array([share, 1 - share], np.float32)

    first, last, probabilities = refine_window(classify, clip)
    assert (first, last) == (8, 31) and probabilities[0] == 1.0
    recognizer = StreamRecognizer(classify, ["a", "b"], PARAMS, refine=True)
    signs = list(recognizer.run(idle(3) + list(clip) + idle(6)))
    assert [(s.start_frame, s.end_frame, s.sign) for s in signs] == [(11, 34, "a")]


def test_sliding_window_baseline_merges_equal_windows():
    stream = idle(8) + moving(40, marker=1) + idle(16) + moving(40, marker=0) + idle(16)
    baseline = SlidingWindowRecognizer(marker_classifier(2), ["a", "b"], window=16, stride=8)
    signs = list(baseline.run(stream))
    assert [s.sign for s in signs] == ["b", "a"]
    assert signs[0].start_frame == 0 and signs[0].end_frame >= 47
    assert max(len(baseline._frames), 0) <= 16


# --------------------------------------------------------------------------------- scoring
def test_word_error_rate_and_boundaries():
    truth = [("a", 10, 20), ("b", 30, 40), ("c", 50, 60)]
    assert scoring.align(list("abc"), list("abc")) == (0, 0, 0, [(0, 0), (1, 1), (2, 2)])
    assert scoring.align(list("abc"), list("axc"))[:3] == (1, 0, 0)
    assert scoring.align(list("abc"), list("ac"))[:3] == (0, 1, 0)
    assert scoring.align(list("abc"), list("abbc"))[:3] == (0, 0, 1)
    assert scoring.align([], list("ab"))[:3] == (0, 0, 2)
    recognized = [("a", 12, 19), ("x", 28, 41), ("c", 50, 64), ("d", 70, 80)]
    scores = scoring.score_streams([(truth, recognized), (truth, truth)])
    assert scores["wer"] == pytest.approx(2 / 6)  # one substitution, one insertion
    assert (scores["substitutions"], scores["insertions"], scores["deletions"]) == (1, 1, 0)
    assert scores["matched"] == 5
    assert scores["start_error_frames"] == pytest.approx(2 / 5)
    assert scores["end_error_frames"] == pytest.approx(5 / 5)


# -------------------------------------------------------------------- synthetic streams
def test_synthetic_stream_timeline_matches_its_frames():
    frames, timeline = synthetic_stream.generate_stream(0, 20, [3, 1, 3], 0, rest_probability=1.0)
    hands = np.isfinite(frames[:, list(lm.HAND_ROWS), 0]).any(axis=1)
    assert [s for s, _, _ in timeline] == [3, 1, 3]
    starts = [start for _, start, _ in timeline]
    assert starts == sorted(starts) and timeline[-1][2] < len(frames)
    assert not hands[:5].any() and not hands[-5:].any()  # idle, hands down, at both ends
    for (_, _, end), (_, start, _) in zip(timeline, timeline[1:]):
        assert not hands[end + 1:start].all()  # rest_probability 1: the hands go down between
    again, _ = synthetic_stream.generate_stream(0, 20, [3, 1, 3], 0, rest_probability=1.0)
    np.testing.assert_array_equal(frames, again)
    with pytest.raises(ValueError, match="consecutive"):
        synthetic_stream.generate_stream(0, 20, [1, 1], 0)


def test_segmentation_finds_the_signs_of_a_well_separated_synthetic_stream():
    """Real-looking motion (the synthetic generator), hands down between signs: every true
    sign gets its own segment, in order, so a classifier that knows the sign of each frame
    recovers the sequence. The frames carry their true sign in face row 0's z; a segment
    without a sign frame (a hand rising or falling) gets no confident answer, and
    min_confidence drops it. (Signs 0, 7 and 9 of seed 0 are made mostly below the
    picture, where no hand is seen.)"""
    sequence = [4, 10, 6, 1, 8, 5, 11]
    frames, timeline = synthetic_stream.generate_stream(0, 30, sequence, 1, rest_probability=1.0)
    frames = frames.astype(np.float32)
    frames[:, MARKER_ROW, 2] = np.nan
    for sign, start, end in timeline:
        frames[start:end + 1, MARKER_ROW, 2] = sign
    recognizer = StreamRecognizer(marker_classifier(12), [str(i) for i in range(12)],
                                  min_confidence=0.5)
    signs = list(recognizer.run(frames))
    assert [int(s.sign) for s in signs] == sequence
    for sign, (_, start, end) in zip(signs, timeline):
        assert abs(sign.start_frame - start) <= 12 and abs(sign.end_frame - end) <= 12


# ---------------------------------------------------------------------------------- sources
def test_parquet_frames_reads_batches_as_the_whole_file(tmp_path):
    """Batches of 7 frames from row groups of 1,000 rows: most batches end inside a frame,
    whose rows wait for the next batch."""
    import pyarrow.parquet as pq

    from tfislr.data.synthetic import frames_to_table

    frames, _ = synthetic_stream.generate_stream(0, 11, [0, 1], 0)
    path = tmp_path / "stream.parquet"
    pq.write_table(frames_to_table(frames, first_frame=7), path, row_group_size=1000)
    assert pq.ParquetFile(path).metadata.num_row_groups > len(frames) // 2
    whole = read_landmark_file(path)
    read = np.stack([f for f, _ in parquet_frames(path, batch_frames=7)])
    assert len(read) == len(frames)
    np.testing.assert_array_equal(read, whole)
    with pytest.raises(LandmarkFileError, match="file not found"):
        next(parquet_frames(tmp_path / "nope.parquet"))


def test_live_protocol_round_trip():
    import io

    values = np.random.default_rng(0).normal(size=(2, 543, 3)).astype(np.float32)
    values[1, :10] = np.nan
    data = (live.MAGIC + live.HEADER.pack(25.0) + live.encode_frame(0, 0.0, values[0])
            + live.encode_frame(1, 0.04, values[1]))
    stream = io.BytesIO(data + b"\x00" * 100)  # a record cut short ends the stream
    assert live.read_header(stream) == 25.0
    read = list(live.read_frames(stream))
    assert [(n, s) for n, s, _ in read] == [(0, 0.0), (1, 0.04)]
    np.testing.assert_array_equal(np.stack([f for _, _, f in read]), values)
    assert live.camera_index("0") == 0 and live.camera_index("clip.mp4") is None


@pytest.fixture
def fake_extraction(tmp_path, monkeypatch):
    """An 'extraction environment' whose python prints a canned frame stream: 3 frames,
    then the given word on stderr and exit code. Returns a function setting them."""
    stream = tmp_path / "stream.bin"
    script = tmp_path / "python"

    def make(frames=3, said="", code=0):
        data = live.MAGIC + live.HEADER.pack(30.0)
        for k in range(frames):
            data += live.encode_frame(k, k / 30, frame((0.5, 0.5)))
        stream.write_bytes(data)
        script.write_text(f"#!/bin/sh\ncat {stream}\necho '{said}' >&2\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("TFISLR_EXTRACT_PYTHON", str(script))

    return make


def test_video_source_reports_how_the_stream_ended(fake_extraction):
    fake_extraction(said="tfislr-live: camera 0 stopped delivering frames after 3 frames")
    source = VideoSource(0)
    frames = list(source)
    assert len(frames) == 3 and frames[2][1] == pytest.approx(2 / 30)
    assert source.note.startswith("camera 0 stopped") and source.error is None
    fake_extraction(frames=0, said="tfislr-live: error: clip.mp4: cannot be opened", code=2)
    source = VideoSource("clip.mp4")
    assert list(source) == [] and str(source.error) == "clip.mp4: cannot be opened"
    fake_extraction(frames=2, said="Segmentation fault", code=139)
    source = VideoSource("clip.mp4")
    assert len(list(source)) == 2
    assert "stopped with exit code 139 after 2 frames: Segmentation fault" in str(source.error)


# ---------------------------------------------------------------------------------- reports
def test_timeline_formats(tmp_path):
    names = ["alpha", "beta", "gamma"]
    stream = idle(4) + moving(12, marker=2) + idle(8) + moving(12, marker=0)
    signs = list(StreamRecognizer(marker_classifier(3), names, PARAMS, top_k=2).run(stream))
    lines = report.format_table(signs).splitlines()
    assert len(lines) == 3 and "gamma 0.900  alpha 0.050" in lines[1]
    decoded = json.loads(report.to_json(signs))
    assert decoded[1]["start_frame"] == 24 and decoded[1]["top_k"][0]["sign"] == "alpha"
    path = tmp_path / "out.csv"
    report.write_csv(path, signs, 2)
    rows = path.read_text().splitlines()
    assert rows[0] == ("start_frame,end_frame,start_seconds,end_seconds,sign,probability,"
                       "sign_2,probability_2")
    assert rows[1].startswith("4,15,0.133,0.500,gamma,0.900000,alpha,0.050000")


# -------------------------------------------------------------------------- tfislr-stream
@pytest.fixture(scope="module")
def exported(synthetic_export):
    """(.tflite path, signs) of the session's tiny untrained export on the synthetic signs:
    what the command does with the model's answers is checked, not the answers."""
    _, path, signs = synthetic_export
    return path, signs


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    frames, timeline = synthetic_stream.generate_stream(0, 20, [1, 4, 2, 5], 0,
                                                        rest_probability=1.0)
    path = tmp_path_factory.mktemp("stream") / "stream.parquet"
    write_landmark_file(path, frames)
    return path, frames


def test_stream_command_prints_the_timeline_as_table_json_and_csv(exported, stream_file,
                                                                  capsys, tmp_path):
    from tfislr.cli import stream as cli

    model, signs = exported
    path, frames = stream_file
    out_csv = tmp_path / "timeline.csv"
    # The untrained model's answers are all near 1/6: --min-confidence 0 shows them.
    assert cli.main([str(model), str(path), "--top-k", "2", "--csv", str(out_csv),
                     "--min-confidence", "0"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].split() == ["frames", "seconds", "signs", "(probability)"]
    assert len(lines) >= 2 and all(line.split()[3] in signs for line in lines[1:])
    assert f"tfislr-stream: {len(frames)} frames" in err
    rows = out_csv.read_text().splitlines()
    assert len(rows) == len(lines) and rows[0].endswith("sign_2,probability_2")
    assert cli.main([str(model), str(path), "--json", "--fps", "10", "--min-confidence",
                     "0", "--json-out", str(tmp_path / "t.json")]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "t.json").read_text()) == decoded  # --json-out: the same
    assert len(decoded) == len(lines) - 1
    first = decoded[0]
    assert first["start_seconds"] == pytest.approx(first["start_frame"] / 10)
    assert len(first["top_k"]) == 3 and first["top_k"][0]["sign"] in signs
    # --live prints the same lines, each as it is recognized.
    assert cli.main([str(model), str(path), "--top-k", "2", "--live", "--min-confidence",
                     "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines
    # --min-confidence above every answer: no sign, and stderr says how many were dropped.
    assert cli.main([str(model), str(path), "--min-confidence", "1"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1 and "below --min-confidence 1.0" in err
    # The baseline: fixed windows, every stride frames once the first window is full.
    assert cli.main([str(model), str(path), "--method", "windows", "--window", "20",
                     "--stride", "10", "--min-confidence", "0"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) >= 2
    hand_windows = sum(np.isfinite(frames[end - 19:end + 1, list(lm.HAND_ROWS), 0]).any(axis=1)
                       .sum() >= 4 for end in range(19, len(frames), 10))
    assert f", {hand_windows} windows, " in err


def test_stream_command_refuses_bad_input_in_one_line(exported, stream_file, capsys, tmp_path,
                                                      monkeypatch):
    from tfislr.cli import stream as cli

    model, _ = exported
    path, _ = stream_file
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n")
    cases = {
        (str(model), str(tmp_path / "nope.parquet")): f"{tmp_path / 'nope.parquet'}: file not found",
        (str(model), str(notes)): f"{notes}: unsupported clip type .csv",
        (str(tmp_path / "none.tflite"), str(path)): f"{tmp_path / 'none.tflite'}: file not found",
    }
    for argv, message in cases.items():
        assert cli.main(list(argv)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"tfislr-stream: error: {message}")
    for option in (["--min-confidence", "1.5"], ["--max-frames", "0"],
                   ["--min-frames", "9", "--max-frames", "8"], ["--fps", "0"],
                   ["--merge-gap", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(model), str(path), *option])
        assert exit_info.value.code == 2
        assert "tfislr-stream: error:" in capsys.readouterr().err
    monkeypatch.setenv("TFISLR_EXTRACT_PYTHON", str(tmp_path / "no-python"))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert cli.main([str(model), str(video)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"tfislr-stream: error: {tmp_path / 'no-python'}: interpreter not found (set by "
        "TFISLR_EXTRACT_PYTHON)")


def test_stream_command_keeps_the_signs_before_a_bad_part_of_a_file(exported, stream_file,
                                                                    capsys, tmp_path):
    """A landmark file whose frame ids go wrong near its end: the signs before are shown,
    then one error line naming the file (exit 2)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tfislr.cli import stream as cli
    from tfislr.data.synthetic import frames_to_table

    model, _ = exported
    _, frames = stream_file
    table = frames_to_table(frames)
    ids = np.repeat(np.arange(len(frames), dtype=np.int16), lm.NUM_RAW_LANDMARKS)
    ids[-lm.NUM_RAW_LANDMARKS:] = 0  # the last frame claims to be frame 0
    table = table.set_column(0, "frame", pa.array(ids))
    bad = tmp_path / "bad.parquet"
    pq.write_table(table, bad)
    assert cli.main([str(model), str(bad), "--json", "--min-confidence", "0"]) == 2
    out, err = capsys.readouterr()
    assert len(json.loads(out)) >= 1
    assert err.strip().splitlines()[-1].startswith(
        f"tfislr-stream: error: {bad}: frame ids must increase")


def test_stream_command_on_a_camera_prints_signs_live_and_ends_cleanly(exported, capsys,
                                                                       fake_extraction):
    """A camera (here the fake extraction environment's canned frames) that stops: the
    signs so far, a note saying so, exit code 0."""
    from tfislr.cli import stream as cli

    model, _ = exported
    fake_extraction(frames=12, said="tfislr-live: camera 0 stopped delivering frames after "
                                    "12 frames")
    assert cli.main([str(model), "0", "--min-frames", "2", "--min-confidence", "0"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2  # the header, then the one segment of the hand held up
    assert lines[1].split()[:2] == ["0-11", "0.00-0.37"]  # the frames' times, from the source
    assert "tfislr-stream: note: camera 0 stopped delivering frames after 12 frames" in err


# ------------------------------------------------------------- a trained model (slow, ci)
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small distilled model fitted with plain cross-entropy on the isolated clips of 6
    synthetic signs (8 signers, 30 clips a sign), exported: a model that knows the signs."""
    import keras

    from tfislr.config import ModelConfig
    from tfislr.data.prepare import prepare_store
    from tfislr.data.store import load_store
    from tfislr.data.synthetic import write_synthetic_dataset
    from tfislr.export import EnsembleMember, export_ensemble
    from tfislr.model import build_classifier

    root = tmp_path_factory.mktemp("trained")
    data = write_synthetic_dataset(root / "data", num_signs=6, num_participants=8,
                                   sequences_per_sign=30, seed=0)
    max_len = 16
    store = load_store(prepare_store(data, max_len, root / "prepared", num_workers=1,
                                     progress=False))
    points = np.zeros((len(store), max_len, lm.NUM_POINTS, 3), np.float32)
    mask = np.zeros((len(store), max_len), np.float32)
    for i in range(len(store)):
        clip = store.sequence(i)
        points[i, :len(clip)], mask[i, :len(clip)] = clip, 1.0
    keras.utils.set_random_seed(3)
    config = ModelConfig(embed_dim=8, dense_dim=32, transfo_dim=64, distill_dense_dim=32,
                         distill_transfo_dim=64, transfo_layers=1, num_heads=4, drop_rate=0.0)
    model = build_classifier(config, store.num_classes, max_len, distilled=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit({"landmarks": points, "padding_mask": mask}, store.labels, batch_size=30,
              epochs=40, verbose=0)
    path = root / "model.tflite"
    export_ensemble([EnsembleMember("trained", model, max_len, store.signs)], path, "fp32",
                    verbose=False, latency_repeats=1)
    return path, store.signs


@pytest.mark.large
def test_well_separated_signs_are_recognized_in_order(trained):
    """Streams of signers the model never saw (signer indices from 8 on), hands down between
    signs: the recognized sequence is the true one, sign for sign, through the exported
    model (the same runner as tfislr-predict). Sign 0 of seed 0 is made mostly below the
    picture, so the streams use signs 1-5. With the hands down between signs, a sign ends
    at a rest: gap_frames 4 here, where the defaults' 2 (chosen for chained signs, the merge
    rejoining what a dropout cuts) leaves the end of a falling hand as a fragment, which
    this small model, trained without label smoothing, answers with certainty."""
    from tfislr.data.synthetic import sign_names
    from tfislr.export import TFLiteRunner

    path, signs = trained
    runner = TFLiteRunner(path)
    names = sign_names(6)
    for signer, sequence in ((20, [3, 1, 5, 2, 4]), (21, [2, 5, 1, 4, 3, 1])):
        frames, timeline = synthetic_stream.generate_stream(0, signer, sequence, 0,
                                                            rest_probability=1.0)
        recognizer = StreamRecognizer(runner, signs, dataclasses.replace(
            SegmentationParams(), gap_frames=4))
        recognized = list(recognizer.run(frames.astype(np.float32)))
        assert [s.sign for s in recognized] == [names[i] for i in sequence]
        for sign, (_, start, end) in zip(recognized, timeline):
            assert abs(sign.start_frame - start) <= 12 and abs(sign.end_frame - end) <= 12


# ------------------------------------------------------- video → stream end to end (slow)
@pytest.mark.extra_large
def test_video_file_streams_through_extraction_to_a_timeline(exported, tmp_path, capfd):
    """A video file → the extraction environment (frames through a pipe, no landmark file) →
    the recognizer → a timeline. The only video here is a photograph of a person without
    hands in the picture (tests/make_video.py), so the timeline is empty, every frame having
    been read; a file that is no video is one error line."""
    import subprocess

    from tfislr.cli import stream as cli
    from tfislr.errors import MissingFileError
    from tfislr.video import environment

    try:
        python = environment.extraction_python()
    except MissingFileError as error:
        pytest.skip(str(error))
    model, _ = exported
    video = tmp_path / "person.mp4"
    subprocess.run([str(python), str(pathlib.Path(__file__).parents[1] / "make_video.py"),
                    str(video), "--frames", "9"], check=True, timeout=300)
    before = set(tmp_path.iterdir())
    assert cli.main([str(model), str(video), "--json", "--csv", str(tmp_path / "t.csv")]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out) == []
    assert "tfislr-stream: 9 frames, 0 segments, 0 signs" in err
    assert set(tmp_path.iterdir()) - before == {tmp_path / "t.csv"}  # no landmark file
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert cli.main([str(model), str(broken)]) == 2
    assert capfd.readouterr().err.strip().splitlines()[-1] == (
        f"tfislr-stream: error: {broken}: cannot be opened as a video (not a video, or an "
        "unsupported format)")


def test_the_stream_path_imports_no_tensorflow():
    """Segmentation, recognition, sources and the exported model's runner need no TensorFlow
    (the model's preprocessing is inside the .tflite): a stream starts without it."""
    import subprocess
    import sys

    code = ("import sys, tfislr.stream.recognizer, tfislr.stream.windows, tfislr.stream.sources, "
            "tfislr.stream.report, tfislr.stream.scoring, tfislr.data.synthetic_stream, "
            "tfislr.export.runner; print(sorted(m for m in ('tensorflow', 'keras') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=pathlib.Path(__file__).parents[2], timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
