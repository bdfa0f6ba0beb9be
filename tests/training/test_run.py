"""tfislr.training.run: the run directory, resume, multi-worker, real data."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfislr.config import config_from_dict, load_config
from tfislr.runs import run_dir as run_dir_lib
from tfislr.runs.run_dir import RunDir

from subprocess_runs import (
    TINY, backed_up_epoch, env, free_ports, h5_floats, history_epochs, run_until_killed,
    train_command, weights_files,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------- one run in-process
_TRAIN_ITERATORS = []  # element specs of the training iterators tiny_run's fit created


@pytest.fixture(scope="module")
def tiny_run(synthetic_data_dir, tmp_path_factory):
    """One complete 3-epoch run with the stand-in classifier (fast), soup of the last 2."""
    import tensorflow as tf

    from tiny_models import build_tiny
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
    # run.json's runtime: the config's section, and what its strategy gave on this machine.
    assert json.loads((run_dir / "run.json").read_text())["runtime"] == {
        "strategy": "default", "precision": "float32", "jit_compile": False,
        "strategy_class": "_DefaultDistributionStrategy", "replicas": 1}
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

    import tiny_models  # noqa: F401  (registers the stand-in for load_model)

    _, run_dir = tiny_run
    checkpoints = sorted((run_dir / "checkpoints").iterdir())
    for name in ("student", "teacher", "distilled"):
        model = keras.saving.load_model(run_dir / "models" / f"{name}_soup.keras")
        saved = [h5_floats(path, f"{name}/") for path in checkpoints]
        model.save_weights(run_dir / f"{name}.check.weights.h5")
        loaded = h5_floats(run_dir / f"{name}.check.weights.h5", "")
        assert set(loaded) == set(saved[0]) and loaded
        for key, value in loaded.items():
            np.testing.assert_allclose(value, (saved[0][key] + saved[1][key]) / 2, rtol=1e-5, atol=1e-6)
        (run_dir / f"{name}.check.weights.h5").unlink()


def test_a_request_builds_the_configs_strategy_unless_the_caller_names_one(
        synthetic_data_dir, tmp_path, monkeypatch):
    """`train(config, ...)` builds `config.runtime.strategy`; a name given to `train` (the
    Python spelling of --strategy) replaces it in the config the run records, a
    `tf.distribute.Strategy` is used as it is."""
    import types

    from tfislr.training import strategy as strategy_lib
    from tfislr.training.request import RunRequest

    built = []

    def get_strategy(name):  # cpu:N must split the devices at process start: a stand-in
        built.append(name)
        return name if not isinstance(name, str) else types.SimpleNamespace(
            num_replicas_in_sync=1)

    monkeypatch.setattr(strategy_lib, "get_strategy", get_strategy)
    config = load_config("demo", TINY + ["runtime.strategy=cpu:2"])
    output = tmp_path / "runs"
    assert RunRequest(config, synthetic_data_dir, output).validate().config == config
    named = RunRequest(config, synthetic_data_dir, output, strategy="mirrored").validate()
    assert named.config.runtime.strategy == "mirrored" and named.config.train == config.train
    typed = RunRequest(config, synthetic_data_dir, output, strategy=" Mirrored").validate()
    assert typed.config.runtime.strategy == "mirrored"  # as config.json records it
    own = types.SimpleNamespace(num_replicas_in_sync=1)
    given = RunRequest(config, synthetic_data_dir, output, strategy=own).validate()
    assert given.strategy is own and given.config == config
    assert built == ["cpu:2", "mirrored", "mirrored", own]


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


@pytest.mark.large  # a second training (tiny_run is the quick one)
def test_full_fit_trains_on_everything_without_validation(synthetic_data_dir, tmp_path):
    from tiny_models import build_tiny
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


@pytest.mark.large  # a training and its resume
def test_a_crash_after_the_soup_models_is_finished_by_resume(synthetic_data_dir, tmp_path,
                                                             monkeypatch):
    """Killed between the soup models and metrics.json: unfinished for export and resume
    alike; resuming skips the fit and finishes with the same numbers."""
    from tiny_models import build_tiny
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
@pytest.mark.large
@pytest.mark.timeout(2700)  # three 3-epoch runs: killed, resumed, uninterrupted
def test_killed_run_resumes_and_finishes(synthetic_data_dir, tmp_path):
    _killed_run_resumes_bitwise(synthetic_data_dir, tmp_path, [])


@pytest.mark.large
@pytest.mark.timeout(2700)
def test_killed_run_resumes_bitwise_with_augmentation_on_the_accelerator(synthetic_data_dir,
                                                                         tmp_path):
    _killed_run_resumes_bitwise(synthetic_data_dir, tmp_path, ["augment.device=accelerator"])


def _killed_run_resumes_bitwise(synthetic_data_dir, tmp_path, overrides):
    """Killed in its last epoch, resumed: bitwise the run that was never interrupted."""
    from tfislr.data.prepare import ensure_store

    runs = tmp_path / "runs"
    run_dir = runs / "demo" / "20260101-000000"
    prepared = tmp_path / "prepared"
    options = ["--config", "demo", "--data-dir", synthetic_data_dir, "--epochs", 3, "--verbose", 2,
               *sum((["--set", s] for s in TINY + [f"data.prepared_dir={prepared}", *overrides]),
                    [])]
    # The store first, so that the runs below only read it: the uninterrupted run (the
    # reference at the end) trains alongside the killed and the resumed one, on the
    # second core (most of each run is single-threaded graph tracing).
    ensure_store(synthetic_data_dir, load_config("demo").data.max_len, prepared, num_workers=1,
                 progress=False)
    # Outside `runs`: `--resume` below must find the killed run as the latest unfinished one.
    straight_dir = tmp_path / "straight" / "20260101-000001"
    straight_log = tmp_path / "straight.log"  # a file: a full pipe would stall the run
    with straight_log.open("w") as log:
        straight = subprocess.Popen(train_command(*options, "--run-dir", straight_dir), cwd=REPO,
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
    compared = weights_files(run_dir)
    assert sorted(compared) == sorted(weights_files(straight_dir))
    assert len(compared) == 2 + 3  # checkpoints of epochs 2 and 3, three soup models
    for name, resumed_weights in compared.items():
        expected = weights_files(straight_dir)[name]
        assert sorted(resumed_weights) == sorted(expected) and resumed_weights, name
        for key, value in expected.items():
            np.testing.assert_array_equal(resumed_weights[key], value, err_msg=f"{name}: {key}")


def _kill_and_resume(options, runs, run_dir):
    """Runs the CLI with `options` into `run_dir`, kills it in its last epoch, resumes it."""
    command = train_command(*options, "--run-dir", run_dir)
    # Kill once epoch 1 (0-based) is backed up, i.e. during epoch 2.
    run_until_killed(command, lambda: (backed_up_epoch(run_dir) or 0) >= 1, timeout=600)
    assert not (run_dir / "metrics.json").exists()
    killed_at = history_epochs(run_dir)
    assert killed_at in ([1], [1, 2])

    # What a user reruns: the same command with --resume finds the unfinished run.
    resume_command = train_command(*options, "--resume", "--output", runs)
    resumed = subprocess.run(resume_command, cwd=REPO, env=env(), capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and str(run_dir) in resumed.stderr
    assert (run_dir / "metrics.json").exists()
    epochs = history_epochs(run_dir)
    assert epochs == [1, 2, 3]  # each epoch once, also the one redone
    # The wall time counts the killed session too, up to its last completed epoch.
    sessions = RunDir(run_dir).read_sessions()
    assert len(sessions) == 2 and sessions[0]["last_epoch"] >= 1
    assert json.loads((run_dir / "metrics.json").read_text())["wall_seconds"] == round(
        sum(s["seconds"] for s in sessions), 1)
    # The optimizer state came back: the lr schedule ended exactly at 0 after 3 epochs.
    assert pd.read_csv(run_dir / "history.csv")["learning_rate"].iloc[-1] == 0.0
    assert "Epoch 1/3" not in resumed.stdout


@pytest.mark.large
def test_two_process_multi_worker_run_completes_one_epoch(synthetic_data_dir, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    run_dir = tmp_path / "run"
    overrides = TINY + ["train.batch_group_size=4", f"data.prepared_dir={tmp_path / 'prepared'}"]
    command = train_command(
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
    assert run["runtime"] == {"strategy": "multi_worker", "precision": "float32",
                              "jit_compile": False, "strategy_class": run["strategy"],
                              "replicas": 2}
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["strategy"] == "multi_worker"
    assert history_epochs(run_dir) == [1]
    assert (run_dir / "models" / "distilled_soup.keras").exists()
    assert (run_dir / "plots" / "confusion_matrix.png").exists()  # on any replica count
    assert not (run_dir / "worker_1").exists()  # the non-chief's files are cleaned up


@pytest.mark.extra_large  # CI reads the real sample in test_kaggle and scores it in test_evaluate
def test_len80_trains_on_the_real_sample(real_data_dir, tmp_path):
    result = subprocess.run(
        train_command("--config", "len80", "--data-dir", real_data_dir, "--epochs", 1, "--output", tmp_path / "runs",
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
