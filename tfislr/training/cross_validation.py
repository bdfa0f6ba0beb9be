"""Cross-validation: every fold of a config, one after another, and its out-of-fold predictions.

    cross_validate(config, data_dir, output_dir="runs", ...)   # the command: tfislr-cv

Each fold's run lands in `<output>/<config>/cv/<timestamp>/fold_<k>/`, its held-out
predictions next to it, then `oof.parquet` and the report (layout and lookups:
`tfislr.runs.cv_dir`; the OOF format: `tfislr.runs.oof`). The report also names the folds
skipped (an original fold none of whose signers the data holds: no clip to predict).

Folds are trained one after another with `tfislr.training.run.train`, validation fold k
for fold k, so the split is the one `train.py --fold k` and `evaluate --fold k` use. A
killed CV resumes where it stopped: rerun the same command with `--resume` (the newest
unfinished CV of the config) or `--cv-dir DIR`. Finished folds are not retrained, the
unfinished one continues from its last finished epoch, missing predictions are redone.

The OOF predictions are those of the model that is exported (default: the distilled soup,
the original's "small + soup", whose CV was 0.7402 for len25 and 0.7395 for len80); blend
several configs' with `python -m tfislr.blend`.
"""

import pathlib

import numpy as np

from tfislr import atomic
from tfislr.errors import ConfigError, DataError
from tfislr.runs.cv_dir import (OOF_FILE, REPORT_FILE, REPORT_TEXT_FILE, fold_dir, fold_oof_path,
                                open_cv_dir)
from tfislr.runs.members import WEIGHT_CHOICES  # which soup predicts the held-out clips
from tfislr.runs.oof import OutOfFold, read_oof, write_oof
from tfislr.runs.run_dir import RunDir
from tfislr.training.request import RunRequest
from tfislr.text import plural


def _log(message):
    print(f"[tfislr cv] {message}", flush=True)


def predict_logits(model, dataset):
    """float32 logits `[N, num_classes]` of `model` (training=False) on a dataset of inputs.

    One `tf.function` of this model, traced once for the dataset's element spec. Keras'
    `predict` would do the same, but the predict functions of all Keras models share one
    Python code object, whose traces TF counts together: from the fifth fold whose clips
    fit one batch on, it warns of "retracing" although each fold's model traces once.
    """
    import functools

    import tensorflow as tf

    call = tf.function(functools.partial(model.__call__, training=False),
                       input_signature=[dataset.element_spec])
    return np.concatenate([np.asarray(call(batch), dtype=np.float32) for batch in dataset])


def predict_fold(run_dir, fold, store, weights="distilled", batch_size=128):
    """`OutOfFold` of one finished run: its validation clips, predicted by its soup.

    The validation clips are the store rows of the signers the run held out (its recorded
    split), so they are exactly the ones the run validated on. Probabilities are the float32
    softmax of the logits, as in the exported graph.
    """
    from scipy.special import softmax

    from tfislr.data.pipeline import make_eval_dataset
    from tfislr.model.precision import float32_model
    from tfislr.runs.members import load_trained

    run_dir = pathlib.Path(run_dir)
    split = RunDir(run_dir).split()
    if split is None or split["full"]:
        raise DataError(f"{run_dir}: no validation split recorded in run.json")
    manifest = store.manifest
    rows = np.flatnonzero(manifest["participant_id"].isin(split["val_participants"]).to_numpy())
    if len(rows) == 0:
        raise DataError(f"{run_dir}: its validation signers have no clips in {store.path}")
    member = load_trained(run_dir, weights)
    # float32 whatever policy the run trained under, as the exported graph computes.
    model = float32_model(member.model)
    dataset = make_eval_dataset(store, rows, batch_size, member.config.data.max_len).map(
        lambda x, y: x)
    logits = predict_logits(model, dataset)
    predicted = softmax(logits, axis=-1).astype(np.float32)
    table = manifest.iloc[rows][["sequence_id", "participant_id", "label"]].copy()
    table["fold"] = fold
    return OutOfFold(table, predicted, member.signs or list(store.signs),
                     {"run_dir": str(run_dir), "weights": weights})


def combine_folds(fold_oofs, store, info):
    """One `OutOfFold` from the folds'; every store clip must appear exactly once."""
    import pandas as pd

    oof = OutOfFold(
        pd.concat([f.table for f in fold_oofs], ignore_index=True),
        np.concatenate([f.probabilities for f in fold_oofs]),
        fold_oofs[0].signs,
        info,
    )
    expected = np.sort(store.manifest["sequence_id"].to_numpy())
    if not np.array_equal(oof.table["sequence_id"].to_numpy(), expected):
        missing = np.setdiff1d(expected, oof.table["sequence_id"].to_numpy())
        raise DataError(
            f"the folds' predictions do not cover the store's {plural(len(expected), 'clip')} exactly "
            f"once ({len(oof)} predicted, {len(missing)} missing, e.g. {missing[:3].tolist()}); "
            "were the folds trained on another data dir or fold setting?"
        )
    return oof


def format_report(report):
    """A few lines: accuracy per fold and overall, the runs' own figures, where things are."""
    lines = [
        f"cross-validation of {report['config']} ({report['weights']} soup), "
        f"{plural(report['clips'], 'clip')}, {plural(len(report['folds']), 'fold')}"
        + "".join(f" (fold {fold} skipped: no clips)" for fold in report.get("skipped_folds", {})),
        f"  {'fold':<6}{'clips':>8}{'accuracy':>10}{'run metrics':>13}",
    ]
    for fold in report["folds"]:
        run_accuracy = fold["run_soup_accuracy"]
        lines.append(
            f"  {fold['fold']:<6}{fold['clips']:>8,}{fold['accuracy']:>10.4f}"
            f"{'-' if run_accuracy is None else format(run_accuracy, '.4f'):>13}"
        )
    lines.append(f"  {'CV':<6}{report['clips']:>8,}{report['accuracy']:>10.4f}   (all clips "
                 "together = clip-weighted mean of the folds)")
    if report["not_in_store"]:
        lines.append(f"  {plural(report['not_in_store'], 'clip')} of train.csv were skipped by the "
                     "prepare step and have no prediction (see the store's skipped.csv)")
    lines.append(f"  OOF predictions: {report['oof']}")
    return "\n".join(lines)


def _report(cv_dir, config, weights, oof, num_listed, skipped_folds=None):
    scores = oof.scores()
    folds = []
    for fold, values in sorted(scores["folds"].items()):
        metrics = RunDir(fold_dir(cv_dir, fold)).read_metrics()
        run_accuracy = metrics["models"].get(weights, {}).get("soup_accuracy")
        folds.append({"fold": fold, **values, "run_soup_accuracy": run_accuracy,
                      "run_dir": str(fold_dir(cv_dir, fold))})
    report = {
        "config": config.name,
        "weights": weights,
        "num_signs": len(oof.signs),
        "clips": scores["clips"],
        "accuracy": scores["accuracy"],
        "folds": folds,
        "skipped_folds": {str(k): v for k, v in (skipped_folds or {}).items()},
        "not_in_store": int(num_listed - len(oof)),
        "oof": str(pathlib.Path(cv_dir) / OOF_FILE),
    }
    text = format_report(report)
    atomic.write_text(pathlib.Path(cv_dir) / REPORT_TEXT_FILE, text + "\n")
    atomic.write_json(pathlib.Path(cv_dir) / REPORT_FILE, report)  # last: marks the CV finished
    return report, text


def cross_validate(
    config,
    data_dir,
    output_dir="runs",
    cv_dir=None,
    strategy=None,
    weights="distilled",
    verbose="auto",
    build_model=None,
):
    """Trains every fold of `config` and writes the OOF predictions; returns the CV dir.

    Args:
        config: a `tfislr.config.Config`; its `data.num_folds` folds are trained, those
            holding no clip of the data skipped (`tfislr.data.folds.cv_folds`).
        data_dir: Kaggle layout (see `tfislr.training.run.train`).
        output_dir: runs root; the CV goes to `<output_dir>/<config.name>/cv/<timestamp>/`.
        cv_dir: use exactly this folder; an unfinished CV there is resumed.
        strategy: None (the config's `runtime.strategy`), a `get_strategy` name or a
            `tf.distribute.Strategy` (as for `train`).
        weights: which soup predicts the held-out clips: distilled (exported), student,
            teacher.
        verbose: Keras `fit` verbosity.
        build_model: classifier factory passed to `train` (tests use a small stand-in).

    Raises:
        ConfigError: a bad argument, a finished or differently configured `cv_dir`, or
            `cv_dir` (else `output_dir`) cannot be written (checked before any work).
        DataError: no Kaggle layout at `data_dir`, or what `train` raises.
    """
    request = RunRequest(config, data_dir, output_dir=output_dir, run_dir=cv_dir,
                         strategy=strategy, cv=True)
    return CrossValidation(request, weights, verbose, build_model).run()


class CrossValidation:
    """Every fold of a validated CV `RunRequest` as a `TrainingRun`, then the OOF file and
    the report. `run()` returns the CV dir; `cv_dir`, `folds` and `store` are set on the way.
    """

    def __init__(self, request, weights="distilled", verbose="auto", build_model=None):
        if weights not in WEIGHT_CHOICES:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, "
                              f"got {weights!r}")
        if not request.cv:
            raise ValueError("CrossValidation needs a cross-validation request (cv=True)")
        self.request = request.validate()  # before the CV dir and any fold's store
        self.config = self.request.config
        self.weights, self.verbose, self.build_model = weights, verbose, build_model
        self.store = None

    def run(self):
        from tfislr.training.strategy import task_info

        _, _, is_chief = task_info()
        table = self._plan_folds()
        request, config = self.request, self.config
        if is_chief:
            self.cv_dir = open_cv_dir(config, request.data_dir, self.weights,
                                      request.output_dir, request.run_dir, log=_log)
        else:
            self.cv_dir = request.run_dir
        fold_oofs = []
        for fold in self.folds:
            self._train_fold(fold)
            if is_chief:
                fold_oofs.append(self._fold_oof(fold))
        if not is_chief:
            return self.cv_dir
        info = {"config": config.name, "weights": self.weights, "cv_dir": str(self.cv_dir),
                "data_dir": str(request.data_dir.resolve())}
        oof = combine_folds(fold_oofs, self._store(), info)
        write_oof(oof, self.cv_dir / OOF_FILE)
        _, text = _report(self.cv_dir, config, self.weights, oof, len(table), self.skipped)
        print(text, flush=True)
        return self.cv_dir

    def _plan_folds(self):
        """Decides every fold before any is trained: a bad fold setting fails here, not
        after hours of training, and an empty fold (see `cv_folds`) is skipped, said up
        front. Returns train.csv's table."""
        from tfislr.data.folds import cv_folds, fold_scheme
        from tfislr.data.kaggle import read_train_csv

        data = self.config.data
        table = read_train_csv(self.request.data_dir)
        self.folds, self.skipped = cv_folds(table, data.num_folds, seed=data.fold_seed,
                                            original=data.original_folds)
        _log(fold_scheme(table, data.num_folds, data.fold_seed, data.original_folds)[1])
        for fold, why in self.skipped.items():
            _log(f"fold {fold}/{data.num_folds}: skipped: {why}; the CV is over folds "
                 f"{', '.join(map(str, self.folds))}, which hold every clip")
        return table

    def _train_fold(self, fold):
        """Fold `fold`'s run, unless it finished before (then it is not retrained)."""
        from tfislr.training.run import TrainingRun

        num_folds = self.config.data.num_folds
        run_dir = fold_dir(self.cv_dir, fold)
        if RunDir(run_dir).is_finished:
            _log(f"fold {fold}/{num_folds}: finished before, not retrained ({run_dir})")
            return
        _log(f"fold {fold}/{num_folds}: training ({run_dir})")
        TrainingRun(self.request.for_fold(fold, run_dir), verbose=self.verbose,
                    build_model=self.build_model).run()

    def _fold_oof(self, fold):
        """Fold `fold`'s held-out predictions, predicted once and then read from its file."""
        oof_path = fold_oof_path(self.cv_dir, fold)
        if not oof_path.exists():
            write_oof(predict_fold(fold_dir(self.cv_dir, fold), fold, self._store(),
                                   self.weights,
                                   batch_size=self.config.data.eval_global_batch_size),
                      oof_path)
        oof = read_oof(oof_path)
        _log(f"fold {fold}/{self.config.data.num_folds}: {oof.scores()['accuracy']:.4f} on "
             f"{len(oof):,} held-out clips")
        return oof

    def _store(self):
        """The prepared store the folds trained on (loaded once, when first needed)."""
        if self.store is None:
            from tfislr.data.prepare import ensure_store
            from tfislr.data.store import load_store

            data = self.config.data
            self.store = load_store(ensure_store(self.request.data_dir, data.max_len,
                                                 data.prepared_dir))
        return self.store


if __name__ == "__main__":  # `python -m tfislr.training.cross_validation`, the same as the command
    import sys

    from tfislr.cli.cv import main

    sys.exit(main())
