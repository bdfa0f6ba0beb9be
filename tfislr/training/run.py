"""One training run, end to end: data → mean-teacher training → soup → run directory.

`train(config, data_dir, ...)` prepares the store on first use, splits a fold (or takes all
data with `full=True`), trains student, EMA teacher and distilled model with the recipe of
seed-spec §8–§9, checkpoints the last `soup_last_n` epochs, soups them, evaluates the soups
against the last epoch, and writes the run directory:

    runs/<config>/<timestamp>/
      config.json        the resolved config (tfislr.config.config_from_dict reads it back)
      signs.json         sign names by label (from the data's sign map)
      run.json           fold, sizes, strategy and the batch plan (global and per-replica
                         batch, replicas, steps per epoch, total steps) of this run
      history.csv        one row per epoch: losses, val accuracy of the 3 models, lr, seconds
      tb/                TensorBoard scalars (train/, validation/)
      backup/            BackupAndRestore state while the run is unfinished (resume)
      checkpoints/       epoch_XXX.weights.h5: the 3 models, last soup_last_n epochs
      models/            {student,teacher,distilled}_soup.keras
      metrics.json       val accuracy per model: last epoch vs soup
      plots/             training curves; the confusion matrix when there is a validation split

Rerunning with the same `run_dir` resumes an interrupted run from its last finished epoch.
"""

import datetime
import json
import pathlib
import shutil
import time

import numpy as np

from tfislr.config import Config
from tfislr.errors import ConfigError, DataError, MissingFileError

MODEL_NAMES = ("student", "teacher", "distilled")


def log(message):
    print(f"[tfislr] {message}", flush=True)


def _timestamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _json_dump(path, value):
    tmp = pathlib.Path(f"{path}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def latest_unfinished_run(output_dir, config_name):
    """The newest `<output_dir>/<config_name>/<timestamp>/` that started but did not finish.

    A run has started once `config.json` is written and finished once `metrics.json` is;
    returns None when there is no unfinished run.
    """
    started = sorted((pathlib.Path(output_dir) / config_name).glob("*/config.json"))
    unfinished = [p.parent for p in started if not (p.parent / "metrics.json").exists()]
    return unfinished[-1] if unfinished else None


def _prepare_run_dir(config, output_dir, run_dir):
    """The run dir to use, and whether an unfinished run there is resumed."""
    if run_dir is None:
        run_dir = pathlib.Path(output_dir) / config.name / _timestamp()
        while run_dir.exists():  # two runs started within the same second
            run_dir = run_dir.with_name(run_dir.name + "_1")
    run_dir = pathlib.Path(run_dir)
    resume = False
    config_path = run_dir / "config.json"
    if config_path.exists():
        if (run_dir / "metrics.json").exists():
            raise ConfigError(f"{run_dir} holds a finished run (metrics.json exists); "
                             "choose another --run-dir")
        saved = json.loads(config_path.read_text())
        if saved != json.loads(json.dumps(config.to_dict())):
            changed = sorted(
                f"{section}.{key}"
                for section in saved if isinstance(saved[section], dict)
                for key in saved[section]
                if saved[section][key] != config.to_dict().get(section, {}).get(key)
            )
            raise ConfigError(
                f"{run_dir} was started with another config (differs in: "
                f"{', '.join(changed) or 'name'}); resume it with the same config and "
                "overrides, or start a new run dir"
            )
        resume = True
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, resume


def _split(store, config, fold, full, data_dir):
    """(train_idx, val_idx, val_participants) as store rows.

    Folds are assigned on the data's full train.csv, not on the store's manifest, so a
    file that preparation skipped cannot move a signer to another fold: the split is the
    one `python -m tfislr.evaluate --fold K` scores.
    """
    from tfislr.data.folds import fold_indices
    from tfislr.data.kaggle import read_train_csv

    if full:
        return np.arange(len(store), dtype=np.int64), None, []
    fold = 0 if fold is None else fold
    table = read_train_csv(data_dir)
    _, val_rows = fold_indices(
        table, fold, num_folds=config.data.num_folds, seed=config.data.fold_seed,
        original=config.data.original_folds,
    )
    val_participants = sorted(int(p) for p in table["participant_id"].iloc[val_rows].unique())
    in_val = store.manifest["participant_id"].isin(val_participants).to_numpy()
    return np.flatnonzero(~in_val), np.flatnonzero(in_val), val_participants


def _set_precision(config):
    import keras

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(config.train.precision)
    return previous


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
    from tfislr import plots

    try:
        written = plots.save_run_plots(run_dir, labels=labels, predictions=predictions, signs=signs)
    except Exception as error:  # plots must never lose a finished run
        log(f"plots failed ({type(error).__name__}: {error}); the run itself is complete")
        return []
    log(f"plots: {', '.join(str(p) for p in written)}")
    return written


def train(
    config,
    data_dir,
    output_dir="runs",
    fold=None,
    full=False,
    strategy="default",
    run_dir=None,
    verbose="auto",
    build_model=None,
):
    """Trains one run; returns its run directory (see the module docstring).

    Args:
        config: a `tfislr.config.Config` (epochs etc. already overridden).
        data_dir: Kaggle layout (train.csv, sign_to_prediction_index_map.json,
            train_landmark_files/); the prepared store is built on first use.
        output_dir: runs root; the run goes to `<output_dir>/<config.name>/<timestamp>/`.
        fold: validation fold (default 0); ignored with `full`.
        full: train on all data, no validation (the original's full fit).
        strategy: a `get_strategy` name or a `tf.distribute.Strategy`. `cpu:N` / `gpu:N` must be
            resolved before TF initialises, i.e. by the CLI at process start.
        run_dir: use exactly this directory; an unfinished run there is resumed.
        verbose: Keras `fit` verbosity ("auto", 0, 1 progress bar, 2 one line per epoch).
        build_model: classifier factory (default `tfislr.model.build_classifier`).
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a tfislr.config.Config, got {type(config).__name__}")
    if fold is not None and full:
        raise ValueError("give either a fold or full=True, not both")
    started = time.time()

    from tfislr.training.strategy import get_strategy, task_info

    strategy = get_strategy(strategy)

    import keras

    from tfislr.augment import Augmenter
    from tfislr.data.pipeline import make_epoch_counter, make_eval_dataset, make_train_dataset
    from tfislr.data.prepare import ensure_store
    from tfislr.data.store import load_store
    from tfislr.training import callbacks as cb
    from tfislr.training.batch_plan import plan_batches
    from tfislr.training.mean_teacher import build_distiller
    from tfislr.training.soup import ModelTriple, soup_last_checkpoints

    data_dir = pathlib.Path(data_dir)
    if not (data_dir / "train.csv").exists():
        raise MissingFileError(
            f"{data_dir}: no train.csv; --data-dir must be a Kaggle-layout folder"
        )
    _, task_index, is_chief = task_info()

    store_path = ensure_store(data_dir, config.data.max_len, config.data.prepared_dir)
    store = load_store(store_path)
    signs = list(store.signs)
    num_classes = len(signs)
    if num_classes < 2:
        raise DataError(f"{data_dir}: the sign map has {num_classes} sign(s); need at least 2")
    train_idx, val_idx, val_participants = _split(store, config, fold, full, data_dir)

    replicas = strategy.num_replicas_in_sync
    plan = plan_batches(config, len(train_idx), replicas)
    steps_per_epoch = plan.steps_per_epoch
    epochs = config.train.epochs

    chief_dir, resume = _prepare_run_dir(config, output_dir, run_dir)
    # Non-chief workers of a multi-worker run keep their own (stable) copy of the files
    # they must write, so the chief's files are never written twice.
    run_dir = chief_dir if is_chief else chief_dir / f"worker_{task_index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_info = {
        "config": config.name,
        "data_dir": str(data_dir),
        "store": str(store_path),
        "fold": None if full else (0 if fold is None else fold),
        "full": bool(full),
        "num_classes": num_classes,
        "num_train": int(len(train_idx)),
        "num_val": 0 if val_idx is None else int(len(val_idx)),
        "val_participants": val_participants,
        "strategy": type(strategy).__name__,
        "batch_plan": plan.to_dict(),
    }
    if is_chief:
        config.to_json(run_dir / "config.json")
        _json_dump(run_dir / "signs.json", signs)
        _json_dump(run_dir / "run.json", run_info)
    log(f"{'resuming' if resume else 'run dir'}: {chief_dir}")
    log(
        f"{config.name}: {len(train_idx)} train / {run_info['num_val']} val sequences, "
        f"{num_classes} signs, global batch {plan.global_batch_size} = {replicas} replica(s) × "
        f"{plan.per_replica_batch_size}, {steps_per_epoch} steps × {epochs} epochs"
    )

    previous_policy = _set_precision(config)
    try:
        keras.utils.set_random_seed(config.train.seed)
        augmenter = Augmenter(config.augment) if config.augment.enabled else None
        epoch_counter = make_epoch_counter()
        train_ds = make_train_dataset(
            store, train_idx, plan.global_batch_size, config.data.max_len,
            seed=config.train.seed, augmenter=augmenter, epoch_counter=epoch_counter,
            cutmix_other_signer=config.augment.face_cutmix_other_signer,
        )
        val_ds = None
        if val_idx is not None and len(val_idx):
            val_ds = make_eval_dataset(
                store, val_idx, plan.eval_global_batch_size, config.data.max_len
            )
        with strategy.scope():
            distiller = build_distiller(config, num_classes, steps_per_epoch, build_model)
            triple = ModelTriple(distiller.student, distiller.teacher, distiller.distilled)
        callbacks = [
            cb.EpochState(distiller, epochs, augmenter=augmenter, epoch_counter=epoch_counter),
            cb.EpochTimer(),
            cb.StopOnNonFiniteLoss(steps_per_epoch),
            cb.SoupCheckpoint(triple, run_dir / "checkpoints", epochs, config.train.soup_last_n),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            cb.ScalarSummaries(str(run_dir / "tb")),
            # Last: an epoch counts as done only once everything above is on disk.
            keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        ]
        distiller.fit(
            train_ds, epochs=epochs, validation_data=val_ds, callbacks=callbacks,
            verbose=verbose, shuffle=False,  # the dataset shuffles itself, per epoch
        )

        metrics = {"run": run_info, "models": {}}
        if val_ds is not None:
            last = _accuracies(distiller, val_ds)
        soup_epochs = soup_last_checkpoints(
            triple, run_dir / "checkpoints", config.train.soup_last_n
        )
        log(f"soup of epochs {soup_epochs[0]}–{soup_epochs[-1]} ({len(soup_epochs)} checkpoints)")
        metrics["soup_epochs"] = soup_epochs
        if val_ds is not None:
            souped = _accuracies(distiller, val_ds)
            for name in MODEL_NAMES:
                metrics["models"][name] = {
                    "last_epoch_accuracy": last[name], "soup_accuracy": souped[name]
                }
                log(f"{name:9s} val accuracy: last epoch {last[name]:.4f}, soup {souped[name]:.4f}")
        else:
            log("full fit: no validation set, so no accuracies")
            for name in MODEL_NAMES:
                metrics["models"][name] = {"last_epoch_accuracy": None, "soup_accuracy": None}
        models_dir = run_dir / "models"
        models_dir.mkdir(exist_ok=True)
        for name, model in triple.named_models().items():
            model.save(models_dir / f"{name}_soup.keras")
        metrics["wall_seconds"] = round(time.time() - started, 1)

        labels = predictions = None
        if is_chief and val_ds is not None and replicas == 1:
            labels, predictions = _predictions(distiller.distilled, val_ds)
        if is_chief:
            _json_dump(run_dir / "metrics.json", metrics)
            _save_plots(run_dir, labels, predictions, signs)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        log(f"done in {metrics['wall_seconds']:.0f} s: {chief_dir}")
        return chief_dir
    finally:
        keras.config.set_dtype_policy(previous_policy)
