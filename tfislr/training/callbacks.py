"""Keras callbacks of a training run: epoch state, NaN stop, soup checkpoints, wall clock
(per epoch and per session), history."""

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import time
import warnings

import keras
import numpy as np

from tfislr import atomic
from tfislr.errors import TfislrError
from tfislr.runs import run_dir
from tfislr.training import keras_adapter, soup
from tfislr.training.keras_adapter import random_states


class NonFiniteLossError(TfislrError, FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and the step.

    A user-facing error (`tfislr.errors`): the fix is in the config (learning rate,
    precision, data), not in the code.
    """


class EpochState(keras.callbacks.Callback):
    """At each epoch start, publishes the (0-based) epoch to the graph-side state.

    - `distiller.epoch` (mixup schedule, distilled-model mode switch);
    - `augmenter.phase` through `set_phase_for_epoch` (strength 3, then 2), for
      pipelines that read it (`make_train_dataset` without `epochs`);
    - the training dataset's `epoch_counter`, so a resumed run replays the same
      per-epoch orders and augmentations.

    Called before Keras creates the epoch's data iterator (with `steps_per_epoch`, the one
    iterator of the fit, which reads the counter once and carries the epoch as data), so
    the first batch of the epoch already sees the new values.
    """

    def __init__(self, distiller, epochs, augmenter=None, epoch_counter=None):
        super().__init__()
        self.distiller = distiller
        self.epochs = epochs
        self.augmenter = augmenter
        self.epoch_counter = epoch_counter
        self.phases = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.distiller.epoch.assign(epoch)
        if self.epoch_counter is not None:
            self.epoch_counter.assign(epoch)
        if self.augmenter is not None:
            self.phases[epoch] = self.augmenter.set_phase_for_epoch(epoch, self.epochs)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with `NonFiniteLossError` at the first batch whose loss is not finite.

    The message names the epoch (1-based), the step within it and the global step, and
    says what usually helps. Nothing is checkpointed after the bad step, so the backup of
    the previous epoch stays usable.
    """

    def __init__(self, steps_per_epoch=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not logs:
            return
        bad = {
            key: float(value)
            for key, value in logs.items()
            if key.endswith("loss") and not math.isfinite(float(value))
        }
        if bad:
            self.model.stop_training = True
            global_step = (
                self._epoch * self.steps_per_epoch + batch + 1 if self.steps_per_epoch else None
            )
            where = f"epoch {self._epoch + 1}, step {batch + 1}"
            if self.steps_per_epoch:
                where += f" of {self.steps_per_epoch} (global step {global_step})"
            raise NonFiniteLossError(
                f"training loss is not finite at {where}: "
                + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
                + ". Nothing was saved for this epoch; lower train.learning_rate or "
                "train.max_grad_norm, or check the data (tfislr.data prepare summary)."
            )


class SoupCheckpoint(keras.callbacks.Callback):
    """Saves `checkpoints/epoch_XXX.weights.h5` (student, teacher, distilled) for the last N epochs.

    Args:
        triple: `soup.ModelTriple` of the three models.
        directory: the run's checkpoints folder.
        epochs: total epochs of the run.
        last_n: save epochs > epochs − last_n (1-based), the soup's ingredients.
    """

    def __init__(self, triple, directory, epochs, last_n):
        super().__init__()
        self.triple = triple
        self.directory = directory
        self.first_epoch = max(epochs - last_n + 1, 1)  # 1-based

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.first_epoch:
            soup.save_checkpoint(self.triple, self.directory, epoch + 1)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time, validation included) and `learning_rate` to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_seconds"] = time.perf_counter() - self._start
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            logs["learning_rate"] = float(optimizer.learning_rate)


class SessionClock(keras.callbacks.Callback):
    """The wall time of every session (process) that trained the run, in `sessions.json`.

    A run stopped (Ctrl-C, a kill) and resumed trains across sessions; its wall time is
    theirs summed, not the last one's. Each session adds its entry to the earlier ones'
    (`RunDir.read_sessions`): `{"started_at": ISO 8601, "seconds": its wall time so far,
    "last_epoch": the last epoch it completed (1-based, None before one)}`, rewritten
    (atomically) by `record` at each epoch's end, at the finish and when training is
    interrupted by an exception (Ctrl-C included). A session killed outright (SIGKILL, a
    power cut) records nothing more: its time up to its last completed epoch is counted,
    the rest until the kill is unknown and not counted.

    Args:
        files: the `RunDir` this process writes.
        started: when this session began, in `time.time()` seconds (the start of `train`,
            so data loading, model building and the finish are counted too).
    """

    def __init__(self, files, started):
        super().__init__()
        self.files = files
        self.started = started
        self.earlier = files.read_sessions()
        self.last_epoch = None

    def record(self):
        """Writes every session's entry, this one's up to now; returns them."""
        this = {"started_at": run_dir.iso_time(self.started),
                "seconds": round(time.time() - self.started, 1), "last_epoch": self.last_epoch}
        sessions = [*self.earlier, this]
        self.files.write_sessions(sessions)
        return sessions

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch = epoch + 1  # Keras counts from 0
        self.record()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None:  # interrupted (Ctrl-C) or failed: the time so far still counts
            with contextlib.suppress(OSError):  # never hide the error itself
                self.record()


class EpochHistory(keras.callbacks.Callback):
    """`history.csv`: one row per epoch, `epoch` (1-based, as the checkpoints `epoch_XXX`,
    the soup and Keras' "Epoch N/M" count) then the epoch's logs by name.

    At each epoch's end the file is rewritten (atomically) with the rows of the earlier
    epochs and this one's: a resumed run redoes the epochs after its last backup, and the
    rows a killed run logged for them (an epoch logged, then killed before its backup; in
    a cluster, a process an epoch ahead of another) are replaced, never repeated (Keras'
    `CSVLogger(append=True)` appended them again). Columns keep the file's order; a new
    log name is added at the end, a missing one left empty. The rows of a file an older
    version wrote, numbered from 0, are renumbered (`run_dir.one_based_epochs`).

    Args:
        path: the CSV file (`run_dir.HISTORY` in the run's folder).
    """

    def __init__(self, path):
        super().__init__()
        self.path = pathlib.Path(path)

    def _earlier_rows(self, number):
        """(columns, rows) of the file's epochs before the 1-based `number` ([], [] without
        a file)."""
        if not self.path.is_file():
            return [], []
        numbered = []
        with self.path.open(newline="") as file:
            reader = csv.DictReader(file)
            for row in reader:
                try:
                    numbered.append((int(row["epoch"]), row))
                except (KeyError, TypeError, ValueError):  # not an epoch's row (a torn line)
                    pass
            columns = list(reader.fieldnames or [])
        epochs = run_dir.one_based_epochs([epoch for epoch, _ in numbered])
        rows = [{**{key: value for key, value in row.items() if key is not None}, "epoch": epoch}
                for epoch, (_, row) in zip(epochs, numbered) if epoch < number]
        return columns, rows

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1  # Keras counts from 0
        columns, rows = self._earlier_rows(number)
        row = {"epoch": number, **{key: value if isinstance(value, str) else float(value)
                                   for key, value in sorted((logs or {}).items())}}
        columns += [key for key in row if key not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows([*rows, row])
        atomic.write_text(self.path, text.getvalue())


class ScalarSummaries(keras.callbacks.Callback):
    """Epoch metrics as TensorBoard scalars: `tb/train` and `tb/validation`, tags `epoch_<metric>`.

    The same layout as `keras.callbacks.TensorBoard`, written with TF's own summary op, so
    it works without the `tensorboard` package installed (TF 2.21 no longer ships it);
    `tensorboard --logdir <run>/tb` shows the curves. The step is the epoch's number,
    1-based as in history.csv, the checkpoints and the log (Keras' callback writes 0-based).
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self._writers = {}

    def _writer(self, split):
        import tensorflow as tf

        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(f"{self.log_dir}/{split}")
        return self._writers[split]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
            data_class=summary_pb2.DATA_CLASS_SCALAR,
        )
        for key, value in (logs or {}).items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(
                    f"epoch_{name}", tf.constant(float(value), tf.float32),
                    step=epoch + 1, metadata=metadata,  # Keras counts from 0
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class BackupAndRestore(keras_adapter.BackupHooks):
    """Keras' epoch backup plus the random states of the step, so a resumed run is bitwise the
    uninterrupted one, with a backup that a kill at any moment leaves readable.

    The weights of epoch N go to `epoch_<N>.weights.h5`, written to a temporary file and
    renamed; the metadata (written the same way, after them) names the epoch and is the
    commit point: a kill before it leaves the previous epoch's backup, which is restored.
    (Keras writes one `latest.weights.h5` in place, which a kill can leave truncated or
    newer than the metadata.) The weights of the epoch before are kept too (see
    `cluster_backup_dirs`). The states (`random_states`) go to `random_state.npz`, tagged
    with their epoch, before the weights; the previous file is kept, so a kill between the
    writes still finds the states of the restored epoch. A backup without matching states
    (written by an older version) resumes with a warning that it is not bitwise.

    Args:
        backup_dir: this process's backup (removed at the end of training).
        cluster_backup_dirs: the backup dirs of every process of a multi-worker run, this
            one's included (default: `[backup_dir]`). Each process backs up its own
            variables (BatchNorm statistics and dropout seeds are per replica), at its own
            moment: a kill can leave one an epoch ahead of another. Every process resumes,
            from its own backup, at the last epoch all of them backed up, so they train
            the same epoch (workers at different epochs would wait on each other forever).
    """

    STATE_FILES = ("random_state.npz", "random_state.prev.npz")
    METADATA_FILE = "training_metadata.json"  # Keras' name

    def __init__(self, backup_dir, cluster_backup_dirs=None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.cluster_backup_dirs = [str(d) for d in (cluster_backup_dirs or [backup_dir])]

    def _state_paths(self):
        return [pathlib.Path(self.backup_dir) / name for name in self.STATE_FILES]

    def _weights_file(self, epoch):
        return pathlib.Path(self.backup_dir) / f"epoch_{epoch}.weights.h5"

    def _backed_up_epoch(self, directory):
        metadata = pathlib.Path(directory) / self.METADATA_FILE
        return json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0

    def save_backup(self, epoch, batch):
        """Writes the backup of `epoch` (class docstring); `batch`: the last batch seen."""
        current, previous = self._state_paths()
        arrays = {f"state_{i}": np.asarray(v) for i, v in enumerate(random_states(self.model))}
        if current.exists():
            os.replace(current, previous)
        with atomic.atomic_path(current) as temporary:
            np.savez(temporary, epoch=epoch, **arrays)
        with atomic.atomic_path(self._weights_file(epoch)) as temporary:
            self.model.save_weights(temporary)  # the temporary name keeps .weights.h5
        atomic.write_json(pathlib.Path(self.backup_dir) / self.METADATA_FILE,
                          {"epoch": epoch, "batch": batch})
        kept = {self._weights_file(epoch), self._weights_file(epoch - 1)}
        for older in set(pathlib.Path(self.backup_dir).glob("epoch_*.weights.h5")) - kept:
            older.unlink(missing_ok=True)

    def load_backup(self, keras_weights_path):
        """Restores the last epoch every process backed up; returns it (0: none, start afresh).

        `keras_weights_path`: Keras' own backup file, which an older version wrote."""
        epoch = min(self._backed_up_epoch(d) for d in self.cluster_backup_dirs)
        if epoch == 0:
            return 0  # some process has no backup yet: all start afresh
        weights = self._weights_file(epoch)
        if not weights.exists():  # a backup of an older version: Keras' one file
            weights = pathlib.Path(keras_weights_path)
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(weights))
        states = random_states(self.model)
        for path in self._state_paths():
            if not path.exists():
                continue
            with np.load(path) as saved:
                if int(saved["epoch"]) != epoch or len(saved.files) - 1 != len(states):
                    continue
                for i, state in enumerate(states):
                    state.assign(saved[f"state_{i}"])
            return epoch
        warnings.warn(
            f"{self.backup_dir}: no random state saved for epoch {epoch} (a backup of an "
            "older version): resuming with fresh dropout masks, not bitwise the "
            "uninterrupted run"
        )
        return epoch
