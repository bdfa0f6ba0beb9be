"""demo.py's checks of its paths, made before TensorFlow starts or anything is written: a
folder that may be someone's data is never written into, and a bad --tflite or --data-dir
stops at once (exit 2, one line), not after the training."""

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(demo, monkeypatch, tmp_path, *argv):
    """(exit code, stderr lines) of demo.py with `argv`; fails if TensorFlow would start."""
    def no_tensorflow():
        raise AssertionError("the paths' checks come before TensorFlow starts")

    monkeypatch.setattr(demo, "start_tensorflow", no_tensorflow)
    argv = ["--output", str(tmp_path / "runs"), "--tflite", str(tmp_path / "demo.tflite"), *argv]
    return demo.main(argv)


@pytest.mark.parametrize("case, message", [
    ("file", "is a file; --data-dir is the synthetic data set's folder"),
    ("user_data", "not empty and no data set in it (train.csv and "
                  "sign_to_prediction_index_map.json); the demo writes its synthetic set into "
                  "a new or empty folder"),
])
def test_a_data_dir_that_may_be_someones_data_is_refused(demo, monkeypatch, tmp_path, capsys,
                                                         case, message):
    data_dir = tmp_path / "data"
    if case == "file":
        data_dir.write_text("not a folder")
    else:  # a data set of one's own, its sign map not made yet
        data_dir.mkdir()
        (data_dir / "train.csv").write_text("path,participant_id,sequence_id,sign\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert _run(demo, monkeypatch, tmp_path, "--data-dir", str(data_dir)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"demo.py: error: {data_dir}: {message}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_tflite_path_that_is_a_folder_is_refused_before_training(demo, monkeypatch,
                                                                   tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = _run(demo, monkeypatch, tmp_path, "--data-dir", str(tmp_path / "data"),
                "--tflite", str(tmp_path / "out"))
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"demo.py: error: {tmp_path / 'out'}: is a folder, not a file to write")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("contents", [None, (), ("train_landmark_files",)])
def test_a_new_empty_or_half_written_folder_takes_the_synthetic_set(demo, tmp_path, contents):
    """Missing, empty, or what an interrupted demo left (its parquet files, written first)."""
    import types

    data_dir = tmp_path / "data"
    if contents is not None:
        data_dir.mkdir()
        for name in contents:
            (data_dir / name).mkdir()
    args = types.SimpleNamespace(data_dir=str(data_dir), output=str(tmp_path / "runs"),
                                 tflite=str(tmp_path / "demo.tflite"), skip_export=False)
    demo.check_paths(args)  # raises on a refusal
    assert not demo.holds_data_set(data_dir)
