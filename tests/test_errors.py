"""The error contract of every command (tfislr/errors.py): user error = exit 2 and one line."""

import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

from tfislr import errors
from tfislr.cli import blend as blend_cli
from tfislr.cli import command
from tfislr.cli import cv as cv_cli
from tfislr.cli import evaluate as evaluate_cli
from tfislr.cli import export as export_cli
from tfislr.cli import predict as predict_cli
from tfislr.cli import prepare as prepare_cli
from tfislr.cli import train as train_cli
from tfislr import predict

REPO = pathlib.Path(__file__).resolve().parents[1]


def _one_error_line(capsys, prog, *needles):
    """The stderr of a failed command: exactly one line `<prog>: error: ...` naming `needles`."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def no_sign_map(synthetic_data_dir, tmp_path):
    """A Kaggle-layout folder whose sign map is missing (train.csv and parquet files exist)."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, data, ignore=shutil.ignore_patterns("prepared"))
    (data / "sign_to_prediction_index_map.json").unlink()
    return data


def test_console_scripts_are_contract_commands():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"tfislr-train", "tfislr-export", "tfislr-evaluate", "tfislr-prepare"} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        main = getattr(importlib.import_module(module), function)
        assert main.prog == name, target  # wrapped by cli.command.command(name)


def test_train_user_errors(capsys, tmp_path, no_sign_map):
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path / "missing")]) == 2
    _one_error_line(capsys, "tfislr-train", tmp_path / "missing", "data folder not found")
    assert train_cli.main(["--config", "demo", "--data-dir", str(no_sign_map),
                           "--output", str(tmp_path / "runs")]) == 2
    _one_error_line(capsys, "tfislr-train", no_sign_map / "sign_to_prediction_index_map.json",
                    "sign map not found")
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path),
                           "--set", "train.epochs=zero"]) == 2
    _one_error_line(capsys, "tfislr-train", "--set train.epochs=zero (on demo.yaml)", "epochs")
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path),
                           "--strategy", "warp:9"]) == 2
    _one_error_line(capsys, "tfislr-train", "unknown strategy 'warp:9'")


def test_train_config_that_exists_but_is_not_yaml(capsys, tmp_path):
    """An existing path given as --config is never "file not found"."""
    clip = tmp_path / "clip.csv"
    clip.write_text("a,b\n1,2\n")
    for given, problem in ((clip, "not a YAML config file (expected .yaml, .yml, .json"),
                           (tmp_path, "is a folder, not a YAML config file")):
        assert train_cli.main(["--config", str(given), "--data-dir", str(tmp_path)]) == 2
        _one_error_line(capsys, "tfislr-train", f"{given}: {problem}")
    assert train_cli.main(["--config", str(tmp_path / "c.yaml"), "--data-dir", str(tmp_path)]) == 2
    _one_error_line(capsys, "tfislr-train", f"{tmp_path / 'c.yaml'}: file not found")


def test_prepare_user_errors(capsys, tmp_path, no_sign_map):
    assert prepare_cli.main(["--data-dir", str(tmp_path / "missing"), "--max-len", "8"]) == 2
    _one_error_line(capsys, "tfislr-prepare", tmp_path / "missing", "data folder not found")
    assert prepare_cli.main(["--data-dir", str(no_sign_map), "--max-len", "8", "--quiet"]) == 2
    _one_error_line(capsys, "tfislr-prepare", "sign_to_prediction_index_map.json")
    with pytest.raises(SystemExit) as excinfo:  # a bad option: argparse, same code and prefix
        prepare_cli.main(["--data-dir", str(no_sign_map), "--max-len", "0"])
    assert excinfo.value.code == 2
    assert "tfislr-prepare: error: argument --max-len" in capsys.readouterr().err


def test_evaluate_user_errors(capsys, tmp_path, synthetic_data_dir, no_sign_map):
    model = tmp_path / "model.tflite"
    assert evaluate_cli.main([str(model), "--data-dir", str(synthetic_data_dir)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", f"{model}: file not found")
    assert evaluate_cli.main([str(tmp_path), "--data-dir", str(synthetic_data_dir)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", f"{tmp_path}: is a folder, not a .tflite model")
    model.write_bytes(b"not a model")
    assert evaluate_cli.main([str(model), "--data-dir", str(no_sign_map)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", "sign map not found")
    assert evaluate_cli.main([str(model), "--data-dir", str(tmp_path / "missing")]) == 2
    _one_error_line(capsys, "tfislr-evaluate", tmp_path / "missing", "data folder not found")
    assert evaluate_cli.main([str(model), "--data-dir", str(synthetic_data_dir)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", model, "not a TFLite model")
    for option in ("--limit", "--threads"):  # -3 would drop the last 3 sequences
        with pytest.raises(SystemExit) as exited:
            evaluate_cli.main([str(model), "--data-dir", str(synthetic_data_dir), option, "-3"])
        assert exited.value.code == 2
        assert f"argument {option}: expected a positive integer" in capsys.readouterr().err


def test_predict_user_errors(capsys, tmp_path, synthetic_data_dir):
    clip = next(pathlib.Path(synthetic_data_dir).rglob("*.parquet"))
    model = tmp_path / "model.tflite"
    assert predict_cli.main([str(model), str(clip)]) == 2
    _one_error_line(capsys, "tfislr-predict", f"{model}: file not found")
    assert predict_cli.main([str(tmp_path), str(clip)]) == 2
    _one_error_line(capsys, "tfislr-predict", f"{tmp_path}: is a folder, not a .tflite model")
    model.write_bytes(b"not a model")  # e.g. a train.csv given by mistake
    assert predict_cli.main([str(model), str(clip)]) == 2
    _one_error_line(capsys, "tfislr-predict", model, "not a TFLite model")


@pytest.mark.parametrize("name", ["clip.csv", "clip", "clip.parquet.txt"])
def test_predict_decides_a_clip_kind_by_its_suffix(tmp_path, name):
    """A folder or a file that is neither a .parquet nor a known video is refused by name;
    it is never sent to the video extraction (tfislr-predict: test_video)."""
    clip = tmp_path / name
    clip.write_text("a,b\n1,2\n")
    with pytest.raises(errors.DataError, match="unsupported clip type") as raised:
        predict.clip_kind(clip)
    assert str(raised.value).startswith(f"{clip}: unsupported clip type "
                                        f"{clip.suffix or '(no suffix)'} (landmark .parquet, "
                                        "or a video: ")
    assert ".mp4" in str(raised.value)
    with pytest.raises(errors.DataError, match="is a folder; pass .parquet files or videos"):
        predict.clip_kind(tmp_path)
    with pytest.raises(errors.MissingFileError, match="file not found"):
        predict.clip_kind(tmp_path / "nope.mp4")
    for name, kind in (("x.PARQUET", predict.LANDMARKS), ("x.MOV", predict.VIDEO)):
        (tmp_path / name).touch()
        assert predict.clip_kind(tmp_path / name) == kind


def test_export_user_errors(capsys, tmp_path):
    assert export_cli.main(["single", "--run", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "tfislr-export", tmp_path / "nope")
    (tmp_path / "file").write_text("")
    assert export_cli.main(["single", "--run", str(tmp_path / "file")]) == 2
    _one_error_line(capsys, "tfislr-export", f"{tmp_path / 'file'}: is a file, not a run dir")
    assert export_cli.main(["single", "--run", str(tmp_path / "nope"),
                            "--output", str(tmp_path)]) == 2
    _one_error_line(capsys, "tfislr-export", f"{tmp_path}: is a folder; the output is the "
                                             ".tflite file to write")
    yaml_path = tmp_path / "bad.yaml"
    yaml_path.write_text("members: []\nmembrs: 1\n")
    assert export_cli.main(["ensemble", "--config", str(yaml_path)]) == 2
    _one_error_line(capsys, "tfislr-export", yaml_path, "unknown key")
    assert export_cli.main(["ensemble", "--config", str(tmp_path / "none.yaml")]) == 2
    _one_error_line(capsys, "tfislr-export", tmp_path / "none.yaml", "ensemble config not found")
    # An existing path of the wrong kind is never "not found" (nor a YAML parse error).
    clip = tmp_path / "clip.csv"
    clip.write_text("members,a\n1,2\n")
    assert export_cli.main(["ensemble", "--config", str(clip)]) == 2
    _one_error_line(capsys, "tfislr-export",
                    f"{clip}: not an ensemble YAML file (expected .yaml, .yml, .json)")
    assert export_cli.main(["ensemble", "--config", str(tmp_path)]) == 2
    _one_error_line(capsys, "tfislr-export", f"{tmp_path}: is a folder, not an ensemble YAML file")


def test_export_refuses_weights_that_are_not_a_keras_model(capsys, tmp_path):
    """Every user-given weights path that Keras cannot load is exit 2 and one line naming
    it, whether a wrong suffix, a folder, a non-zip or a zip without a model config."""
    import zipfile

    from tfislr.config import load_config
    from tfislr.runs.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    run.write_config(load_config("demo"))
    run.mark_finished()
    csv = tmp_path / "clip.csv"
    csv.write_text("a,b\n1,2\n")
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no model here")
    for weights, problem in ((csv, "not a .keras model"), (tmp_path, "is a folder"),
                             (fake, "not a .keras model: not a zip archive"),
                             (empty_zip, "not a .keras model: the archive has no config.json")):
        assert export_cli.main(["single", "--run", str(run.path), "--weights", str(weights),
                                "--output", str(tmp_path / "m.tflite")]) == 2
        _one_error_line(capsys, "tfislr-export", f"{weights}: {problem}",
                        "expected student|teacher|distilled or a .keras path")
    ensemble = tmp_path / "ensemble.yaml"
    ensemble.write_text(f"members:\n  - run: {run.path}\n    weights: {csv}\n")
    assert export_cli.main(["ensemble", "--config", str(ensemble),
                            "--output", str(tmp_path / "m.tflite")]) == 2
    _one_error_line(capsys, "tfislr-export", f"{csv}: not a .keras model")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1", "many"])
def test_positive_float_refuses_what_passes_no_comparison(text):
    with pytest.raises(command.argparse.ArgumentTypeError, match="positive finite number"):
        command.positive_float(text)
    assert command.positive_float("0.5") == 0.5


def test_export_refuses_a_nan_size_limit_and_names_the_commands(capsys, tmp_path):
    for command in (["single", "--run", str(tmp_path)], ["ensemble"]):
        with pytest.raises(SystemExit) as exited:
            export_cli.main([*command, "--max-size-mb", "nan"])
        assert exited.value.code == 2
        assert "argument --max-size-mb: expected a positive finite number, got 'nan'" \
            in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        export_cli.main([])
    assert exited.value.code == 2
    assert "required: {ensemble,single}" in capsys.readouterr().err


def test_a_bug_is_exit_1_with_the_traceback(monkeypatch, capsys, tmp_path, synthetic_data_dir):
    import tfislr.training.run as run

    def bug(*args, **kwargs):
        return {}["missing key"]

    # The run itself (after the request's checks, which need a real data folder).
    monkeypatch.setattr(run.TrainingRun, "run", bug)
    argv = ["--config", "demo", "--data-dir", str(synthetic_data_dir),
            "--output", str(tmp_path / "runs")]
    # A ValueError from inside tfislr is a bug too unless it is a TfislrError.
    assert train_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in bug" in err
    assert err.strip().splitlines()[-1].startswith("tfislr-train: error: unexpected KeyError")

    monkeypatch.setattr(run.TrainingRun, "run", lambda *a, **k: int("x"))
    assert train_cli.main(argv) == 1
    assert "unexpected ValueError" in capsys.readouterr().err



def _missing_file_cases(tmp):
    """(call, the path it must name) for each place that checks a file or folder exists."""
    from tfislr import blend, config
    from tfislr.runs import oof
    from tfislr.data import kaggle, store
    from tfislr.export import ensemble, members, runner
    from tfislr.runs import run_dir
    from tfislr.video import extract

    empty = tmp / "empty"
    empty.mkdir()
    return {
        "landmark file": (lambda: kaggle.read_landmark_file(tmp / "a.parquet"), tmp / "a.parquet"),
        "sign map file": (lambda: kaggle.load_sign_map(tmp / "m.json"), tmp / "m.json"),
        "data folder": (lambda: kaggle.check_data_dir(tmp / "data"), tmp / "data"),
        "train.csv": (lambda: kaggle.check_data_dir(empty), empty / "train.csv"),
        "sign map": (lambda: kaggle.read_sign_map(empty), empty / kaggle.SIGN_MAP_JSON),
        "config": (lambda: config.resolve_config_path(str(tmp / "c.yaml")), tmp / "c.yaml"),
        "ensemble": (lambda: ensemble.load_ensemble_config(tmp / "e.yaml"), tmp / "e.yaml"),
        "model": (lambda: runner.TFLiteRunner(tmp / "m.tflite"), tmp / "m.tflite"),
        "run dir": (lambda: members.load_member(empty), empty / run_dir.CONFIG),
        "run file": (lambda: run_dir.RunDir(empty).read_config(), empty / run_dir.CONFIG),
        "history": (lambda: run_dir.RunDir(empty).read_history(), empty / run_dir.HISTORY),
        "runs": (lambda: run_dir.latest_finished(tmp, "demo"), tmp / "demo"),
        "store": (lambda: store.load_store(empty), empty / store.SUMMARY_FILE),
        "oof file": (lambda: oof.read_oof(tmp / "o.parquet"), tmp / "o.parquet"),
        "cv oof": (lambda: blend.resolve_source(str(empty)), empty / "oof.parquet"),
        "videos": (lambda: extract.find_clips([tmp / "v.mp4"]), tmp / "v.mp4"),
    }


@pytest.mark.parametrize("case", [
    "landmark file", "sign map file", "data folder", "train.csv", "sign map", "config",
    "ensemble", "model", "run dir", "run file", "history", "runs", "store", "oof file",
    "cv oof", "videos"])
def test_a_missing_file_is_named_first_then_not_found(tmp_path, case):
    """Every missing input reads `<path>: <what> not found[ (more)]`, like the rest."""
    call, path = _missing_file_cases(tmp_path)[case]
    with pytest.raises(errors.TfislrError) as raised:
        call()
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert message.split(" (")[0].endswith("not found"), message

def test_a_user_error_is_always_one_line(capsys):
    assert command.report("prog", errors.DataError("a.parquet: bad\n  details here\n")) == 2
    assert capsys.readouterr().err == "prog: error: a.parquet: bad / details here\n"


def test_a_data_warning_is_one_line_and_the_command_goes_on(capsys):
    import warnings

    @command.command("prog")
    def main(argv):
        warnings.warn("train.csv line 2: looks wrong", errors.DataWarning)
        warnings.warn("not ours", UserWarning)
        return 0

    with pytest.warns(UserWarning, match="not ours") as caught:  # others go on as before
        assert main([]) == 0
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert capsys.readouterr().err == "prog: warning: train.csv line 2: looks wrong\n"


def test_error_classes_keep_the_builtin_bases():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.DataError, ValueError)
    assert issubclass(errors.MissingFileError, FileNotFoundError)
    for cls in (errors.ConfigError, errors.DataError, errors.MissingFileError):
        assert issubclass(cls, errors.TfislrError)


def test_wrapper_scripts_exit_with_the_rule(tmp_path):
    """`python train.py` (the checkout's thin wrapper) gives the same code and line."""
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", "nope", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfislr-train: error: no config 'nope'"), lines


def _unwritable(tmp_path):
    """A folder no one can write, root included: its parent is a regular file."""
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "sub"


def test_check_writable_dir_names_the_folder_and_why(tmp_path):
    from tfislr import atomic

    target = _unwritable(tmp_path)
    with pytest.raises(errors.ConfigError) as raised:
        atomic.check_writable_dir(target / "deeper")
    assert str(raised.value) == (f"{target / 'deeper'}: cannot write here "
                                 f"(Not a directory: {tmp_path / 'afile'})")
    atomic.check_writable_dir(tmp_path / "new" / "folder")  # created later by the writer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the probe left nothing
    with pytest.raises(errors.ConfigError, match="is a folder, not a file to write"):
        atomic.check_writable_file(tmp_path)


def test_check_writable_dir_refuses_a_folder_without_write_permission(tmp_path):
    from tfislr import atomic

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a 0o500 folder is writable")
        with pytest.raises(errors.ConfigError, match=r"locked/x: cannot write here "
                                                     r"\(Permission denied: .*locked\)"):
            atomic.check_writable_dir(locked / "x")
    finally:
        locked.chmod(0o700)


def test_the_python_api_checks_its_output_before_any_work(tmp_path, synthetic_data_dir):
    """`train` and `cross_validate` refuse an unwritable output as the CLI does, before the
    store is prepared (the old code prepared it, then failed with NotADirectoryError)."""
    from tfislr.config import load_config
    from tfislr.training.cross_validation import cross_validate
    from tfislr.training.run import train

    bad = _unwritable(tmp_path)
    prepared = tmp_path / "prepared"
    config = load_config("demo", ["train.epochs=1", f"data.prepared_dir={prepared}"])
    calls = {bad: lambda: train(config, synthetic_data_dir, output_dir=bad),
             bad / "run": lambda: train(config, synthetic_data_dir, run_dir=bad / "run"),
             bad / "cvs": lambda: cross_validate(config, synthetic_data_dir, output_dir=bad / "cvs"),
             bad / "cv": lambda: cross_validate(config, synthetic_data_dir, cv_dir=bad / "cv")}
    for folder, call in calls.items():
        with pytest.raises(errors.ConfigError) as raised:
            call()
        assert str(raised.value).startswith(f"{folder}: cannot write here (Not a directory")
        assert not prepared.exists()


def test_an_unwritable_output_is_one_line_before_any_work(capsys, tmp_path, synthetic_data_dir,
                                                          monkeypatch):
    """Every command's output folder is checked before its slow work (store, training,
    conversion, scoring): exit 2, one line `<prog>: error: <folder>: cannot write here`.
    The old code did the work, then failed with a PermissionError traceback (exit 1)."""
    bad = _unwritable(tmp_path)
    prepared = tmp_path / "prepared"
    data = ["--config", "demo", "--data-dir", str(synthetic_data_dir), "--epochs", "1",
            "--set", f"data.prepared_dir={prepared}", "--force-prepare"]
    for argv in (["--output", str(bad)], ["--run-dir", str(bad / "run")],
                 ["--cv", "--run-dir", str(bad / "cv")], ["--cv", "--output", str(bad)]):
        assert train_cli.main([*data, *argv]) == 2
        _one_error_line(capsys, "tfislr-train", f"{bad}", ": cannot write here (Not a directory")
        assert not prepared.exists()  # refused before the store was (re)built
    assert cv_cli.main([*data, "--cv-dir", str(bad / "cv")]) == 2
    _one_error_line(capsys, "tfislr-cv", f"{bad / 'cv'}: cannot write here")
    assert not prepared.exists()
    # The output is checked once the runs are read (a bad run is named first), before the
    # members are built and converted.
    from tfislr.export import ensemble

    def convert(*_):
        raise AssertionError("the output was not checked before the conversion")

    monkeypatch.setattr(ensemble, "resolve_member", lambda spec, **_: spec)
    monkeypatch.setattr(ensemble, "check_members_agree", convert)
    assert export_cli.main(["single", "--run", str(tmp_path / "run"),
                            "--output", str(bad / "x.tflite")]) == 2
    _one_error_line(capsys, "tfislr-export", f"{bad}: cannot write here")
    assert evaluate_cli.main([str(tmp_path / "none.tflite"), "--data-dir", str(synthetic_data_dir),
                          "--limit", "5", "--json-out", str(bad / "e.json")]) == 2
    _one_error_line(capsys, "tfislr-evaluate", f"{bad}: cannot write here")
    assert evaluate_cli.main([str(tmp_path / "none.tflite"), "--data-dir", str(synthetic_data_dir),
                          "--json-out", str(tmp_path)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", f"{tmp_path}: is a folder, not a file to write")
    for option in ("--out", "--json-out"):
        assert blend_cli.main([str(tmp_path / "none.parquet"), option, str(bad / "b")]) == 2
        _one_error_line(capsys, "tfislr-blend", f"{bad}: cannot write here")


def _tflite(path, function, *specs):
    """Writes a TFLite file of `function` (a tf.function of `specs`) to `path`."""
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(function, input_signature=list(specs))
    saved = path.with_suffix(".savedmodel")
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.f})
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return path


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory):
    """Valid .tflite files that are not tfislr exports, and one that returns NaN."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("foreign")
    raw = tf.TensorSpec([None, 543, 3], tf.float32, name="inputs")

    def other_output(inputs):
        return {"logits": tf.reduce_sum(inputs, [0, 1])}

    def other_input(x):
        return {"outputs": tf.reduce_sum(x, 0)}

    def nan(inputs):
        return {"outputs": tf.fill([6], float("nan")) + tf.reduce_sum(inputs) * 0.0}

    return {
        "no output 'outputs'": _tflite(folder / "logits.tflite", other_output, raw),
        "input 'inputs' as float32 [-1, 4], not float32 [-1, 543, 3]": _tflite(
            folder / "vector.tflite", other_input, tf.TensorSpec([None, 4], tf.float32, name="inputs")),
        "nan": _tflite(folder / "nan.tflite", nan, raw),
    }


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_tflite_that_is_not_a_tfislr_export_is_one_line(command, foreign_models, capsys,
                                                         synthetic_data_dir):
    """Every TFLite-reading command names what a foreign file lacks (exit 2, no traceback),
    and reports a model that returns NaN as such instead of printing `nan` scores."""
    clip = next(pathlib.Path(synthetic_data_dir).rglob("*.parquet"))
    for lack, model in foreign_models.items():
        if command == "predict":
            code = predict_cli.main([str(model), str(clip)])
        else:
            code = evaluate_cli.main([str(model), "--data-dir", str(synthetic_data_dir), "--limit", "2"])
        assert code == 2, lack
        if lack == "nan":
            err = capsys.readouterr().err
            assert "returned non-finite probabilities (NaN or inf)" in err and "nan " not in err
        else:
            _one_error_line(capsys, f"tfislr-{command}", model, "not a tfislr export", lack)


def test_predict_and_evaluate_refuse_a_sign_map_the_model_was_not_exported_with(
        tmp_path, capsys, synthetic_data_dir, foreign_models):
    """One rule (`tfislr.export.pair.check_signs`) for both commands: names in another order
    than the export report's would relabel the classes."""
    import json

    from tfislr.data.kaggle import read_sign_map
    from tfislr.export.pair import sha256_of

    sign_map = read_sign_map(synthetic_data_dir)
    signs = sorted(sign_map, key=sign_map.get)
    model = tmp_path / "model.tflite"  # 6 classes, NaN: the rule applies before any clip
    model.write_bytes(foreign_models["nan"].read_bytes())
    model.with_suffix(".json").write_text(json.dumps(
        {"signs": signs[::-1], "sha256": sha256_of(model)}))
    clip = next(pathlib.Path(synthetic_data_dir).rglob("*.parquet"))
    for signs_option in (synthetic_data_dir, synthetic_data_dir / "sign_to_prediction_index_map.json"):
        assert predict_cli.main([str(model), str(clip), "--signs", str(signs_option)]) == 2
        _one_error_line(capsys, "tfislr-predict", "does not match the signs", f"label 0 is {signs[0]!r}")
    assert evaluate_cli.main([str(model), "--data-dir", str(synthetic_data_dir)]) == 2
    _one_error_line(capsys, "tfislr-evaluate", "does not match the signs", f"label 0 is {signs[0]!r}")


def test_export_refuses_weights_of_another_config_and_reads_a_relative_path_from_here(
        capsys, tmp_path, monkeypatch):
    """`export single --weights PATH` checks the weights against the run exported (max_len,
    dims, classes: a len80 student behind the demo run's 25-frame preprocessing is refused),
    and a relative PATH is read from the current directory, as every other path."""
    from tfislr.config import load_config
    from tfislr.runs.members import check_weights_match_run
    from tfislr.model import build_classifier
    from tfislr.runs.run_dir import RunDir

    config = load_config("demo")
    run = RunDir(tmp_path / "run")
    run.write_config(config)
    run.write_signs(["a", "b"])
    run.mark_finished()
    monkeypatch.chdir(tmp_path)
    other = build_classifier(config.model, 2, 80)  # demo dims, len80's max_len
    other.save(tmp_path / "len80.keras")
    assert export_cli.main(["single", "--run", str(run.path), "--weights", "len80.keras",
                            "--output", str(tmp_path / "m.tflite")]) == 2
    _one_error_line(capsys, "tfislr-export", "len80.keras: trained with another config",
                    "data.max_len 80 vs 25")
    assert not (tmp_path / "m.tflite").exists()
    distilled = build_classifier(config.model, 2, config.data.max_len, distilled=True)
    check_weights_match_run(distilled, config, ["a", "b"], "d.keras", run.path)  # passes
    with pytest.raises(errors.DataError, match="classes 2 vs 3"):
        check_weights_match_run(distilled, config, ["a", "b", "c"], "d.keras", run.path)
    wide = build_classifier(load_config("demo", ["model.dense_dim=32"]).model, 2, 25)
    with pytest.raises(errors.DataError, match=r"dense/transfo dims \[32, 128\]"):
        check_weights_match_run(wide, config, ["a", "b"], "d.keras", run.path)


def _range_error_cases(tmp):
    """(main, argv, option) for each value out of a command option's range or choices."""
    from tfislr.cli import stream as stream_cli
    from tfislr.cli import synthetic as synthetic_cli

    model, clip = str(tmp / "m.tflite"), str(tmp / "c.parquet")
    return [
        (train_cli.main, ["--config", "demo", "--data-dir", str(tmp), "--fold", "7"], "--fold"),
        (evaluate_cli.main, [model, "--data-dir", str(tmp), "--num-folds", "1"], "--num-folds"),
        (evaluate_cli.main, [model, "--data-dir", str(tmp), "--num-folds", "0"], "--num-folds"),
        (stream_cli.main, [model, clip, "--gap-frames", "0"], "--gap-frames"),
        (stream_cli.main, [model, clip, "--signing-space", "0"], "--signing-space"),
        (stream_cli.main, [model, clip, "--min-frames", "9", "--max-frames", "3"], "--min-frames"),
        (stream_cli.main, [model, clip, "--fps", "0"], "--fps"),
        (blend_cli.main, [clip, clip, "--weights", "1"], "--weights"),
        (blend_cli.main, [clip, clip, "--weights", "0", "0"], "--weights"),
        (blend_cli.main, [clip, "--weights", "nan"], "--weights"),
        (synthetic_cli.main, ["--out", str(tmp / "s"), "--signs", "300"], "--signs"),
        (synthetic_cli.main, ["--out", str(tmp / "s"), "--seed", "-1"], "--seed"),
        (synthetic_cli.main, ["--out", str(tmp / "s"), "--participants", "0"], "--participants"),
    ]


def test_a_value_out_of_range_names_its_option(capsys, tmp_path):
    """`--fold 7` said "fold must be ..."; a user typed --fold: every range error of a
    command names the option as typed (argparse's own do: "argument --x: ...")."""
    for main, argv, option in _range_error_cases(tmp_path):
        try:
            code = main(argv)
        except SystemExit as exited:  # argparse's usage errors pass through the contract
            code = exited.code
        assert code == 2, argv
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error: " in last and option in last, (argv, last)
