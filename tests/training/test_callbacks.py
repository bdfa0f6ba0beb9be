"""BackupAndRestore: every random state of the step comes back with the weights; history.csv
holds each epoch once across a resume; sessions.json keeps every session's wall time."""

import json

import keras
import numpy as np
import pytest

from tfislr.training import callbacks as cb
from tfislr.training.callbacks import NonFiniteLossError, StopOnNonFiniteLoss


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5),
        keras.layers.Dense(8), keras.layers.Dropout(0.3), keras.layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _values(model):
    return [np.array(state) for state in cb.random_states(model)]


def test_random_states_are_saved_and_restored(tmp_path):
    trained = _model()
    backup = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    trained.fit(*_data(), batch_size=4, epochs=2, verbose=0, callbacks=[backup])
    saved = _values(trained)
    assert len(saved) >= 2  # one seed generator per Dropout layer
    fresh = _model()
    # Without the states a resumed run would start from a fresh run's dropout masks.
    assert any(not np.array_equal(a, b) for a, b in zip(_values(fresh), saved))
    restore = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    restore.set_model(fresh)
    restore.on_train_begin()
    for a, b in zip(_values(fresh), saved):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh.weights, trained.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_a_kill_between_the_writes_restores_the_epoch_the_weights_belong_to(tmp_path):
    model = _model()
    backup = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0, callbacks=[backup])
    after_epoch_1 = _values(model)
    # Epoch 2's random states written, then killed before the weights and metadata.
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0)
    backup._current_epoch = 2
    current, previous = backup._state_paths()
    states = {f"state_{i}": v for i, v in enumerate(_values(model))}
    np.savez(current.with_suffix(".tmp.npz"), epoch=2, **states)
    current.replace(previous)
    current.with_suffix(".tmp.npz").replace(current)
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    fresh = _model()
    restore = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    restore.set_model(fresh)
    restore.on_train_begin()
    for a, b in zip(_values(fresh), after_epoch_1):
        np.testing.assert_array_equal(a, b)


def _restored(backup_dir, cluster_backup_dirs=None):
    fresh = _model(seed=1)
    where = {} if cluster_backup_dirs is None else {"cluster_backup_dirs": cluster_backup_dirs}
    restore = cb.BackupAndRestore(str(backup_dir), delete_checkpoint=False, **where)
    restore.set_model(fresh)
    restore.on_train_begin()
    return fresh


def _assert_weights(model, expected):
    for a, b in zip(model.weights, expected):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_a_kill_while_the_weights_are_written_restores_the_previous_epoch(tmp_path):
    model = _model()
    backup = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0, callbacks=[backup])
    after_epoch_1 = [np.array(w) for w in model.weights]

    class Killed(BaseException):
        pass

    def half_written(filepath, **kwargs):  # the process dies halfway through the file
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        raise Killed

    model.fit(*_data(), batch_size=4, epochs=1, verbose=0)
    model.save_weights = half_written
    backup._current_epoch = 2
    try:
        backup._save_model()
    except Killed:
        pass
    fresh = _restored(tmp_path / "backup")  # Keras' in-place write: an unreadable file
    assert fresh._initial_epoch == 1
    _assert_weights(fresh, after_epoch_1)


def test_the_processes_of_a_cluster_resume_at_the_epoch_all_backed_up(tmp_path):
    chief_dir, worker_dir = tmp_path / "run" / "backup", tmp_path / "run" / "worker_1" / "backup"
    chief, worker = _model(), _model(seed=2)  # stand-ins for the two processes' variables
    chief_backup = cb.BackupAndRestore(str(chief_dir), delete_checkpoint=False)
    chief.fit(*_data(), batch_size=4, epochs=1, verbose=0, callbacks=[chief_backup])
    chief_after_1 = [np.array(w) for w in chief.weights]
    chief.fit(*_data(), batch_size=4, epochs=2, verbose=0, callbacks=[chief_backup])
    # The worker was killed before it backed up epoch 2.
    worker.fit(*_data(), batch_size=4, epochs=1, verbose=0, callbacks=[
        cb.BackupAndRestore(str(worker_dir), delete_checkpoint=False)])
    dirs = [str(chief_dir), str(worker_dir)]
    resumed_chief, resumed_worker = _restored(chief_dir, dirs), _restored(worker_dir, dirs)
    assert resumed_chief._initial_epoch == resumed_worker._initial_epoch == 1
    _assert_weights(resumed_chief, chief_after_1)  # its own epoch 1, kept for this
    _assert_weights(resumed_worker, worker.weights)
    assert _restored(chief_dir)._initial_epoch == 2  # alone, it resumes at its own last epoch


# ------------------------------------------------------------------ history.csv
def test_a_resumed_fit_replaces_the_history_rows_of_the_epochs_it_redoes(tmp_path):
    """A run killed after logging epoch 2 but before backing it up resumes at epoch 2: the
    history holds each epoch once, numbered from 1 like the checkpoints and Keras' "Epoch
    N/M", the redone epoch with the resumed fit's values (Keras' CSVLogger(append=True)
    wrote epochs 0, 1, 1, 2, from 0)."""
    import pandas as pd

    path = tmp_path / "history.csv"
    x, y = _data()
    killed = _model(seed=1)
    killed.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[cb.EpochHistory(path)])
    assert pd.read_csv(path)["epoch"].tolist() == [1, 2]
    first_loss = pd.read_csv(path)["loss"].iloc[0]
    resumed = _model(seed=2)  # other weights: the redone epoch's loss differs
    logged = resumed.fit(x, y, batch_size=4, epochs=3, initial_epoch=1, verbose=0,
                         callbacks=[cb.EpochHistory(path)]).history
    history = pd.read_csv(path)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["loss"].iloc[0] == first_loss
    np.testing.assert_allclose(history["loss"].iloc[1:], logged["loss"], rtol=1e-6)
    # A log name the earlier rows lack is added as a column, empty for them.
    cb.EpochHistory(path).on_epoch_end(3, {"loss": 0.5, "val_loss": 0.25})
    history = pd.read_csv(path)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["val_loss"].isna().tolist() == [True, True, True, False]


def test_a_history_an_older_version_numbered_from_0_is_read_and_resumed_from_1(tmp_path):
    """Older versions numbered history.csv from 0: its readers see it from 1, and a resume
    keeps its rows before the resumed epoch, renumbered, never mixing the two counts."""
    import pandas as pd

    from tfislr.runs.run_dir import RunDir

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,3.0\n1,2.0\n2,1.5\n")  # epochs 1-3; backed up at 2
    assert RunDir(tmp_path).read_history()["epoch"].tolist() == [1, 2, 3]
    cb.EpochHistory(path).on_epoch_end(2, {"loss": 1.25})  # Keras' 0-based epoch 2: epoch 3
    history = pd.read_csv(path)
    assert history["epoch"].tolist() == [1, 2, 3] and history["loss"].tolist() == [3.0, 2.0, 1.25]


# ------------------------------------------------------------------ TensorBoard
def test_tensorboard_steps_number_epochs_from_1_like_history_csv(tmp_path):
    """A fit from Keras' epoch 0 and a resume from its epoch 2: steps 1, 2 then 3."""
    import tensorflow as tf

    x, y = _data()
    model = _model(seed=1)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[cb.ScalarSummaries(str(tmp_path))])
    model.fit(x, y, batch_size=4, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[cb.ScalarSummaries(str(tmp_path))])
    steps = {}
    for split in ("train", "validation"):
        for path in (tmp_path / split).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    steps.setdefault((split, value.tag), []).append(event.step)
    assert sorted(steps[("train", "epoch_loss")]) == [1, 2, 3]
    assert sorted(steps[("validation", "epoch_loss")]) == [1, 2]


# ------------------------------------------------------------------ sessions.json
def test_the_wall_time_sums_every_session_of_a_resumed_run(tmp_path):
    """Three sessions as the tester ran them: Ctrl-C in epoch 2, a resume killed outright
    (SIGKILL) after epoch 2, a resume that finishes. Each session's time counts (before,
    wall_seconds was the last session's alone); the killed one up to its last epoch."""
    import time

    from tfislr.runs.run_dir import RunDir

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    files = RunDir(tmp_path)
    x, y = _data()
    # 1. 30 s of loading and epoch 1 (the clock starts with `train`), then Ctrl-C.
    with pytest.raises(KeyboardInterrupt), cb.SessionClock(files, time.time() - 30) as clock:
        _model().fit(x, y, epochs=2, verbose=0, callbacks=[clock, Interrupt()])
    first = files.read_sessions()
    assert [(s["last_epoch"], s["seconds"] >= 30) for s in first] == [(1, True)]
    # 2. Resumed, epoch 2 recorded 20 s in, then SIGKILL: nothing runs after the epoch's end.
    killed = cb.SessionClock(files, time.time() - 20)
    killed.on_epoch_end(1)
    # 3. Resumed, finishes 5 s in.
    sessions = cb.SessionClock(files, time.time() - 5).record()
    assert sessions == files.read_sessions() and sessions[0] == first[0]
    assert [s["last_epoch"] for s in sessions] == [1, 2, None]
    seconds = [s["seconds"] for s in sessions]
    assert 30 <= seconds[0] < 60 and 20 <= seconds[1] < 30 and 5 <= seconds[2] < 15
    assert all(s["started_at"] < t["started_at"] for s, t in zip(sessions, sessions[1:]))


def test_the_first_train_step_says_what_is_happening():
    """Tracing the first step prints nothing of its own, so epoch 1 would look hung: one
    line before it and one after it, once per fit, however many steps and epochs."""
    events = []

    class Recorder(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            events.append("step")

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((6, 3), np.float32), np.zeros((6, 2), np.float32)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0,
              callbacks=[cb.FirstStepNotice(events.append), Recorder()])
    assert events[0].startswith("tracing the train step")
    assert events[1].startswith("train step traced and run once in ")  # after step 1's end
    assert events[2:] == ["step"] * 6


def test_nan_loss_stops_naming_epoch_and_step():
    callback = StopOnNonFiniteLoss(steps_per_epoch=10)

    class Model:
        stop_training = False

    callback.set_model(Model())
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(3, {"loss": 1.5})
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 5 of 10 \(global step 25\)"):
        callback.on_train_batch_end(4, {"loss": float("nan"), "student_loss": 1.0})
