"""One training run, end to end: data → mean-teacher training → soup → run directory.

`train(config, data_dir, ...)` prepares the store on first use, splits a fold (or takes all
data with `full=True`), trains student, EMA teacher and distilled model with the recipe
(docs/recipe.md §9–§15), checkpoints the last `soup_last_n` epochs, soups them, evaluates the
soups against the last epoch and finishes the run directory. The directory's layout, its states
(started, trained, finished) and its writers belong to `tfislr.runs.run_dir.RunDir`.

`train` validates its `RunRequest` once (tfislr/training/request.py) and runs a `TrainingRun`,
whose `run()` reads as its phases: load and split, batch plan (`batch_plan.plan_batches`: the
recipe's global batch split over the replicas), run dir, datasets, model, fit (with its
callbacks), finish. Rerunning with the same `run_dir` resumes an unfinished
run: from its last backed-up epoch while it trains, or straight to the finish once every
epoch is checkpointed.
"""

import contextlib
import dataclasses
import pathlib
import shutil
import time

import keras
import numpy as np

from tfislr.augment import Augmenter
from tfislr.config import MODEL_NAMES
from tfislr.data.folds import fold_indices, fold_scheme
from tfislr.data.kaggle import check_data_dir, read_train_csv
from tfislr.data.pipeline import make_epoch_counter, make_eval_dataset, make_train_dataset
from tfislr.data.prepare import ensure_store
from tfislr.data.store import load_store
from tfislr.errors import DataError
from tfislr.runs import run_dir as run_dir_lib
from tfislr.runs.run_dir import RunDir
from tfislr.training import callbacks as cb
from tfislr.training.batch_plan import plan_batches
from tfislr.training.mean_teacher import build_distiller
from tfislr.training.request import RunRequest
from tfislr.training.soup import ModelTriple, soup_last_checkpoints
from tfislr.training.strategy import task_info, training_tasks
from tfislr.text import plural


def log(message):
    print(f"[tfislr] {message}", flush=True)


def latest_unfinished_run(output_dir, config_name):
    """The newest `<output_dir>/<config_name>/<timestamp>/` that started but did not finish.

    "Finished" is `RunDir.is_finished`; returns None when there is no unfinished run.
    """
    run = run_dir_lib.latest_unfinished(output_dir, config_name)
    return None if run is None else run.path


# ----------------------------------------------------------------------------- load and split


@dataclasses.dataclass
class _Data:
    """The prepared store and this run's split of it (store rows)."""

    store: object
    store_path: pathlib.Path
    train_idx: np.ndarray
    val_idx: np.ndarray  # None in a full fit
    split: dict  # RunDir.split() keys, and fold_scheme ("original", "stratified", None: full)

    @property
    def signs(self):
        return list(self.store.signs)


def _load_and_split(config, data_dir, fold, full):
    data_dir = check_data_dir(data_dir)  # a Path (a validated request's is one already)
    store_path = ensure_store(data_dir, config.data.max_len, config.data.prepared_dir)
    store = load_store(store_path)
    if len(store.signs) < 2:
        raise DataError(f"{data_dir}: the sign map has {plural(len(store.signs), 'sign')}; need at least 2")
    train_idx, val_idx, split = _split(store, config, fold, full, data_dir)
    return _Data(store, store_path, train_idx, val_idx, split)


def _split(store, config, fold, full, data_dir):
    """(train_idx, val_idx, split) as store rows and the split's record for run.json.

    Folds are assigned on the data's full train.csv, not on the store's manifest, so a
    file that preparation skipped cannot move a signer to another fold: the split is the
    one `python -m tfislr.evaluate --fold K` scores.
    """
    if full:
        split = {"full": True, "fold": None, "num_folds": None, "fold_seed": None,
                 "original_folds": None, "fold_scheme": None, "val_participants": []}
        return np.arange(len(store), dtype=np.int64), None, split
    fold = 0 if fold is None else fold
    table = read_train_csv(data_dir)
    folds = {"num_folds": config.data.num_folds, "seed": config.data.fold_seed,
             "original": config.data.original_folds}
    _, val_rows = fold_indices(table, fold, **folds)
    scheme, line = fold_scheme(table, **folds)
    log(f"validation fold {fold}: {line}")
    val_participants = sorted(int(p) for p in table["participant_id"].iloc[val_rows].unique())
    in_val = store.manifest["participant_id"].isin(val_participants).to_numpy()
    split = {"full": False, "fold": fold, "num_folds": config.data.num_folds,
             "fold_seed": config.data.fold_seed, "original_folds": config.data.original_folds,
             "fold_scheme": scheme, "val_participants": val_participants}
    return np.flatnonzero(~in_val), np.flatnonzero(in_val), split


# ----------------------------------------------------------------------------- run dir


def _open_run_dir(config, output_dir, run_dir, data, strategy, plan, data_dir):
    """(chief RunDir, this process's RunDir, run.json's dict), with the run's files written.

    Non-chief workers of a multi-worker run keep their own (stable) copy of the files they
    must write, in `worker_<index>/`, so the chief's files are never written twice.
    """
    chief = RunDir.new(output_dir, config.name) if run_dir is None else RunDir(run_dir)
    resume = chief.check_resumable(config)
    _, task_index, is_chief = task_info()
    files = _process_files(chief, task_index, is_chief)
    files.path.mkdir(parents=True, exist_ok=True)
    run_info = {
        "config": config.name,
        "data_dir": str(data_dir),
        "store": str(data.store_path),
        **data.split,
        "num_classes": len(data.signs),
        "num_train": int(len(data.train_idx)),
        "num_val": 0 if data.val_idx is None else int(len(data.val_idx)),
        "strategy": type(strategy).__name__,
        # Where and how this run computes: the config's runtime section, and what its
        # strategy gave here (for a tf.distribute.Strategy that a caller built, these two
        # say what ran; runtime.strategy stays the config's name).
        "runtime": {**dataclasses.asdict(config.runtime),
                    "strategy_class": type(strategy).__name__, "replicas": plan.replicas},
        "batch_plan": plan.to_dict(),
    }
    if is_chief:
        chief.write_config(config)
        chief.write_signs(data.signs)
        chief.write_run_info(run_info)
    log(f"{'resuming' if resume else 'run dir'}: {chief.path}")
    log(
        f"{config.name}: {run_info['num_train']} train / {run_info['num_val']} val sequences, "
        f"{plural(run_info['num_classes'], 'sign')}, global batch {plan.global_batch_size} = "
        f"{plural(plan.replicas, 'replica')} × {plan.per_replica_batch_size}, "
        f"{plural(plan.steps_per_epoch, 'step')} × {plural(config.train.epochs, 'epoch')}"
    )
    return chief, files, run_info


def _process_files(chief, task_index, is_chief):
    """The RunDir a process of the cluster writes (see `_open_run_dir`)."""
    return chief if is_chief else RunDir(chief.path / f"worker_{task_index}")


# ----------------------------------------------------------------------------- datasets, model


@contextlib.contextmanager
def _precision(config):
    """Sets the run's Keras dtype policy; restores the previous one on exit."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(config.runtime.precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@dataclasses.dataclass
class _Datasets:
    train: object
    val: object  # None without a validation split
    augmenter: object
    epoch_counter: object


def _datasets(config, data, plan):
    augmenter = Augmenter(config.augment) if config.augment.enabled else None
    epoch_counter = make_epoch_counter()
    # One iterator for the whole fit (`_fit`), each epoch's number carried by its elements.
    train_ds = make_train_dataset(
        data.store, data.train_idx, plan.global_batch_size, config.data.max_len,
        seed=config.train.seed, augmenter=augmenter, epoch_counter=epoch_counter,
        cutmix_other_signer=config.augment.face_cutmix_other_signer,
        repeat=True, epochs=config.train.epochs,
        # Where the views are augmented (the distiller does it when not here: build_distiller).
        augment_device=config.augment.device if augmenter is not None else "host",
    )
    val_ds = None
    if data.val_idx is not None and len(data.val_idx):
        val_ds = make_eval_dataset(
            data.store, data.val_idx, plan.eval_global_batch_size, config.data.max_len
        )
    return _Datasets(train_ds, val_ds, augmenter, epoch_counter)


def _model(config, strategy, num_classes, plan, build_model):
    """(distiller, triple) built under the strategy's scope."""
    with strategy.scope():
        distiller = build_distiller(config, num_classes, plan.steps_per_epoch, build_model)
        triple = ModelTriple(distiller.student, distiller.teacher, distiller.distilled)
    return distiller, triple


# ----------------------------------------------------------------------------- fit


# ----------------------------------------------------------------------------- finish


def _accuracies(distiller, dataset):
    logs = distiller.evaluate(dataset, verbose=0, return_dict=True)
    return {name: float(logs[f"{name}_accuracy"]) for name in MODEL_NAMES}


def _predictions(model, dataset):
    labels, predicted = [], []
    for inputs, batch_labels in dataset:
        predicted.append(np.argmax(model(inputs, training=False), axis=-1))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(labels), np.concatenate(predicted)


def _save_plots(run_dir, labels, predictions, signs):
    from tfislr import plots  # matplotlib: only when a run finishes

    try:
        written = plots.save_run_plots(run_dir, labels=labels, predictions=predictions, signs=signs)
    except Exception as error:  # plots must never lose a finished run
        log(f"plots failed ({type(error).__name__}: {error}); the run itself is complete")
        return []
    log(f"plots: {', '.join(str(p) for p in written)}")
    return written


def _soup_and_score(config, checkpoints_dir, distiller, triple, val_ds):
    """Soups the checkpoints into `triple`; returns the metrics' models and soup epochs."""
    last = _accuracies(distiller, val_ds) if val_ds is not None else None
    soup_epochs = soup_last_checkpoints(triple, checkpoints_dir, config.train.soup_last_n)
    log(f"soup of epochs {soup_epochs[0]}–{soup_epochs[-1]} ({plural(len(soup_epochs), 'checkpoint')})")
    if val_ds is None:
        log("full fit: no validation set, so no accuracies")
        return {name: {"last_epoch_accuracy": None, "soup_accuracy": None}
                for name in MODEL_NAMES}, soup_epochs
    souped = _accuracies(distiller, val_ds)
    models = {}
    for name in MODEL_NAMES:
        models[name] = {"last_epoch_accuracy": last[name], "soup_accuracy": souped[name]}
        log(f"{name:9s} val accuracy: last epoch {last[name]:.4f}, soup {souped[name]:.4f}")
    return models, soup_epochs


# ----------------------------------------------------------------------------- train


class TrainingRun:
    """One training run, its phases as methods over what they share.

    Built from a `RunRequest` (validated here unless it already is); `run()` loads and
    splits the data, plans the batches, opens the run dir, builds the datasets and models,
    fits (or, once every epoch is checkpointed, goes straight to the finish) and finishes:
    soup, metrics, plots, the finished marker. Attributes set along the way: `data`,
    `plan`, `chief`/`files` (the run dir and this process's copy), `run_info`, `clock`,
    `datasets`, `distiller`, `triple`.
    """

    def __init__(self, request, verbose="auto", build_model=None):
        self.request = request.validate()
        self.config = self.request.config
        self.strategy = self.request.strategy
        self.verbose = verbose
        self.build_model = build_model

    def run(self):
        """Trains (or resumes, or finishes) the run; returns its run dir (a Path)."""
        config, request = self.config, self.request
        started = time.time()  # this session's; `wall_seconds` sums every session's
        self.data = _load_and_split(config, request.data_dir, request.validation_fold,
                                    request.full)
        self.plan = plan_batches(config, len(self.data.train_idx),
                                 self.strategy.num_replicas_in_sync)
        self.chief, self.files, self.run_info = _open_run_dir(
            config, request.output_dir, request.run_dir, self.data, self.strategy, self.plan,
            request.data_dir)
        self.clock = cb.SessionClock(self.files, started)
        with _precision(config), self.clock:
            keras.utils.set_random_seed(config.train.seed)
            self.datasets = _datasets(config, self.data, self.plan)
            self.distiller, self.triple = _model(config, self.strategy, len(self.data.signs),
                                                 self.plan, self.build_model)
            # Decided on the chief's files, so every worker of a cluster takes the same path.
            if self.chief.is_trained(config.train.epochs):
                log("every epoch is checkpointed: finishing the run")
                # The last epoch's weights, for the last-epoch accuracies.
                self.triple.load_weights(self.chief.checkpoint_path(config.train.epochs))
            else:
                self._fit()
            metrics = self._finish()
        sessions = f" over {metrics['sessions']} sessions" if metrics["sessions"] > 1 else ""
        log(f"done in {metrics['wall_seconds']:.0f} s{sessions}: {self.chief.path}")
        return self.chief.path

    def _callbacks(self):
        epochs, files, datasets = self.config.train.epochs, self.files, self.datasets
        return [
            cb.EpochState(self.distiller, epochs, augmenter=datasets.augmenter,
                          epoch_counter=datasets.epoch_counter),
            cb.EpochTimer(),
            cb.FirstStepNotice(log),
            cb.StopOnNonFiniteLoss(self.plan.steps_per_epoch),
            cb.SoupCheckpoint(self.triple, files.checkpoints_dir, epochs,
                              self.config.train.soup_last_n),
            cb.EpochHistory(files.file(run_dir_lib.HISTORY)),
            cb.ScalarSummaries(str(files.tb_dir)),
            self.clock,
            # Last: an epoch counts as done only once everything above is on disk. Every
            # process of a cluster resumes at the last epoch all of them backed up.
            cb.BackupAndRestore(str(files.backup_dir), cluster_backup_dirs=[
                str(_process_files(self.chief, index, is_chief).backup_dir)
                for _, index, is_chief in training_tasks()]),
        ]

    def _fit(self):
        # With steps_per_epoch and a dataset of unknown length, Keras keeps the training
        # iterator from epoch to epoch: one iterator per fit, no per-epoch restart of the
        # pipeline (seconds per epoch). The iterator starts at the first epoch of the fit
        # (`EpochState` sets the counter), which is how a resumed run replays its epochs.
        self.distiller.fit(
            self.datasets.train, epochs=self.config.train.epochs,
            steps_per_epoch=self.plan.steps_per_epoch, validation_data=self.datasets.val,
            callbacks=self._callbacks(), verbose=self.verbose,
            shuffle=False,  # the dataset shuffles itself, per epoch
        )

    def _finish(self):
        """Soup, soup models, metrics, plots, then the finished marker (last); the metrics.

        `wall_seconds` is the run's wall time over every session that trained it (`clock`, a
        `callbacks.SessionClock`: a killed session counts up to its last completed epoch);
        `sessions` their number.

        The soup reads this process's checkpoints, or the chief's when a resumed run skipped
        the fit (a worker's own copy may already be cleaned up).
        """
        chief, files, triple, val = self.chief, self.files, self.triple, self.datasets.val
        source = files if files.is_trained(self.config.train.epochs) else chief
        models, soup_epochs = _soup_and_score(self.config, source.checkpoints_dir,
                                              self.distiller, triple, val)
        for name, model in triple.named_models().items():
            files.save_model(name, model)
        sessions = self.clock.record()
        metrics = {"run": self.run_info, "models": models, "soup_epochs": soup_epochs,
                   "wall_seconds": round(sum(s["seconds"] for s in sessions), 1),
                   "sessions": len(sessions)}
        if files is not chief:
            shutil.rmtree(files.path, ignore_errors=True)
            return metrics
        labels = predictions = None
        if val is not None:  # the chief predicts the global batches itself: any replicas
            labels, predictions = _predictions(self.distiller.distilled, val)
        chief.write_metrics(metrics)
        _save_plots(chief.path, labels, predictions, self.data.signs)
        chief.mark_finished(wall_seconds=metrics["wall_seconds"], sessions=metrics["sessions"])
        return metrics


def train(
    config,
    data_dir,
    output_dir="runs",
    fold=None,
    full=False,
    strategy=None,
    run_dir=None,
    verbose="auto",
    build_model=None,
):
    """Trains one run; returns its run directory (a `pathlib.Path`; see `run_dir.RunDir`).

    Args:
        config: a `tfislr.config.Config` (epochs etc. already overridden).
        data_dir: Kaggle layout (train.csv, sign_to_prediction_index_map.json,
            train_landmark_files/); the prepared store is built on first use.
        output_dir: runs root; the run goes to `<output_dir>/<config.name>/<timestamp>/`.
        fold: validation fold (default 0); ignored with `full`.
        full: train on all data, no validation (the original's full fit).
        strategy: None: the config's `runtime.strategy`; or a `get_strategy` name (it
            replaces the config's) or a `tf.distribute.Strategy`. `cpu:N` / `gpu:N` must be
            resolved before TF initialises, i.e. by the CLI at process start.
        run_dir: use exactly this directory; an unfinished run there is resumed.
        verbose: Keras `fit` verbosity ("auto", 0, 1 progress bar, 2 one line per epoch).
        build_model: classifier factory (default `tfislr.model.build_classifier`).

    Raises:
        ValueError: bad arguments or data, a finished `run_dir`, a `run_dir` started
            with another config, a non-empty `run_dir` that is not a run, or no `run_dir`
            in a multi-worker cluster.
        ConfigError (a ValueError): `run_dir`, else `output_dir`, cannot be written
            (`atomic.check_writable_dir`), found before any data is read.
    """
    request = RunRequest(config, data_dir, output_dir=output_dir, run_dir=run_dir, fold=fold,
                         full=full, strategy=strategy)
    return TrainingRun(request, verbose=verbose, build_model=build_model).run()
