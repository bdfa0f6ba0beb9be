"""The run directory: its layout, its states, atomic writers, readers and lookups.

Every module that reads or writes a run (training, soup, export, plots, evaluate, the CLIs)
goes through `RunDir`, so the layout and the rule for "finished" live here only:

    <output>/<config name>/<timestamp>/
      config.json        the resolved config (`RunDir.read_config` reads it back)
      signs.json         sign names by label (from the data's sign map)
      run.json           when it started, split (fold settings, the fold scheme that
                         applied, validation signers), sizes, batch plan, replicas
      history.csv        one row per epoch (1-based): losses, val accuracy of the 3 models,
                         lr, seconds
      tb/                TensorBoard scalars (train/, validation/)
      backup/            Keras BackupAndRestore state while the run trains (resume)
      checkpoints/       epoch_XXX.weights.h5: the 3 models, last soup_last_n epochs
      models/            {student,teacher,distilled}_soup.keras
      sessions.json      each training session's start and wall time (a resume adds one)
      metrics.json       val accuracy per model: last epoch vs soup (None in a full fit);
                         wall_seconds of all sessions
      plots/             training curves; the confusion matrix when there is a validation split
      finished.json      the marker: written last, atomically

States, in the order a run passes through them:

- *started*: `config.json` exists (written before training; `--resume` looks for these);
- *trained*: the last epoch's checkpoint exists — every epoch ran and the soup's
  ingredients are on disk, so a resume only redoes the finish (soup, models, metrics);
- *finished*: `finished.json` exists. It is written after everything else, atomically,
  so a finished run has all its files. This is the one rule: `--resume` never resumes a
  finished run, and export picks only finished runs.

"Latest" (`latest_unfinished` for `--resume`, `latest_finished` for export) means started
last, by the start time run.json records (`start_time`), never by the folder's name: a
run dir the user named (`--run-dir runs/len80/best`) sorts among the others by when it ran.

Every file is written through `tfislr.atomic` (a temporary sibling renamed onto the name),
so a killed run never leaves half a file that a later step would trust.
"""

import datetime
import itertools
import json
import pathlib
import re

from tfislr import atomic
from tfislr.config import MODEL_NAMES, comparable_config, config_from_dict, recorded_config
from tfislr.errors import ConfigError, DataError, MissingFileError

CONFIG = "config.json"
SIGNS = "signs.json"
RUN_INFO = "run.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
SESSIONS = "sessions.json"
FINISHED = "finished.json"
_CHECKPOINT = re.compile(r"^epoch_(\d+)\.weights\.h5$")


def checkpoint_path(directory, epoch):
    """`directory/epoch_XXX.weights.h5` for the 1-based `epoch`."""
    return pathlib.Path(directory) / f"epoch_{epoch:03d}.weights.h5"


def list_checkpoints(directory):
    """[(epoch, path)] of the checkpoints in `directory`, oldest first."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def one_based_epochs(epochs):
    """history.csv's `epoch` column (ints, file order), numbered from 1 as every record of a
    run counts. A file an older version wrote counts from 0: its first row is epoch 0, which
    no 1-based file has, so its numbers are shifted by one."""
    epochs = list(epochs)
    return [epoch + 1 for epoch in epochs] if epochs and epochs[0] == 0 else epochs


_TIMESTAMP = "%Y%m%d-%H%M%S"
# The names `new_timestamped_dir` gives: the start's timestamp, "_<n>" appended per
# collision (older versions appended "_1" per collision).
_TIMESTAMPED_NAME = re.compile(r"^(\d{8}-\d{6})(?:_\d+)*$")
STARTED_AT = "started_at"  # run.json's (and cv.json's) record of the start


def _timestamp():
    return datetime.datetime.now().strftime(_TIMESTAMP)


def new_timestamped_dir(parent):
    """Creates and returns a fresh `<parent>/<timestamp>` folder (`parent` is created).

    The folder is allocated atomically: `mkdir` without `exist_ok` fails when another
    process created the name first, and the next name (`<timestamp>_2`, `_3`, ...) is
    tried. So runs started in the same second, by any number of processes, never share
    a folder — checking that a path does not exist and creating it later would let two
    of them pass the check.
    """
    parent = pathlib.Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = _timestamp()
    for attempt in itertools.count(1):
        path = parent / (stamp if attempt == 1 else f"{stamp}_{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def iso_time(seconds=None):
    """POSIX `seconds` (default: now) as local ISO 8601 with its UTC offset, to the microsecond."""
    moment = datetime.datetime.now() if seconds is None else datetime.datetime.fromtimestamp(seconds)
    return moment.astimezone().isoformat(timespec="microseconds")


def start_time(folder, record=RUN_INFO):
    """When the run (or cross-validation) in `folder` started, in POSIX seconds.

    The `started_at` its JSON `record` holds (run.json; cv.json for a CV dir). A folder
    written by an older version, which recorded none, falls back to the timestamp of the
    name `RunDir.new` gave it, else to the folder's mtime (its last change: a user-named
    run of an older version counts from its last write).
    """
    folder = pathlib.Path(folder)
    try:
        recorded = json.loads((folder / record).read_text())
    except (OSError, ValueError):  # none, or unreadable: its readers name the problem
        recorded = None
    if isinstance(recorded, dict) and isinstance(recorded.get(STARTED_AT), str):
        try:
            return datetime.datetime.fromisoformat(recorded[STARTED_AT]).timestamp()
        except ValueError:
            pass
    named = _TIMESTAMPED_NAME.match(folder.name)
    if named:
        return datetime.datetime.strptime(named.group(1), _TIMESTAMP).timestamp()
    return folder.stat().st_mtime


def by_start_time(folders, record=RUN_INFO):
    """`folders` ordered by `start_time`, oldest first (the same start: by name)."""
    return sorted(folders, key=lambda path: (start_time(path, record), pathlib.Path(path).name))


class RunDir:
    """One run directory (see the module docstring for the layout and states).

    Args:
        path: the run's folder, `<output>/<config name>/<timestamp>/` for runs that
            `train` names itself; it need not exist yet.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

    # ------------------------------------------------------------------ layout

    @property
    def name(self):
        return self.path.name

    def file(self, name):
        return self.path / name

    @property
    def tb_dir(self):
        return self.path / "tb"

    @property
    def backup_dir(self):
        return self.path / "backup"

    @property
    def checkpoints_dir(self):
        return self.path / "checkpoints"

    @property
    def models_dir(self):
        return self.path / "models"

    @property
    def plots_dir(self):
        return self.path / "plots"

    def model_path(self, name):
        """`models/<name>_soup.keras` for a model name of `MODEL_NAMES`."""
        if name not in MODEL_NAMES:
            raise ConfigError(f"model name must be one of {MODEL_NAMES}, got {name!r}")
        return self.models_dir / f"{name}_soup.keras"

    def weights_path(self, weights):
        """The .keras file of `weights`: a model name (its soup) or a path, which (as every
        path a user gives) is relative to the current directory, not to the run."""
        if weights in MODEL_NAMES:
            return self.model_path(weights)
        return pathlib.Path(weights)

    def checkpoint_path(self, epoch):
        return checkpoint_path(self.checkpoints_dir, epoch)

    def checkpoints(self):
        return list_checkpoints(self.checkpoints_dir)

    # ------------------------------------------------------------------ states

    @property
    def is_started(self):
        return self.file(CONFIG).is_file()

    def is_trained(self, epochs=None):
        """True once the last epoch's checkpoint is on disk (`epochs`: default from config.json)."""
        if epochs is None:
            if not self.is_started:
                return False
            epochs = self.read_config().train.epochs
        return self.checkpoint_path(epochs).is_file()

    @property
    def has_progress(self):
        """True when a resume would not start from scratch: an epoch is backed up (the
        backup's metadata, its commit point, exists) or checkpointed."""
        return (self.backup_dir / "training_metadata.json").is_file() or bool(self.checkpoints())

    @property
    def is_finished(self):
        return self.file(FINISHED).is_file()

    def mark_finished(self, **info):
        """Writes the marker; call it after every other file of the run is written."""
        info = {"finished_at": datetime.datetime.now().isoformat(timespec="seconds"), **info}
        atomic.write_json(self.file(FINISHED), info)

    # ------------------------------------------------------------------ writers

    def write_config(self, config):
        atomic.write_json(self.file(CONFIG), config.to_dict())

    def write_signs(self, signs):
        atomic.write_json(self.file(SIGNS), list(signs))

    def write_run_info(self, info):
        """Writes run.json with `info`. The first write (a new run) records `started_at`
        (`iso_time`), later ones (a resume) keep what it recorded, or that it recorded none."""
        resumed = self.file(RUN_INFO).is_file()
        started = self.read_run_info().get(STARTED_AT) if resumed else iso_time()
        if started is not None:
            info = {STARTED_AT: started, **info}
        atomic.write_json(self.file(RUN_INFO), info)

    def write_metrics(self, metrics):
        atomic.write_json(self.file(METRICS), metrics)

    def write_sessions(self, sessions):
        """sessions.json: the list `callbacks.SessionClock` keeps."""
        atomic.write_json(self.file(SESSIONS), sessions)

    def save_model(self, name, model):
        """Saves one soup model to `models/<name>_soup.keras`, atomically; returns the path."""
        path = self.model_path(name)
        with atomic.atomic_path(path) as tmp:
            model.save(tmp)
        return path

    # ------------------------------------------------------------------ readers

    def _read_json(self, name, default=None, required=True):
        path = self.file(name)
        if not path.is_file():
            if required:
                raise MissingFileError(
                    f"{path}: file not found ({self.path} is not a complete run dir)")
            return default
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error})") from None

    def read_config(self):
        """config.json as a `tfislr.config.Config` (an older run's in today's terms:
        `tfislr.config.recorded_config`)."""
        return config_from_dict(recorded_config(self._read_json(CONFIG)))

    def read_signs(self):
        """Sign names by label, or None for a run dir without signs.json."""
        return self._read_json(SIGNS, required=False)

    def read_run_info(self):
        """run.json as a dict, or {} when there is none."""
        return self._read_json(RUN_INFO, default={}, required=False)

    def read_metrics(self):
        """metrics.json as a dict, or None before the run wrote it."""
        return self._read_json(METRICS, required=False)

    def read_sessions(self):
        """sessions.json's list of the sessions that trained the run so far ([] before one
        recorded its time; see `callbacks.SessionClock`)."""
        return self._read_json(SESSIONS, default=[], required=False)

    def read_history(self):
        """history.csv as a DataFrame, one row per finished epoch, `epoch` 1-based (also
        for a file an older version wrote: `one_based_epochs`)."""
        import pandas as pd

        path = self.file(HISTORY)
        if not path.exists():
            raise MissingFileError(
                f"{path}: file not found (no training history: was the run started?)")
        history = pd.read_csv(path)
        if "epoch" in history:
            history["epoch"] = one_based_epochs(history["epoch"].tolist())
        return history

    def split(self):
        """The run's train/validation split as run.json recorded it, or None (older runs).

        {"full", "fold", "num_folds", "fold_seed", "original_folds", "val_participants"}: the
        fold settings of `tfislr.data.folds.fold_indices` and the signers they held out.
        """
        info = self.read_run_info()
        if "val_participants" not in info:
            return None
        return {key: info.get(key) for key in SPLIT_KEYS}

    # ------------------------------------------------------------------ training

    @classmethod
    def new(cls, output_dir, config_name):
        """A fresh, empty `<output_dir>/<config_name>/<timestamp>/`, created atomically
        (`new_timestamped_dir`)."""
        return cls(new_timestamped_dir(pathlib.Path(output_dir) / config_name))

    def check_resumable(self, config):
        """Whether training in this dir resumes it; ValueError when it must not be reused.

        Returns False for a fresh (missing or empty) dir, True for a started, unfinished run
        with the same config. Raises for a finished run, for a run started with another
        config and for a folder that is not a run (`check_own_dir`): training never writes
        into the user's other files.
        """
        if not self.is_started:
            check_own_dir(self.path, CONFIG, "a tfislr run")
            return False
        if self.is_finished:
            raise ConfigError(f"{self.path} holds a finished run ({FINISHED} exists); "
                             "choose another --run-dir")
        # What must match (`comparable_config`): not the strategy, and an older run's
        # config.json compared in today's spelling.
        saved = comparable_config(self._read_json(CONFIG))
        current = comparable_config(json.loads(json.dumps(config.to_dict())))
        if saved != current:
            changed = sorted(
                f"{section}.{key}"
                for section in saved if isinstance(saved[section], dict)
                for key in saved[section]
                if saved[section][key] != current.get(section, {}).get(key)
            )
            raise ConfigError(
                f"{self.path} was started with another config (differs in: "
                f"{', '.join(changed) or 'name'}); resume it with the same config and "
                "overrides, or start a new run dir"
            )
        return True


def check_own_dir(path, marker, what):
    """Raises unless `path` is missing, an empty folder or holds `marker`, the file that
    `what` (e.g. "a tfislr run") writes first into its folder.

    Leftovers of a writer killed before the marker (`tfislr.atomic` temporaries, the
    `worker_<i>/` folders of a multi-worker run) do not count as content.

    Raises:
        ConfigError: `path` is a file, or a non-empty folder without `marker`.
    """
    path = pathlib.Path(path)
    if not path.exists() or (path / marker).is_file():
        return
    if not path.is_dir():
        raise ConfigError(f"{path} is a file, not a folder for {what}")
    foreign = sorted(p.name for p in path.iterdir()
                     if not p.name.startswith(atomic.TEMP_PREFIX)
                     and not re.fullmatch(r"worker_\d+", p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(f"{path} is not empty ({shown}) and does not hold {what} (no "
                          f"{marker}); choose a new or empty folder")


SPLIT_KEYS = ("full", "fold", "num_folds", "fold_seed", "original_folds", "val_participants")


# `<output>/<config>/cv/`: the config's cross-validations (`tfislr.training.cross_validation`),
# a folder beside its runs, not one of them.
CV_FOLDER = "cv"


def _runs(output_dir, config_name):
    """(root, the run dirs under it, oldest first by `start_time`); the CV folder is left out."""
    root = pathlib.Path(output_dir) / config_name
    if not root.is_dir():
        return root, []
    return root, [RunDir(p) for p in by_start_time(
        p for p in root.iterdir()
        if p.is_dir() and not (p.name == CV_FOLDER and not RunDir(p).is_started))]


def latest_unfinished(output_dir, config_name):
    """The last started (`start_time`), unfinished run of `config_name` under `output_dir`,
    or None."""
    _, runs = _runs(output_dir, config_name)
    unfinished = [run for run in runs if run.is_started and not run.is_finished]
    return unfinished[-1] if unfinished else None


def resumable_run(output_dir, config):
    """(the run `--resume` continues, or None; notes on the runs it passed over).

    The last started unfinished run of `config.name` that was started with `config` and
    has something to resume from (`RunDir.has_progress`). A run that died before its first
    backed-up epoch, or that was started with another config, is passed over with a note
    (one line each, for the user), so such a run never blocks `--resume`: the command
    starts a new run when none qualifies.
    """
    _, runs = _runs(output_dir, config.name)
    notes = []
    for run in reversed([run for run in runs if run.is_started and not run.is_finished]):
        try:
            run.check_resumable(config)
        except ConfigError as error:
            notes.append(f"passed over {error}")
            continue
        if run.has_progress:
            return run, notes
        notes.append(f"passed over {run.path}: it stopped before its first epoch was backed up "
                     "(nothing to resume from)")
    return None, notes


def is_full_fit(run):
    """True when run.json records that `run` trained on all the data (`--full`)."""
    return bool((run.split() or {}).get("full"))


def latest_finished(output_dir, config_name, weights="distilled", full_fit=False):
    """The last started (`start_time`) finished run of `config_name` that holds `weights`
    (with `full_fit`: only runs trained on all the data, `is_full_fit`); ValueError if none.

    A run started later but still training (or interrupted) is skipped, so exporting
    during training picks the last finished run. Export looks up full fits only: a run
    that validated on a fold is a model of part of the data, used only where named.
    """
    root, runs = _runs(output_dir, config_name)
    if not root.is_dir():
        raise MissingFileError(f"{root}: folder not found (no runs of config '{config_name}')")
    finished = [run for run in runs if run.is_finished and run.weights_path(weights).exists()]
    for run in reversed(finished):
        if not full_fit or is_full_fit(run):
            return run
    if finished:
        raise MissingFileError(
            f"no finished full-fit run of config '{config_name}' under {root}: the finished "
            f"runs ({', '.join(run.name for run in finished)}) each held out a validation "
            f"fold (not trained on all the data), and a fold run is exported only when named: `run: "
            f"{finished[-1].path}` in the ensemble YAML (or `tfislr-export single --run "
            f"{finished[-1].path}`); or train on all clips with `train.py --config "
            f"{config_name} --data-dir D --full`"
        )
    started = [run.name for run in runs if run.is_started]
    folds = sorted(root.glob(f"{CV_FOLDER}/*/fold_*/{FINISHED}"))
    if not started and folds:
        # A CV's fold runs are not picked by config name: each was fitted without one fold.
        raise MissingFileError(
            f"no finished run for config '{config_name}' under {root}: only "
            f"cross-validations (in {root / CV_FOLDER}), whose fold runs a config name never "
            f"picks; train a run with `train.py --config {config_name} --data-dir D --full` "
            f"(all clips) or `--fold K`, or name a fold's run in the ensemble YAML, e.g. "
            f"`run: {folds[-1].parent}`"
        )
    raise MissingFileError(
        f"no finished run for config '{config_name}' under {root}: "
        + (f"none of {started} has {FINISHED} and {RunDir('<run>').weights_path(weights)} "
           "(an interrupted run finishes with `train.py ... --resume`)" if started else
           f"no run dirs (train one with `train.py --config {config_name} ...`)")
    )
