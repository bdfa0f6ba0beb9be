"""Preprocess matches an independent numpy reference of docs/recipe.md §3–§4 (TF and TFLite)."""

import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfislr import landmarks as lm
from tfislr.preprocessing import Preprocess, preprocess_numpy

NUM_ROWS = lm.NUM_RAW_LANDMARKS
NUM_POINTS = lm.NUM_POINTS
FIRST_AVERAGED = len(lm.KEPT_ROWS)
TOL = 1e-5


# --------------------------------------------------------------------------- reference
def reference_preprocess(frames, max_len):
    """Straight from the spec text, in float64 numpy; shares no code with the TF version."""
    frames = np.asarray(frames, np.float64)
    frames = np.where(np.isfinite(frames), frames, np.nan)  # inf is "missing" like NaN
    # 1. keep a frame iff not all 42 hand x values are missing
    hand_x = frames[:, list(lm.HAND_ROWS), 0]
    frames = frames[~np.all(np.isnan(hand_x), axis=1)]
    # 2. stride: keep frames whose 1-based number is a multiple of the divisor
    n = len(frames)
    divisor = 1 if n <= max_len else int(n / max_len + 1)
    frames = frames[[i - 1 for i in range(1, n + 1) if i % divisor == 0]]
    if len(frames) == 0:
        return np.zeros((1, NUM_POINTS, 3), np.float32)
    # 3. 95 kept rows + 5 plain means (NaN member -> NaN mean)
    columns = [frames[:, list(lm.KEPT_ROWS)]]
    for _, rows in lm.AVERAGED_GROUPS:
        columns.append(frames[:, list(rows)].mean(axis=1, keepdims=True))
    points = np.concatenate(columns, axis=1)
    # 4. per-coordinate mean / population std over every non-NaN value; std 0 -> only centre
    flat = points.reshape(-1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN coordinate
        mean = np.nanmean(flat, axis=0)
        std = np.nanstd(flat, axis=0)
    std = np.where(std > 0, std, 1.0)
    out = (points - mean) / std
    # 5. NaN -> 0
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


# --------------------------------------------------------------------------- helpers
_MODULES = {}


def module(max_len):
    if max_len not in _MODULES:
        _MODULES[max_len] = Preprocess(max_len)
    return _MODULES[max_len]


def run_tf(frames, max_len):
    out = module(max_len)(tf.constant(np.asarray(frames, np.float32)))
    return out.numpy()


def random_frames(rng, n, p_left=0.3, p_right=0.3, p_face=0.05, p_pose=0.02, p_empty=0.05,
                  p_scattered=0.0):
    """Landmark-like frames with MediaPipe-style missing parts (whole parts NaN per frame)."""
    frames = np.empty((n, NUM_ROWS, 3), np.float32)
    frames[..., :2] = rng.uniform(-0.2, 1.2, (n, NUM_ROWS, 2))
    frames[..., 2] = rng.uniform(-0.3, 0.3, (n, NUM_ROWS))
    for part, p in (("left_hand", p_left), ("right_hand", p_right), ("face", p_face),
                    ("pose", p_pose)):
        start, stop = lm.PART_ROWS[part]
        frames[rng.random(n) < p, start:stop] = np.nan
    frames[rng.random(n) < p_empty] = np.nan
    if p_scattered:
        frames[rng.random(frames.shape) < p_scattered] = np.nan
    return frames


def no_hand(frames):
    frames = frames.copy()
    frames[:, list(lm.HAND_ROWS)] = np.nan
    return frames


def assert_matches_reference(frames, max_len, out=None):
    out = run_tf(frames, max_len) if out is None else out
    expected = reference_preprocess(frames, max_len)
    assert out.dtype == np.float32
    assert out.shape == expected.shape
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=TOL, rtol=TOL)
    return out


# --------------------------------------------------------------------------- rules
@pytest.mark.parametrize(
    "n, max_len, expected",
    [
        (26, 25, 13), (50, 25, 16), (25, 25, 25), (24, 25, 24), (1, 25, 1), (10, 80, 10),
        (80, 80, 80), (81, 80, 40), (160, 80, 53), (1000, 25, 24), (400, 80, 66),
    ],
)
def test_frame_count_rule(n, max_len, expected):
    frames = random_frames(np.random.default_rng(n), n, p_left=0, p_right=0, p_empty=0)
    out = run_tf(frames, max_len)
    assert out.shape == (expected, NUM_POINTS, 3)
    # The rule itself, checked without TF: floor(n / divisor) frames, never more than max_len.
    divisor = 1 if n <= max_len else n // max_len + 1
    assert expected == n // divisor
    assert out.shape[0] <= max_len


def _index_coded_frames(n, handless):
    """Frame i carries i in point 0's x; points 1 and 2 hold the constants 0 and 1.

    Normalization is affine per coordinate, so i = (v0 - v1) / (v2 - v1) recovers which
    raw frame each output frame came from.
    """
    frames = np.full((n, NUM_ROWS, 3), np.nan, np.float32)
    rows = lm.KEPT_ROWS
    frames[:, rows[0], :] = np.arange(n, dtype=np.float32)[:, None]
    frames[:, rows[1], :] = 0.0
    frames[:, rows[2], :] = 1.0
    frames[handless] = np.nan
    return frames


def _recover_indices(out):
    v = out[:, :3, 0].astype(np.float64)
    return np.rint((v[:, 0] - v[:, 1]) / (v[:, 2] - v[:, 1])).astype(int)


@pytest.mark.parametrize("n, max_len", [(20, 25), (60, 25), (61, 25), (200, 80), (333, 25)])
def test_filter_then_stride_keeps_the_right_frames(n, max_len):
    rng = np.random.default_rng(n)
    handless = rng.random(n) < 0.3
    out = run_tf(_index_coded_frames(n, handless), max_len)
    with_hand = np.flatnonzero(~handless)
    m = len(with_hand)
    divisor = 1 if m <= max_len else m // max_len + 1
    expected = with_hand[divisor - 1::divisor]
    np.testing.assert_array_equal(_recover_indices(out), expected)
    frames = _index_coded_frames(n, handless)
    np.testing.assert_array_equal(module(max_len).frame_indices(frames).numpy(), expected)


def test_hand_rule_uses_only_x_of_hand_rows():
    frames = random_frames(np.random.default_rng(1), 6, p_left=0, p_right=0, p_empty=0)
    frames[0, list(lm.HAND_ROWS), 0] = np.nan  # no hand x, y/z present -> dropped
    frames[1, list(lm.HAND_ROWS)] = np.nan  # no hand at all -> dropped
    frames[2, list(lm.HAND_ROWS)] = np.nan
    frames[2, lm.HAND_ROWS[-1], 0] = 0.5  # one right-hand x -> kept
    frames[3, : lm.PART_ROWS["left_hand"][0]] = np.nan  # no face -> kept
    out = assert_matches_reference(frames, 25)
    assert out.shape[0] == 4


def test_averaged_points_are_plain_means():
    rng = np.random.default_rng(7)
    n = 12
    frames = random_frames(rng, n, p_left=0, p_right=0, p_face=0, p_pose=0, p_empty=0)
    rows = lm.KEPT_ROWS
    frames[:, rows[0]] = 0.0  # affine anchors, see _index_coded_frames
    frames[:, rows[1]] = 1.0
    out = run_tf(frames, 25).astype(np.float64)
    raw = (out - out[:, :1]) / (out[:, 1:2] - out[:, :1])  # undo the per-coordinate affine map
    for g, (_, group_rows) in enumerate(lm.AVERAGED_GROUPS):
        expected = frames[:, list(group_rows)].astype(np.float64).mean(axis=1)
        np.testing.assert_allclose(raw[:, FIRST_AVERAGED + g], expected, atol=1e-5)
    np.testing.assert_allclose(raw[:, : len(rows)], frames[:, list(rows)], atol=1e-5)


def test_one_missing_member_makes_the_average_missing():
    rng = np.random.default_rng(3)
    frames = random_frames(rng, 10, p_left=0, p_right=0, p_face=0, p_pose=0, p_empty=0)
    name, group_rows = lm.AVERAGED_GROUPS[1]
    one_missing = frames.copy()
    one_missing[4, group_rows[-1]] = np.nan
    all_missing = frames.copy()
    all_missing[4, list(group_rows)] = np.nan
    out = assert_matches_reference(one_missing, 25)
    np.testing.assert_array_equal(out[4, FIRST_AVERAGED + 1], 0.0)
    # Missing values do not enter the statistics: both inputs give the same sequence.
    np.testing.assert_array_equal(out, run_tf(all_missing, 25))


def test_statistics_ignore_dropped_and_strided_out_frames():
    rng = np.random.default_rng(11)
    frames = random_frames(rng, 40, p_left=0, p_right=0, p_empty=0)
    base = run_tf(frames, 80)
    # Handless frames with wild values in face/pose must change nothing.
    extra = no_hand(rng.uniform(-50, 50, (15, NUM_ROWS, 3)).astype(np.float32))
    mixed = np.concatenate([extra[:7], frames, extra[7:]])
    np.testing.assert_array_equal(run_tf(mixed, 80), base)


def test_normalized_statistics():
    frames = random_frames(np.random.default_rng(5), 30, p_empty=0)
    out = run_tf(frames, 80)
    expected = reference_preprocess(frames, 80)
    present = expected != 0
    for c in range(3):
        values = out[..., c][present[..., c]].astype(np.float64)
        assert abs(values.mean()) < 1e-5
        assert abs(values.std() - 1.0) < 1e-5


# --------------------------------------------------------------------------- properties
@st.composite
def sequences(draw):
    n = draw(st.integers(0, 400))
    max_len = draw(st.sampled_from([25, 80]))
    seed = draw(st.integers(0, 2**32 - 1))
    probability = st.floats(0.0, 1.0)
    kwargs = dict(
        p_left=draw(probability), p_right=draw(probability), p_face=draw(probability),
        p_pose=draw(probability), p_empty=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        p_scattered=draw(st.sampled_from([0.0, 0.0, 0.01, 0.3])),
    )
    return random_frames(np.random.default_rng(seed), n, **kwargs), max_len


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences())
def test_matches_reference_on_random_sequences(case):
    frames, max_len = case
    out = assert_matches_reference(frames, max_len)
    assert 1 <= out.shape[0] <= max(1, min(len(frames), max_len))


# --------------------------------------------------------------------------- edge inputs
def test_zero_frames_give_one_zero_frame():
    out = run_tf(np.zeros((0, NUM_ROWS, 3), np.float32), 25)
    np.testing.assert_array_equal(out, np.zeros((1, NUM_POINTS, 3), np.float32))


@pytest.mark.parametrize("n", [1, 7, 300])
def test_no_hand_in_any_frame_gives_one_zero_frame(n):
    frames = no_hand(random_frames(np.random.default_rng(n), n))
    np.testing.assert_array_equal(run_tf(frames, 80), np.zeros((1, NUM_POINTS, 3)))


@pytest.mark.parametrize("n", [1, 50])
def test_all_nan_gives_one_zero_frame(n):
    frames = np.full((n, NUM_ROWS, 3), np.nan, np.float32)
    np.testing.assert_array_equal(run_tf(frames, 25), np.zeros((1, NUM_POINTS, 3)))


def test_one_frame():
    frames = random_frames(np.random.default_rng(0), 1, p_left=0, p_empty=0)
    out = assert_matches_reference(frames, 25)
    assert out.shape == (1, NUM_POINTS, 3)
    assert np.abs(out).max() > 0.1


@pytest.mark.parametrize("value", [0.0, 0.3, -123.456, 1e-30])
def test_constant_sequence_is_all_zero(value):
    frames = np.full((17, NUM_ROWS, 3), value, np.float32)
    frames[3, : lm.PART_ROWS["left_hand"][0]] = np.nan  # missing face changes nothing
    np.testing.assert_array_equal(run_tf(frames, 25), np.zeros((17, NUM_POINTS, 3)))


def test_constant_coordinate_is_zero_and_others_normalized():
    frames = random_frames(np.random.default_rng(2), 20, p_empty=0)
    frames[..., 2] = np.where(np.isnan(frames[..., 2]), np.nan, 0.25)
    out = assert_matches_reference(frames, 25)
    np.testing.assert_array_equal(out[..., 2], 0.0)
    assert np.abs(out[..., :2]).max() > 0.5


def test_inf_is_treated_as_missing():
    rng = np.random.default_rng(9)
    frames = random_frames(rng, 60)
    with_inf = frames.copy()
    with_nan = frames.copy()
    where = rng.random(frames.shape) < 0.05
    signs = np.where(rng.random(frames.shape) < 0.5, np.inf, -np.inf).astype(np.float32)
    with_inf[where] = signs[where]
    with_nan[where] = np.nan
    # A frame whose only hand values are inf has no hand and is dropped.
    with_inf[5, list(lm.HAND_ROWS)] = np.inf
    with_nan[5, list(lm.HAND_ROWS)] = np.nan
    out = assert_matches_reference(with_inf, 25)
    np.testing.assert_array_equal(out, run_tf(with_nan, 25))
    all_inf = np.full((4, NUM_ROWS, 3), np.inf, np.float32)
    np.testing.assert_array_equal(run_tf(all_inf, 25), np.zeros((1, NUM_POINTS, 3)))


def test_huge_values_stay_finite():
    frames = random_frames(np.random.default_rng(4), 10, p_left=0, p_empty=0)
    frames[:5] *= np.float32(1e38)  # finite input whose sums overflow float32
    assert not np.isinf(frames).any()
    assert np.isfinite(run_tf(frames, 25)).all()


@pytest.mark.parametrize("max_len", [25, 80])
def test_ten_thousand_frames(max_len):
    frames = random_frames(np.random.default_rng(max_len), 10_000)
    out = assert_matches_reference(frames, max_len)
    assert 0 < out.shape[0] < max_len


def test_one_trace_for_all_lengths():
    pre = Preprocess(25)
    for n in (0, 1, 20, 300):
        pre(tf.constant(random_frames(np.random.default_rng(n), n)))
    assert pre.__call__.experimental_get_tracing_count() == 1


# --------------------------------------------------------------------------- API
def test_preprocess_numpy_accepts_float64_and_lists():
    frames = random_frames(np.random.default_rng(8), 9)
    expected = run_tf(frames, 25)
    out = preprocess_numpy(frames.astype(np.float64), 25)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(preprocess_numpy(frames.tolist(), np.int64(25)), expected)


@pytest.mark.parametrize("max_len", [0, -3, 2.5, True, "25", None])
def test_bad_max_len_raises(max_len):
    with pytest.raises(ValueError, match="max_len"):
        Preprocess(max_len)
    with pytest.raises(ValueError, match="max_len"):
        preprocess_numpy(np.zeros((2, NUM_ROWS, 3)), max_len)


@pytest.mark.parametrize("shape", [(NUM_ROWS, 3), (4, 542, 3), (4, NUM_ROWS, 2), (1, 4, NUM_ROWS, 3)])
def test_bad_frame_shape_raises(shape):
    with pytest.raises(ValueError, match="543"):
        preprocess_numpy(np.zeros(shape, np.float32), 25)


# --------------------------------------------------------------------------- real data
def read_parquet_frames(path):
    """Kaggle parquet → float32 [T, 543, 3], frames in order (the test's own tiny reader)."""
    table = pd.read_parquet(path, columns=["frame", "x", "y", "z"])
    values = table[["x", "y", "z"]].to_numpy(np.float32)
    assert len(values) % NUM_ROWS == 0
    assert table["frame"].is_monotonic_increasing
    return values.reshape(-1, NUM_ROWS, 3)


def test_real_sample_matches_reference(real_data_dir):
    train = pd.read_csv(real_data_dir / "train.csv")
    paths = [real_data_dir / p for p in train["path"].iloc[::6]]  # 20 files, all signers
    assert len(paths) >= 10
    for path in paths:
        frames = read_parquet_frames(path)
        for max_len in (25, 80):
            out = assert_matches_reference(frames, max_len)
            assert out.shape[0] >= 1


# --------------------------------------------------------------------------- TFLite
@pytest.fixture(scope="module")
def tflite_runner():
    from ai_edge_litert.interpreter import Interpreter

    pre = Preprocess(25)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [pre.__call__.get_concrete_function()], pre
    )
    # Builtins only: conversion fails if any op would need Select TF ops.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner("serving_default")
    assert list(interpreter.get_signature_list()["serving_default"]["inputs"]) == ["inputs"]
    return pre, runner


def _tflite_cases():
    rng = np.random.default_rng(21)
    cases = {f"random_{n}": random_frames(rng, n) for n in (0, 1, 20, 300)}
    cases["one_frame_with_hand"] = random_frames(rng, 1, p_left=0, p_empty=0)
    cases["no_hand_20"] = no_hand(random_frames(rng, 20))
    cases["all_nan_300"] = np.full((300, NUM_ROWS, 3), np.nan, np.float32)
    cases["constant_20"] = np.full((20, NUM_ROWS, 3), 0.3, np.float32)
    inf_case = random_frames(rng, 20)
    inf_case[rng.random(inf_case.shape) < 0.05] = np.inf
    cases["inf_20"] = inf_case
    return cases


@pytest.mark.parametrize("name", list(_tflite_cases()))
def test_tflite_matches_tf(tflite_runner, name):
    pre, runner = tflite_runner
    frames = _tflite_cases()[name]
    expected = pre(tf.constant(frames)).numpy()
    (out,) = runner(inputs=frames).values()
    assert out.shape == expected.shape
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(out, reference_preprocess(frames, 25), atol=TOL, rtol=TOL)
