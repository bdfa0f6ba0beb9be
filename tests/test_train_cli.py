"""train.py and tfislr.training.run: run directory, resume, NaN stop, multi-worker, real data."""

import importlib.util
import json
import pathlib
import socket
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from tfislr.cli import cv as cv_cli
from tfislr.config import config_from_dict, load_config
from tfislr.training.callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from tfislr.runs import run_dir as run_dir_lib
from tfislr.runs.run_dir import RunDir
from subprocess_runs import backed_up_epoch, env, run_until_killed

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train_cli", REPO / "train.py")
train_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_cli)
# Tiny but complete: every part of the recipe runs (augmentations, mixup, OUSM, soup).
# One DeBERTa layer: what these runs check (resume, run dir, workers) does not depend on
# the depth, and each layer adds ~8 s of graph tracing to a run (3-epoch CLI run: 66 s
# CPU with 3 layers, 49 s with 1). test_notebook trains the three-layer stack.
TINY = [
    "data.global_batch_size=8", "train.batch_group_size=8", "model.dense_dim=16", "model.transfo_dim=32",
    "model.distill_dense_dim=16", "model.distill_transfo_dim=32", "model.num_heads=4",
    "model.transfo_layers=1", "train.soup_last_n=2", "train.mix_proba=1.0",
]


def _cli(*args):
    return [sys.executable, str(REPO / "train.py"), *map(str, args)]


# ----------------------------------------------------------------------------- CLI errors
def test_cli_reports_a_bad_config_cleanly(capsys, tmp_path):
    assert train_cli.main(["--config", "nope", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no config 'nope'" in err and "len80" in err
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), "--set", "train.epochz=3"]) == 2
    assert "epochz" in capsys.readouterr().err


def test_cli_names_the_bad_set_option_or_the_ensemble_file(capsys, tmp_path):
    from tfislr.config import CONFIGS_DIR

    def error_line():
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), "--set", "train.seed=1",
                           "--set", "train.epochs=many"]) == 2
    assert error_line().startswith("tfislr-train: error: --set train.epochs=many (on demo.yaml): "
                                   "config key 'train.epochs' expects an integer")
    for ensemble in ("ensemble", str(CONFIGS_DIR / "demo_ensemble.yaml")):
        assert train_cli.main(["--config", ensemble, "--data-dir", str(tmp_path)]) == 2
        line = error_line()
        assert line.startswith("tfislr-train: error: ") and "ensemble.yaml: an ensemble file" in line
        assert line.endswith("training configs: demo, len25, len80")
    # --epochs N replaces train.epochs, but a bad --set value is still refused (tester8 #1).
    for argv in (["--set", "train.epochs=abc", "--epochs", "1"],
                 ["--epochs", "1", "--set", "train.epochs=abc"]):
        assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path), *argv]) == 2
        assert error_line().startswith("tfislr-train: error: --set train.epochs=abc (on demo.yaml): "
                                       "config key 'train.epochs' expects an integer")
    with pytest.raises(SystemExit) as excinfo:  # --epochs is checked as the option it is
        train_cli.parse_args(["--config", "demo", "--data-dir", str(tmp_path), "--epochs", "0"])
    assert excinfo.value.code == 2
    assert "--epochs: expected a positive integer, got '0'" in capsys.readouterr().err


def test_cli_rejects_fold_and_full_together(tmp_path):
    with pytest.raises(SystemExit) as excinfo:
        train_cli.parse_args(["--config", "demo", "--data-dir", str(tmp_path), "--fold", "1", "--full"])
    assert excinfo.value.code == 2


def test_cli_needs_a_kaggle_layout(capsys, tmp_path):
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "data folder not found (expected the Kaggle layout)" in capsys.readouterr().err


def test_settings_errors_come_before_the_store_is_prepared(synthetic_data_dir, tmp_path,
                                                           monkeypatch, capsys):
    """A bad batch split or fold needs no data: train, CV and the CLI (also with
    --force-prepare) refuse it before a store, run dir or CV dir exists (on the full data
    preparing takes tens of minutes)."""
    import types

    from tfislr.data import prepare
    from tfislr.training import cross_validation, run, strategy

    three_replicas = types.SimpleNamespace(num_replicas_in_sync=3)  # as cpu:3 would give
    real_get_strategy = strategy.get_strategy

    def get_strategy(name):  # cpu:N must split the devices at process start: a stand-in
        return three_replicas if name in (three_replicas, "cpu:3") else real_get_strategy(name)

    monkeypatch.setattr(prepare, "default_num_workers", lambda: 1)  # (the old code prepared)
    prepared, output = tmp_path / "p", tmp_path / "runs"
    demo = ["train.batch_group_size=16", f"data.prepared_dir={prepared}"]
    config = load_config("demo", demo)
    cases = [
        (lambda: run.train(config, synthetic_data_dir, output, strategy=three_replicas),
         "data.global_batch_size (32) does not divide by the 3 replicas"),
        (lambda: run.train(config, synthetic_data_dir, output, fold=4),
         "fold must be an int in [0, 4), got 4"),
        (lambda: cross_validation.cross_validate(config, synthetic_data_dir, output,
                                                 strategy=three_replicas),
         "does not divide by the 3 replicas"),
    ]
    for call, message in cases:
        with monkeypatch.context() as patch:
            patch.setattr(strategy, "get_strategy", get_strategy)  # what RunRequest uses
            with pytest.raises(ValueError) as error:
                call()
        assert message in str(error.value)
        assert not prepared.exists() and not output.exists()
    argv = ["--config", "demo", "--data-dir", str(synthetic_data_dir), "--output", str(output),
            "--force-prepare", *sum((["--set", s] for s in demo), [])]
    for extra, name, message in [([], "cpu:3", "does not divide by the 3 replicas"),
                                 (["--cv"], "cpu:3", "does not divide by the 3 replicas"),
                                 (["--fold", "4"], "default", "--fold must be an int in [0, 4)")]:
        with monkeypatch.context() as patch:
            patch.setattr(strategy, "get_strategy", get_strategy)
            assert train_cli.main([*argv, *extra, "--strategy", name]) == 2
        assert message in capsys.readouterr().err
        assert not prepared.exists() and not output.exists()


def test_nan_loss_stops_naming_epoch_and_step():
    callback = StopOnNonFiniteLoss(steps_per_epoch=10)

    class Model:
        stop_training = False

    callback.set_model(Model())
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(3, {"loss": 1.5})
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 5 of 10 \(global step 25\)"):
        callback.on_train_batch_end(4, {"loss": float("nan"), "student_loss": 1.0})


def test_cli_turns_a_nan_stop_into_a_user_error(monkeypatch, capsys, tmp_path,
                                                synthetic_data_dir):
    import tfislr.training.run as run

    def explode(*args, **kwargs):
        raise NonFiniteLossError("training loss is not finite at epoch 2, step 3")

    monkeypatch.setattr(run.TrainingRun, "run", explode)
    # The error contract (tfislr/errors.py): a clean stop the config can fix is exit code 2.
    assert train_cli.main(["--config", "demo", "--data-dir", str(synthetic_data_dir),
                           "--output", str(tmp_path / "runs")]) == 2
    assert "epoch 2, step 3" in capsys.readouterr().err


# ----------------------------------------------------------------------- one run in-process
def _h5_floats(path, prefix):
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith(prefix) and obj.dtype.kind == "f":
                found[name[len(prefix):]] = obj[()]
        f.visititems(visit)
    return found


_TRAIN_ITERATORS = []  # element specs of the training iterators tiny_run's fit created


@pytest.fixture(scope="module")
def tiny_run(synthetic_data_dir, tmp_path_factory):
    """One complete 3-epoch run with the stand-in classifier (fast), soup of the last 2."""
    import tensorflow as tf

    from test_mean_teacher import build_tiny
    from tfislr.training.run import train

    root = tmp_path_factory.mktemp("runs")
    config = load_config("demo", TINY + ["train.epochs=3", f"data.prepared_dir={root / 'prepared'}"])
    iterate = tf.data.Dataset.__iter__

    def counting(dataset):
        if "student" in dataset.element_spec[0]:  # the training views, not validation
            _TRAIN_ITERATORS.append(dataset.element_spec)
        return iterate(dataset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.data.Dataset, "__iter__", counting)
        run_dir = train(config, synthetic_data_dir, output_dir=root, verbose=0,
                        build_model=build_tiny)
    return config, run_dir


def test_one_training_iterator_runs_every_epoch(tiny_run):
    # A new iterator per epoch restarted the whole pipeline: seconds at each epoch's start.
    assert len(_TRAIN_ITERATORS) == 1


def test_run_dir_holds_everything(tiny_run, synthetic_data_dir):
    config, run_dir = tiny_run
    assert run_dir.parent.parent.name == "runs" or run_dir.parent.name == "demo"
    for name in ("config.json", "signs.json", "run.json", "history.csv", "sessions.json",
                 "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert config_from_dict(json.loads((run_dir / "config.json").read_text())) == config
    sign_map = json.loads((synthetic_data_dir / "sign_to_prediction_index_map.json").read_text())
    signs = json.loads((run_dir / "signs.json").read_text())
    assert signs == sorted(sign_map, key=sign_map.get)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]  # as checkpoints and logs count
    for column in ("loss", "val_student_accuracy", "val_teacher_accuracy", "val_distilled_accuracy",
                   "learning_rate", "epoch_seconds"):
        assert column in history and np.isfinite(history[column]).all(), column
    assert history["learning_rate"].iloc[-1] == 0.0  # the schedule ran to its end
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["epoch_002.weights.h5", "epoch_003.weights.h5"]
    assert not (run_dir / "backup").exists()  # removed once the run finished
    events = list((run_dir / "tb" / "train").glob("events.out.tfevents.*"))
    assert events and list((run_dir / "tb" / "validation").glob("events.out.tfevents.*"))


def test_validation_signers_are_the_ones_evaluate_scores(tiny_run, synthetic_data_dir):
    from tfislr.evaluate import select_sequences

    config, run_dir = tiny_run
    run_info = json.loads((run_dir / "run.json").read_text())
    held_out = select_sequences(synthetic_data_dir, fold=0, num_folds=config.data.num_folds,
                                fold_seed=config.data.fold_seed)
    assert run_info["val_participants"] == sorted(held_out["participant_id"].unique().tolist())
    assert (run_info["num_folds"], run_info["fold_seed"]) == (config.data.num_folds,
                                                              config.data.fold_seed)
    assert run_info["fold_scheme"] == "stratified"
    assert run_info["num_val"] == len(held_out)


def test_the_split_says_and_records_which_folds_decided_it(synthetic_store, synthetic_data_dir,
                                                          capsys):
    from tfislr.training.run import _split

    config = load_config("demo")
    signers = sorted(pd.read_csv(synthetic_data_dir / "train.csv")["participant_id"].unique())
    _, _, split = _split(synthetic_store, config, 1, False, synthetic_data_dir)
    assert split["fold_scheme"] == "stratified"  # run.json's record (tiny_run checks it is)
    assert capsys.readouterr().out == (
        "[tfislr] validation fold 1: folds: computed signer-grouped, sign-stratified folds "
        f"(StratifiedGroupKFold, 4 folds, seed {config.data.fold_seed}), as 6 participants "
        f"({', '.join(map(str, signers[:3]))}, ...) are not among the competition's 21\n")
    assert _split(synthetic_store, config, None, True, synthetic_data_dir)[2]["fold_scheme"] is None


def test_tensorboard_events_hold_the_epoch_scalars(tiny_run):
    import tensorflow as tf

    _, run_dir = tiny_run
    tags = {}
    for path in (run_dir / "tb" / "validation").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert sorted(tags["epoch_distilled_accuracy"]) == [1, 2, 3]  # as history.csv


def test_metrics_compare_soup_and_last_epoch(tiny_run):
    _, run_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["soup_epochs"] == [2, 3]
    history = pd.read_csv(run_dir / "history.csv")
    for name in ("student", "teacher", "distilled"):
        values = metrics["models"][name]
        assert 0.0 <= values["soup_accuracy"] <= 1.0
        # The last-epoch accuracy is the one validation measured at the last epoch.
        assert values["last_epoch_accuracy"] == pytest.approx(
            history[f"val_{name}_accuracy"].iloc[-1], abs=1e-6)
    assert metrics["run"]["num_classes"] == len(json.loads((run_dir / "signs.json").read_text()))


def test_soup_models_load_and_equal_the_checkpoint_mean(tiny_run):
    import keras

    import test_mean_teacher  # noqa: F401  (registers the stand-in for load_model)

    _, run_dir = tiny_run
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    for name in ("student", "teacher", "distilled"):
        model = keras.saving.load_model(run_dir / "models" / f"{name}_soup.keras")
        saved = [_h5_floats(path, f"{name}/") for path in checkpoints]
        model.save_weights(run_dir / f"{name}.check.weights.h5")
        loaded = _h5_floats(run_dir / f"{name}.check.weights.h5", "")
        assert set(loaded) == set(saved[0]) and loaded
        for key, value in loaded.items():
            np.testing.assert_allclose(value, (saved[0][key] + saved[1][key]) / 2, rtol=1e-5, atol=1e-6)
        (run_dir / f"{name}.check.weights.h5").unlink()


def test_finished_run_dir_is_not_reused_and_configs_must_match(tiny_run, synthetic_data_dir):
    from tfislr.training.run import train

    config, run_dir = tiny_run
    with pytest.raises(ValueError, match="finished run"):
        train(config, synthetic_data_dir, run_dir=run_dir)
    other = run_dir.parent / "unfinished"
    other.mkdir()
    config.to_json(other / "config.json")
    changed = load_config("demo", TINY + ["train.epochs=4", f"data.prepared_dir={config.data.prepared_dir}"])
    with pytest.raises(ValueError, match="train.epochs"):
        train(changed, synthetic_data_dir, run_dir=other)


def test_full_fit_trains_on_everything_without_validation(synthetic_data_dir, tmp_path):
    from test_mean_teacher import build_tiny
    from tfislr.training.run import train

    config = load_config("demo", TINY + ["train.epochs=1", f"data.prepared_dir={tmp_path / 'prepared'}"])
    run_dir = train(config, synthetic_data_dir, output_dir=tmp_path / "runs", full=True,
                    verbose=0, build_model=build_tiny)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    total = len(pd.read_csv(synthetic_data_dir / "train.csv"))
    assert metrics["run"]["full"] and metrics["run"]["num_train"] == total
    assert metrics["run"]["num_val"] == 0 and metrics["run"]["fold"] is None
    assert all(v["soup_accuracy"] is None for v in metrics["models"].values())
    assert (run_dir / "models" / "distilled_soup.keras").exists()
    assert "val_student_accuracy" not in pd.read_csv(run_dir / "history.csv")
    # The submission run keeps its training curves (issue 9.5).
    assert (run_dir / "plots" / "training_curves.png").stat().st_size > 5000
    assert (run_dir / "finished.json").exists()


def test_a_crash_after_the_soup_models_is_finished_by_resume(synthetic_data_dir, tmp_path,
                                                             monkeypatch):
    """Killed between the soup models and metrics.json: unfinished for export and resume
    alike; resuming skips the fit and finishes with the same numbers."""
    from test_mean_teacher import build_tiny
    from tfislr.export import latest_run
    from tfislr.training import run as run_lib

    config = load_config("demo", TINY + ["train.epochs=1", "train.soup_last_n=1",
                                         f"data.prepared_dir={tmp_path / 'prepared'}"])
    run_dir = tmp_path / "runs" / "demo" / "20260101-000000"
    written = {}

    def crash(self, metrics):
        written.update(metrics)
        raise KeyboardInterrupt  # the kill, right after the soup models were saved

    with monkeypatch.context() as patch:
        patch.setattr(RunDir, "write_metrics", crash)
        with pytest.raises(KeyboardInterrupt):
            run_lib.train(config, synthetic_data_dir, run_dir=run_dir, verbose=0,
                          build_model=build_tiny)
    assert (run_dir / "models" / "distilled_soup.keras").exists()
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "finished.json").exists()
    assert run_lib.latest_unfinished_run(tmp_path / "runs", "demo") == run_dir
    with pytest.raises(ValueError, match="no finished run"):
        latest_run("demo", tmp_path / "runs")

    def no_fit(*args, **kwargs):
        raise AssertionError("a trained run must not be fitted again")

    monkeypatch.setattr(run_lib.TrainingRun, "_fit", no_fit)
    assert run_lib.train(config, synthetic_data_dir, run_dir=run_dir, verbose=0,
                         build_model=build_tiny) == run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["models"] == written["models"] and metrics["soup_epochs"] == [1]
    # The wall time is both sessions' (it was the last one's): the first up to the kill.
    sessions = RunDir(run_dir).read_sessions()
    assert [s["last_epoch"] for s in sessions] == [1, None]
    assert sessions[0]["seconds"] >= written["wall_seconds"] and sessions[1]["seconds"] > 0
    assert metrics["wall_seconds"] == round(sum(s["seconds"] for s in sessions), 1)
    assert metrics["sessions"] == 2
    finished = json.loads((run_dir / "finished.json").read_text())
    assert (finished["wall_seconds"], finished["sessions"]) == (metrics["wall_seconds"], 2)
    # A fold-0 run: finished, but export takes it only when named (full fits by name).
    assert run_dir_lib.latest_finished(tmp_path / "runs", "demo").path == run_dir
    assert run_lib.latest_unfinished_run(tmp_path / "runs", "demo") is None


def test_force_prepare_rebuilds_the_store_and_the_default_reuses_it(tmp_path, monkeypatch, capsys):
    """`--force-prepare` (tfislr-train and tfislr-cv) rebuilds a store that matches the data,
    as `tfislr-prepare --force` does; without it the store is left for the run to reuse."""
    from tfislr.cli import train as cli
    from tfislr.cli.run_options import run_request
    from tfislr.data import prepare, synthetic

    data = synthetic.write_synthetic_dataset(tmp_path / "data", num_signs=3, num_participants=2,
                                             sequences_per_sign=4, seed=7)
    max_len = load_config("demo").data.max_len
    path = prepare.ensure_store(data, max_len, tmp_path / "p", num_workers=1, progress=False)
    monkeypatch.setattr(prepare, "default_num_workers", lambda: 1)  # no worker start-up
    argv = ["--config", "demo", "--data-dir", str(data),
            "--set", f"data.prepared_dir={tmp_path / 'p'}"]
    built = prepare.build_stamp(path)
    run_request(cli.parse_args(argv), "tfislr-train")
    assert prepare.ensure_store(data, max_len, tmp_path / "p") == path  # what the run calls
    assert prepare.build_stamp(path) == built
    assert f"reusing the prepared store {path}" in capsys.readouterr().err
    for parse_args in (cli.parse_args, cv_cli.parse_args):
        run_request(parse_args([*argv, "--force-prepare"]), "tfislr-train")
        assert prepare.build_stamp(path) != built
        built = prepare.build_stamp(path)
        err = capsys.readouterr().err
        assert "reusing" not in err and "prepared 12 of 12 sequences" in err, err


def test_train_and_cv_start_up_parse_train_csv_once(tmp_path, monkeypatch):
    """Preparing the store, its fingerprint, the folds and each fold's split all read
    train.csv: it is parsed once, however many folds start (`kaggle.read_train_csv`)."""
    from tfislr.data import kaggle, prepare, synthetic
    from tfislr.training import run

    data = synthetic.write_synthetic_dataset(tmp_path / "data", num_signs=3, num_participants=4,
                                             sequences_per_sign=4, seed=7)
    config = load_config("demo", [f"data.prepared_dir={tmp_path / 'p'}", "data.num_folds=2",
                                  "data.original_folds=false"])
    monkeypatch.setattr(prepare, "default_num_workers", lambda: 1)  # no worker start-up
    monkeypatch.setattr(kaggle, "_PARSED", {})  # nothing parsed before in this process
    parsed = []
    parse = kaggle._parse_train_csv
    monkeypatch.setattr(kaggle, "_parse_train_csv", lambda *a: parsed.append(a[0]) or parse(*a))
    first = run._load_and_split(config, data, 0, False)  # builds the store
    second = run._load_and_split(config, data, 1, False)  # as the next CV fold: reuses it
    assert parsed == [data / kaggle.TRAIN_CSV]
    assert set(first.val_idx) == set(second.train_idx) and len(first.val_idx) > 0
    # A changed train.csv is parsed again (the table follows the bytes, never a stale one).
    table = kaggle.read_train_csv(data).iloc[::-1]
    table.drop(columns="label").to_csv(data / kaggle.TRAIN_CSV, index=False)
    assert kaggle.read_train_csv(data)["sequence_id"].tolist() == table["sequence_id"].tolist()
    assert len(parsed) == 2


# ------------------------------------------------------------------------ subprocess runs
def _history_epochs(run_dir):
    path = run_dir / "history.csv"
    return pd.read_csv(path)["epoch"].tolist() if path.exists() else []


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.timeout(2700)  # three 3-epoch runs: killed, resumed, uninterrupted
def test_killed_run_resumes_and_finishes(synthetic_data_dir, tmp_path):
    from tfislr.data.prepare import ensure_store

    runs = tmp_path / "runs"
    run_dir = runs / "demo" / "20260101-000000"
    prepared = tmp_path / "prepared"
    options = ["--config", "demo", "--data-dir", synthetic_data_dir, "--epochs", 3, "--verbose", 2,
               *sum((["--set", s] for s in TINY + [f"data.prepared_dir={prepared}"]), [])]
    # The store first, so that the runs below only read it: the uninterrupted run (the
    # reference at the end) trains alongside the killed and the resumed one, on the
    # second core (most of each run is single-threaded graph tracing).
    ensure_store(synthetic_data_dir, load_config("demo").data.max_len, prepared, num_workers=1,
                 progress=False)
    # Outside `runs`: `--resume` below must find the killed run as the latest unfinished one.
    straight_dir = tmp_path / "straight" / "20260101-000001"
    straight_log = tmp_path / "straight.log"  # a file: a full pipe would stall the run
    with straight_log.open("w") as log:
        straight = subprocess.Popen(_cli(*options, "--run-dir", straight_dir), cwd=REPO,
                                    env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _kill_and_resume(options, runs, run_dir)
        straight.wait(timeout=900)
    finally:
        if straight.poll() is None:
            straight.kill()
    # Bitwise the uninterrupted run: every random state of the step came back with the
    # weights (a missing one, e.g. the dropout seed generators, moves weights by ~1e-3).
    assert straight.returncode == 0, straight_log.read_text()[-6000:]
    compared = _weights_files(run_dir)
    assert sorted(compared) == sorted(_weights_files(straight_dir))
    assert len(compared) == 2 + 3  # checkpoints of epochs 2 and 3, three soup models
    for name, resumed_weights in compared.items():
        expected = _weights_files(straight_dir)[name]
        assert sorted(resumed_weights) == sorted(expected) and resumed_weights, name
        for key, value in expected.items():
            np.testing.assert_array_equal(resumed_weights[key], value, err_msg=f"{name}: {key}")


def _kill_and_resume(options, runs, run_dir):
    """Runs the CLI with `options` into `run_dir`, kills it in its last epoch, resumes it."""
    command = _cli(*options, "--run-dir", run_dir)
    # Kill once epoch 1 (0-based) is backed up, i.e. during epoch 2.
    run_until_killed(command, lambda: (backed_up_epoch(run_dir) or 0) >= 1, timeout=600)
    assert not (run_dir / "metrics.json").exists()
    killed_at = _history_epochs(run_dir)
    assert killed_at in ([1], [1, 2])

    # What a user reruns: the same command with --resume finds the unfinished run.
    resume_command = _cli(*options, "--resume", "--output", runs)
    resumed = subprocess.run(resume_command, cwd=REPO, env=env(), capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and str(run_dir) in resumed.stderr
    assert (run_dir / "metrics.json").exists()
    epochs = _history_epochs(run_dir)
    assert epochs == [1, 2, 3]  # each epoch once, also the one redone
    # The wall time counts the killed session too, up to its last completed epoch.
    sessions = RunDir(run_dir).read_sessions()
    assert len(sessions) == 2 and sessions[0]["last_epoch"] >= 1
    assert json.loads((run_dir / "metrics.json").read_text())["wall_seconds"] == round(
        sum(s["seconds"] for s in sessions), 1)
    # The optimizer state came back: the lr schedule ended exactly at 0 after 3 epochs.
    assert pd.read_csv(run_dir / "history.csv")["learning_rate"].iloc[-1] == 0.0
    assert "Epoch 1/3" not in resumed.stdout


def _weights_files(run_dir):
    """{relative path: {dataset: array}} of the checkpoints and the soup models of a run."""
    import io
    import zipfile

    found = {}
    for path in sorted((run_dir / "checkpoints").glob("*.weights.h5")):
        found[str(path.relative_to(run_dir))] = _h5_floats(path, "")
    for path in sorted((run_dir / "models").glob("*.keras")):
        with zipfile.ZipFile(path) as archive:
            found[str(path.relative_to(run_dir))] = _h5_floats(
                io.BytesIO(archive.read("model.weights.h5")), "")
    return found


def _free_ports(count):
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.ci
def test_two_process_multi_worker_run_completes_one_epoch(synthetic_data_dir, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    run_dir = tmp_path / "run"
    overrides = TINY + ["train.batch_group_size=4", f"data.prepared_dir={tmp_path / 'prepared'}"]
    command = _cli(
        "--config", "demo", "--data-dir", synthetic_data_dir, "--epochs", 1, "--run-dir", run_dir,
        "--strategy", "multi_worker", "--verbose", 2, *sum((["--set", s] for s in overrides), []),
    )
    processes = []
    for index in range(2):
        worker_env = env()
        worker_env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(command, cwd=REPO, env=worker_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=900)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["batch_plan"]["replicas"] == 2
    assert run["batch_plan"]["per_replica_batch_size"] == 4
    assert run["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")
    assert _history_epochs(run_dir) == [1]
    assert (run_dir / "models" / "distilled_soup.keras").exists()
    assert (run_dir / "plots" / "confusion_matrix.png").exists()  # on any replica count
    assert not (run_dir / "worker_1").exists()  # the non-chief's files are cleaned up


@pytest.mark.slow  # CI reads the real sample in test_kaggle and scores it in test_evaluate
def test_len80_trains_on_the_real_sample(real_data_dir, tmp_path):
    result = subprocess.run(
        _cli("--config", "len80", "--data-dir", real_data_dir, "--epochs", 1, "--output", tmp_path / "runs",
             "--verbose", 2, "--set", "data.global_batch_size=8", "--set", "train.batch_group_size=8",
             "--set", "train.soup_last_n=1",
             "--set", f"data.prepared_dir={tmp_path / 'prepared'}"),
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "len80").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sign_map = json.loads((real_data_dir / "sign_to_prediction_index_map.json").read_text())
    assert metrics["run"]["num_classes"] == len(sign_map) == 250
    for values in metrics["models"].values():
        assert 0.0 <= values["soup_accuracy"] <= 1.0
    # The soup models open with plain Keras once tfislr.model is imported.
    check = subprocess.run(
        [sys.executable, "-c",
         "import sys, keras, tfislr.model; m = keras.saving.load_model(sys.argv[1]); "
         "print(type(m).__name__, m.num_classes)", str(run_dir / "models" / "distilled_soup.keras")],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=600,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.split()[-2:] == ["ISLRClassifier", "250"]


def test_latest_unfinished_run(tmp_path):
    from tfislr.training.run import latest_unfinished_run

    assert latest_unfinished_run(tmp_path, "demo") is None
    for name, finished in (("20260101-000000", False), ("20260102-000000", False),
                           ("20260103-000000", True)):
        (tmp_path / "demo" / name).mkdir(parents=True)
        (tmp_path / "demo" / name / "config.json").write_text("{}")
        if finished:
            (tmp_path / "demo" / name / "finished.json").write_text("{}")
    assert latest_unfinished_run(tmp_path, "demo") == tmp_path / "demo" / "20260102-000000"
