"""The run directory: one rule for "finished", lookups, readers and atomic writes."""

import datetime
import json
import os
import pathlib

import pytest

from tfislr.cli import cv as cv_cli
from tfislr import atomic
from tfislr.config import MODEL_NAMES, load_config
from tfislr.export import latest_run, load_member
from tfislr.runs import run_dir as run_dir_lib
from tfislr.training.run import latest_unfinished_run
from tfislr.runs.run_dir import RunDir

EPOCHS = 3


def _config():
    return load_config("demo", [f"train.epochs={EPOCHS}"])


# Each step adds what training writes next, in the order it writes it. A crash can stop
# the run after any of them; only the last one makes it finished.
def _start(run):
    run.write_config(_config())
    run.write_signs(["a", "b"])
    run.write_run_info({"fold": 0, "full": False, "num_folds": 4, "fold_seed": 42,
                        "original_folds": True, "val_participants": [7, 9]})


def _train_all_epochs(run):
    for epoch in range(1, EPOCHS + 1):
        atomic.write_bytes(run.checkpoint_path(epoch), b"weights")


def _write_models(run):
    for name in MODEL_NAMES:
        atomic.write_bytes(run.model_path(name), b"model")


def _write_metrics(run):
    run.write_metrics({"models": {}})


def _finish(run):
    run.mark_finished()


STEPS = (_start, _train_all_epochs, _write_models, _write_metrics, _finish)


@pytest.mark.parametrize("done", range(1, len(STEPS) + 1))
def test_every_intermediate_state_has_one_answer(tmp_path, done):
    """`--resume` and export agree after every step: unfinished until the marker exists."""
    run = RunDir(tmp_path / "demo" / "20260101-000000")
    for step in STEPS[:done]:
        step(run)
    finished = done == len(STEPS)
    assert run.is_started
    assert run.is_trained(EPOCHS) == (done >= 2) == run.is_trained()
    assert run.is_finished == finished
    # --resume's lookup and export's lookup see the same state.
    assert latest_unfinished_run(tmp_path, "demo") == (None if finished else run.path)
    if finished:
        with pytest.raises(ValueError, match="no finished full-fit run"):  # a fold-0 run
            latest_run("demo", tmp_path)
        assert run_dir_lib.latest_finished(tmp_path, "demo").path == run.path
        with pytest.raises(ValueError, match="finished run"):
            run.check_resumable(_config())
    else:
        with pytest.raises(ValueError, match="no finished run .*--resume"):
            latest_run("demo", tmp_path)
        with pytest.raises(ValueError, match="not a finished run"):
            load_member(run.path)
        assert run.check_resumable(_config()) is True


def test_latest_lookups_pick_the_newest_of_their_kind(tmp_path):
    names = ["20260101-000000", "20260102-000000", "20260102-000000_1", "20260103-000000"]
    runs = [RunDir(tmp_path / "demo" / name) for name in names]
    for run in runs:
        _start(run)
        _write_models(run)
    for run in runs[:2]:
        _finish(run)
    (tmp_path / "demo" / "not-a-run").mkdir()  # no config.json: ignored
    assert run_dir_lib.latest_finished(tmp_path, "demo").path == runs[1].path
    assert run_dir_lib.latest_unfinished(tmp_path, "demo").path == runs[3].path
    # A finished run without the wanted weights file is skipped.
    os.remove(runs[1].model_path("teacher"))
    assert run_dir_lib.latest_finished(tmp_path, "demo", "teacher").path == runs[0].path
    assert run_dir_lib.latest_unfinished(tmp_path, "other") is None
    with pytest.raises(ValueError, match="folder not found \\(no runs of config 'other'\\)"):
        run_dir_lib.latest_finished(tmp_path, "other")


def test_a_config_with_only_a_cross_validation_says_so(tmp_path):
    """runs/<config>/cv/ holds CVs, not a run: the lookup by config name leaves it out and,
    when only CVs are there, says how to get a run (tester8 #3: it listed 'cv' as a run
    and pointed at --resume)."""
    fold = RunDir(tmp_path / "demo" / "cv" / "20260101-000000" / "fold_1")
    for step in STEPS:
        step(fold)
    with pytest.raises(ValueError) as raised:
        run_dir_lib.latest_finished(tmp_path, "demo")
    message = str(raised.value)
    assert "only cross-validations" in message and "--resume" not in message
    assert "--full" in message and f"run: {fold.path}" in message and "['cv']" not in message
    unfinished = RunDir(tmp_path / "demo" / "20260102-000000")
    _start(unfinished)  # a plain run, unfinished: the usual answer, without the CV folder
    with pytest.raises(ValueError, match=r"none of \['20260102-000000'\] has finished.json"):
        run_dir_lib.latest_finished(tmp_path, "demo")
    for step in STEPS[1:]:
        step(unfinished)
    assert run_dir_lib.latest_finished(tmp_path, "demo").path == unfinished.path


@pytest.mark.parametrize("finished", [False, True], ids=["resume", "export"])
@pytest.mark.parametrize("named_first", [True, False], ids=["named_older", "named_newer"])
def test_latest_is_the_run_started_last_whatever_its_name(tmp_path, finished, named_first):
    """A run dir the user named (`--run-dir runs/demo/best`) sorts among the timestamped
    ones by the start run.json records, for `--resume` (unfinished runs) and export
    (finished ones) alike: by name, "best" would always be the newest."""
    named, stamped = RunDir(tmp_path / "demo" / "best"), RunDir(tmp_path / "demo" / "20260101-000000")
    older, newer = (named, stamped) if named_first else (stamped, named)
    for run in (older, newer):
        for step in STEPS if finished else STEPS[:-1]:
            step(run)
    assert run_dir_lib.start_time(older.path) < run_dir_lib.start_time(newer.path)
    if finished:
        assert run_dir_lib.latest_finished(tmp_path, "demo").path == newer.path
    else:
        assert latest_unfinished_run(tmp_path, "demo") == newer.path
        # A resume rewrites run.json and keeps the start it recorded.
        started = older.read_run_info()[run_dir_lib.STARTED_AT]
        _start(older)
        assert older.read_run_info()[run_dir_lib.STARTED_AT] == started
        assert latest_unfinished_run(tmp_path, "demo") == newer.path


@pytest.mark.parametrize("named_newer", [True, False])
def test_runs_of_older_versions_sort_by_their_name_or_folder_time(tmp_path, named_newer):
    """Runs written before run.json recorded a start: a timestamped name is its start, a
    folder the user named counts from its mtime."""
    stamped, named = RunDir(tmp_path / "demo" / "20260102-000000"), RunDir(tmp_path / "demo" / "best")
    for run in (stamped, named):
        _start(run)
        info = run.read_run_info()
        del info[run_dir_lib.STARTED_AT]
        run.file(run_dir_lib.RUN_INFO).write_text(json.dumps(info))
    day = datetime.datetime(2026, 1, 3 if named_newer else 1).timestamp()
    os.utime(named.path, (day, day))
    assert run_dir_lib.start_time(stamped.path) == datetime.datetime(2026, 1, 2).timestamp()
    assert run_dir_lib.start_time(named.path) == day
    newer = named if named_newer else stamped
    assert latest_unfinished_run(tmp_path, "demo") == newer.path
    # A resume of such a run records no start it does not know.
    _start(stamped)
    assert run_dir_lib.STARTED_AT not in stamped.read_run_info()


def test_the_latest_cv_is_the_one_started_last_whatever_its_name(tmp_path):
    """`--cv --resume` and the blend's CV lookup: the same rule, from cv.json's start."""
    from tfislr.runs import cv_dir as cv

    root = cv.cv_root(tmp_path, "demo")
    for name in ("best", "20260101-000000"):  # "best" started first
        cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, root / name)
    assert cv.latest_unfinished_cv(tmp_path, "demo") == root / "20260101-000000"
    for name in ("20260101-000000", "best"):
        (root / name / cv.REPORT_FILE).write_text("{}")
    assert cv.latest_finished_cv(tmp_path, "demo") == root / "20260101-000000"


def test_readers_give_back_what_the_writers_wrote(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_started and run.read_signs() is None and run.read_run_info() == {}
    assert run.split() is None and run.read_metrics() is None
    with pytest.raises(ValueError, match="config.json: file not found"):
        run.read_config()
    _start(run)
    assert run.read_config() == _config()
    assert run.read_signs() == ["a", "b"]
    assert run.split() == {"full": False, "fold": 0, "num_folds": 4, "fold_seed": 42,
                           "original_folds": True, "val_participants": [7, 9]}
    assert run.weights_path("teacher") == run.path / "models" / "teacher_soup.keras"
    # A path is the user's, read from the current directory as every path (not the run's).
    assert run.weights_path("extra/my.keras") == pathlib.Path("extra/my.keras")
    assert run.weights_path(str(tmp_path / "x.keras")) == tmp_path / "x.keras"
    with pytest.raises(ValueError, match="model name"):
        run.model_path("teecher")
    run.file(run_dir_lib.RUN_INFO).write_text("{broken")
    with pytest.raises(ValueError, match="run.json: not valid JSON"):
        run.read_run_info()


def test_a_run_started_with_another_config_is_not_resumed(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.check_resumable(_config()) is False  # a fresh dir
    _start(run)
    with pytest.raises(ValueError, match="train.epochs"):
        run.check_resumable(load_config("demo", [f"train.epochs={EPOCHS + 1}"]))


def test_new_run_dirs_never_collide(tmp_path):
    first = RunDir.new(tmp_path, "demo")
    first.path.mkdir(parents=True, exist_ok=True)
    second = RunDir.new(tmp_path, "demo")
    assert second.path.parent == first.path.parent and second.path != first.path


def _allocate(args):
    """One process's allocation, as train and cv use it: the folder, then its creation."""
    root, barrier = args
    barrier.wait()  # every process allocates at the same moment
    path = RunDir.new(root, "demo").path
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def test_many_processes_allocating_at_once_get_distinct_folders(tmp_path, monkeypatch):
    """Runs started in the same second (4 folds on 4 GPUs, each its own process) each get
    their own run folder, also when every process checks and creates at the same time."""
    import multiprocessing

    monkeypatch.setattr(run_dir_lib, "_timestamp", lambda: "20260101-000000")  # one second
    processes = 12
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(processes)
    with context.Pool(processes) as pool:
        folders = pool.map(_allocate, [(tmp_path, barrier)] * processes)
    assert len(set(folders)) == processes
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == sorted(
        pathlib.Path(f).name for f in folders)


def test_cv_folders_started_in_the_same_second_are_distinct(tmp_path, monkeypatch):
    """A new CV folder is allocated as a run folder is (`new_timestamped_dir`): two CVs
    started in the same second each get their own folder and cv.json."""
    from tfislr.runs import cv_dir as cv

    monkeypatch.setattr(run_dir_lib, "_timestamp", lambda: "20260101-000000")  # one second
    first = cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, None, log=lambda _: None)
    second = cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, None, log=lambda _: None)
    assert (first.name, second.name) == ("20260101-000000", "20260101-000000_2")
    assert (first / cv.CV_FILE).is_file() and (second / cv.CV_FILE).is_file()


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    atomic.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_the_temporary_name_keeps_the_suffix_and_stale_temps_are_removed(tmp_path):
    target = tmp_path / "epoch_001.weights.h5"
    tmp = atomic.temp_path(target)
    assert tmp.parent == tmp_path and tmp.name.endswith(".weights.h5") and tmp.name != target.name
    (tmp_path / ".tmp.999.epoch_002.weights.h5").write_bytes(b"half")  # a killed writer's
    atomic.write_bytes(target, b"ok")
    assert atomic.remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.weights.h5"]
    assert run_dir_lib.list_checkpoints(tmp_path) == [(1, target)]


def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    files = {"metrics.json": '{"mine": 1}', "history.csv": "a,b\n1,2\n", "notes.txt": "x"}
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(ValueError, match=rf"{folder} is not empty .*no config.json"):
        RunDir(folder).check_resumable(_config())
    assert {p.name: p.read_text() for p in folder.iterdir()} == files
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        RunDir(tmp_path / "file").check_resumable(_config())
    # Fresh: an empty folder, or one holding only what a run killed before config.json leaves.
    empty = tmp_path / "empty"
    (empty / "worker_1").mkdir(parents=True)
    atomic.temp_path(empty / "config.json").write_text("{")
    assert RunDir(empty).check_resumable(_config()) is False


def test_train_and_cv_refuse_a_foreign_folder_in_one_line(tmp_path, capsys, synthetic_data_dir):
    from tfislr.cli import train as train_cli

    folder = tmp_path / "rd_user"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"mine": 1}')
    data = str(synthetic_data_dir)
    assert train_cli.main(["--config", "demo", "--data-dir", data, "--run-dir", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{folder} is not empty" in err[0], err
    assert cv_cli.main(["--config", "demo", "--data-dir", data,
                        "--cv-dir", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no cv.json" in err[0], err
    assert [p.name for p in folder.iterdir()] == ["metrics.json"]
    assert (folder / "metrics.json").read_text() == '{"mine": 1}'


# ----------------------------------------------------------------- multi-worker run dirs
def _cluster(monkeypatch, index, workers=2):
    cluster = {"worker": [f"127.0.0.1:{2000 + i}" for i in range(workers)]}
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))


@pytest.mark.parametrize("index", [0, 1])
def test_a_cluster_without_an_explicit_run_dir_is_refused_on_every_worker(
        monkeypatch, tmp_path, synthetic_data_dir, index):
    """Each worker would name its own `<output>/<config>/<timestamp>` (a second apart, or
    `_1` when another worker made it first): the chief too refuses, before it waits for
    the others and before any folder is made."""
    from tfislr.training import run as run_lib
    from tfislr.training import strategy as strategy_lib
    from tfislr.training.cross_validation import cross_validate

    def too_late(name):
        raise AssertionError(f"get_strategy({name!r}) ran before the run dir was checked")

    monkeypatch.setattr(strategy_lib, "get_strategy", too_late)  # what RunRequest.validate calls
    _cluster(monkeypatch, index)
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match=r"multi-worker run \(2 tasks in TF_CONFIG\) needs the "
                                         r"same --run-dir on every worker"):
        run_lib.train(_config(), synthetic_data_dir, output_dir=runs, strategy="multi_worker")
    with pytest.raises(ValueError, match="multi-worker cross-validation needs the same --cv-dir"):
        cross_validate(_config(), synthetic_data_dir, output_dir=runs, strategy="multi_worker")
    assert not runs.exists()


def test_workers_share_an_explicit_run_dir_in_either_order(monkeypatch, tmp_path):
    """With `--run-dir`, what `train` does before fitting (`check_resumable`, then
    `_open_run_dir`) on the chief and on worker 1, each order of arrival: worker 1 keeps
    its files in `worker_1/` and never writes the chief's; the chief's check does not take
    `worker_1/` for a foreign folder's content."""
    import types

    from tfislr.training import run as run_lib
    from tfislr.training.batch_plan import plan_batches

    config = _config()
    plan = plan_batches(config, 64, 1)
    data = types.SimpleNamespace(store_path=tmp_path / "store", split={"fold": 0, "full": False},
                                 signs=["a", "b"], train_idx=range(64), val_idx=None)

    def arrive(run_dir, index):
        _cluster(monkeypatch, index)
        resumed = RunDir(run_dir).check_resumable(config)
        chief, files, _ = run_lib._open_run_dir(config, tmp_path / "unused", run_dir, data,
                                                object(), plan, tmp_path / "data")
        assert chief.path == run_dir and files.path == (run_dir if index == 0 else
                                                       run_dir / f"worker_{index}")
        return resumed

    worker_first = tmp_path / "worker_first"
    assert arrive(worker_first, 1) is False
    assert [p.name for p in worker_first.iterdir()] == ["worker_1"]  # no chief file
    assert arrive(worker_first, 0) is False  # a fresh run, not a foreign folder
    assert RunDir(worker_first).read_config() == config
    chief_first = tmp_path / "chief_first"
    assert arrive(chief_first, 0) is False
    written = {p.name: p.read_bytes() for p in chief_first.iterdir() if p.is_file()}
    assert arrive(chief_first, 1) is True  # the chief's config is there: the same run
    assert {p.name: p.read_bytes() for p in chief_first.iterdir() if p.is_file()} == written
    assert not (tmp_path / "unused").exists()  # the output root is not used


# ----------------------------------------------------------------------------- --resume
def test_resume_passes_over_runs_it_cannot_continue_and_takes_the_latest_that_matches(tmp_path):
    """A run that died before its first backed-up epoch, or that another config started,
    never blocks `--resume`: each is passed over with a note naming it."""
    names = ["20260101-000000", "20260102-000000", "20260103-000000"]
    good, other_config, dead = (RunDir(tmp_path / "demo" / name) for name in names)
    _start(good)
    other_config.write_config(load_config("demo", [f"train.epochs={EPOCHS + 1}"]))
    other_config.write_run_info({})
    _start(dead)  # started last
    atomic.write_json(good.backup_dir / "training_metadata.json", {"epoch": 0})
    run, notes = run_dir_lib.resumable_run(tmp_path, _config())
    assert run.path == good.path
    assert len(notes) == 2 and str(dead.path) in notes[0] and "nothing to resume" in notes[0]
    assert str(other_config.path) in notes[1] and "another config" in notes[1]
    # Nothing to continue: a new run starts.
    good.mark_finished()
    assert run_dir_lib.resumable_run(tmp_path, _config())[0] is None


def test_the_resume_option_passes_over_dead_runs_and_other_cvs_with_a_note(tmp_path, capsys):
    """`--resume` of tfislr-train / tfislr-cv (`cli.run_options`) picks by `resumable_run` /
    `resumable_cv`: a run dead before its first backed-up epoch, or a CV of other weights,
    is named in a note on stderr and a new one starts instead of being refused."""
    import argparse

    from tfislr.cli.run_options import _resumed_folder
    from tfislr.runs import cv_dir as cv

    dead = RunDir(tmp_path / "demo" / "20260101-000000")
    _start(dead)
    args = argparse.Namespace(output=tmp_path, data_dir=tmp_path, weights="teacher")
    assert _resumed_folder(args, _config(), False, "tfislr-train") is None
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"tfislr-train: note: passed over {dead.path}: it stopped before")
    assert err[1] == "tfislr-train: no unfinished run; starting a new one"
    started = cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, None, log=lambda _: None)
    assert _resumed_folder(args, _config(), True, "tfislr-cv") is None
    assert capsys.readouterr().err.splitlines()[0] == (
        f"tfislr-cv: note: passed over {started}: it was started with another weights")
    args.weights = "distilled"
    assert _resumed_folder(args, _config(), True, "tfislr-cv") == started


def test_a_checkpointed_run_is_resumable():
    """A run whose backup was removed at the end of training still resumes (to its finish)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(folder)
        _start(run)
        assert not run.has_progress
        _train_all_epochs(run)
        assert run.has_progress


def test_cv_resume_passes_over_a_cv_started_otherwise(tmp_path):
    """`--cv --resume` takes the latest unfinished CV started with the same settings; a
    newer one started with another config is passed over with a note, not an error."""
    from tfislr.runs import cv_dir as cv

    root = cv.cv_root(tmp_path, "demo")
    cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, root / "20260101-000000")
    other = load_config("demo", [f"train.epochs={EPOCHS + 1}"])
    cv.open_cv_dir(other, tmp_path, "distilled", tmp_path, root / "20260102-000000")
    found, notes = cv.resumable_cv(tmp_path, _config(), tmp_path)
    assert found == root / "20260101-000000"
    assert notes == [f"passed over {root / '20260102-000000'}: it was started with another config"]
    assert cv.resumable_cv(tmp_path, _config(), tmp_path, "teacher")[0] is None


# ----------------------------------------------------------------------------- older layouts
def _old_layout(values, precision="float32", jit_compile=False):
    """A config mapping as runs wrote config.json before the runtime section: precision and
    jit_compile in `train`, no `runtime` (and no strategy anywhere)."""
    values = {key: value for key, value in values.items() if key != "runtime"}
    values["train"] = {**values["train"], "precision": precision, "jit_compile": jit_compile}
    return values


def test_an_old_runs_config_reads_and_resumes_in_todays_spelling(tmp_path):
    run = RunDir(tmp_path / "demo" / "20260101-000000")
    _start(run)
    atomic.write_json(run.file(run_dir_lib.CONFIG),
                      _old_layout(_config().to_dict(), "mixed_bfloat16", True))
    config = load_config("demo", [f"train.epochs={EPOCHS}", "runtime.precision=mixed_bfloat16",
                                  "runtime.jit_compile=true"])
    assert run.read_config() == config
    assert run.check_resumable(config) is True
    # The strategy may differ (batches are global); the precision may not.
    assert run.check_resumable(load_config("demo", [
        f"train.epochs={EPOCHS}", "train.precision=mixed_bfloat16", "runtime.jit_compile=true",
        "runtime.strategy=cpu:2"])) is True
    with pytest.raises(ValueError, match=r"differs in: runtime.precision\)"):
        run.check_resumable(load_config("demo", [f"train.epochs={EPOCHS}",
                                                 "runtime.jit_compile=true"]))
    _train_all_epochs(run)  # progress, so `--resume` takes it
    assert run_dir_lib.resumable_run(tmp_path, config)[0].path == run.path


def test_an_old_run_keeps_the_learning_it_started_with_when_a_default_changed(tmp_path):
    """Keys added with a new default (`augment.hand_fill`, `model.pos_conv_padding`): a
    config.json without them is read with the values that run trained with; resuming it with
    today's defaults names them, with those values it resumes."""
    run = RunDir(tmp_path / "demo" / "20260101-000000")
    _start(run)
    values = _config().to_dict()
    del values["augment"]["hand_fill"], values["model"]["pos_conv_padding"]
    atomic.write_json(run.file(run_dir_lib.CONFIG), values)
    recorded = run.read_config()
    assert (recorded.augment.hand_fill, recorded.model.pos_conv_padding) == (
        "missing_frames", "extended")
    assert (_config().augment.hand_fill, _config().model.pos_conv_padding) == (
        "original", "max_len")
    with pytest.raises(ValueError, match=r"differs in: augment.hand_fill, "
                                         r"model.pos_conv_padding\)"):
        run.check_resumable(_config())
    assert run.check_resumable(load_config("demo", [
        f"train.epochs={EPOCHS}", "augment.hand_fill=missing_frames",
        "model.pos_conv_padding=extended"])) is True


def test_an_old_cv_resumes_on_any_strategy(tmp_path):
    from tfislr.runs import cv_dir as cv

    root = cv.cv_root(tmp_path, "demo")
    started = cv.open_cv_dir(_config(), tmp_path, "distilled", tmp_path, root / "20260101-000000")
    record = json.loads((started / cv.CV_FILE).read_text())
    record["config"] = _old_layout(record["config"])
    atomic.write_json(started / cv.CV_FILE, record)
    on_two = load_config("demo", [f"train.epochs={EPOCHS}", "runtime.strategy=cpu:2"])
    assert cv.resumable_cv(tmp_path, on_two, tmp_path) == (started, [])
    assert cv.open_cv_dir(on_two, tmp_path, "distilled", tmp_path, started,
                          log=lambda _: None) == started
    half = load_config("demo", [f"train.epochs={EPOCHS}", "runtime.precision=mixed_float16"])
    assert cv.resumable_cv(tmp_path, half, tmp_path)[0] is None


@pytest.mark.large  # a TFLite conversion (the reading is quick, above)
def test_an_old_runs_folder_exports_as_before(tmp_path):
    from tiny_exports import small_model, write_run

    from tfislr.export import PARITY_TOLERANCE, export_ensemble

    run_dir = write_run(tmp_path / "run", small_model(max_len=8), 8)
    values = json.loads((run_dir / "config.json").read_text())
    atomic.write_json(run_dir / "config.json", _old_layout(values))
    assert RunDir(run_dir).read_config().runtime.precision == "float32"
    report = export_ensemble([str(run_dir)], tmp_path / "m.tflite", "fp32", verbose=False,
                             latency_repeats=1)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOLERANCE["fp32"]
    assert (tmp_path / "m.tflite").stat().st_size > 0
