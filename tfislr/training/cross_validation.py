"""Cross-validation: every fold of a config, one after another, and its out-of-fold predictions.

    tfislr-cv --config len80 --data-dir D [--set KEY=VALUE ...] [--epochs N] [--strategy S]
        [--output runs] [--resume | --cv-dir DIR] [--weights distilled|student|teacher]
        [--verbose 0|1|2]

(also `python -m tfislr.training.cross_validation`, or `tfislr-train ... --cv` with the distilled
soup). Errors follow `tfislr.errors`. The CV lands in `<output>/<config>/cv/<timestamp>/`:

    cv.json                 config, data dir and weights (a resumed CV must match them), and
                            when the CV started (the "latest" CV is the one started last)
    fold_<k>/               an ordinary run directory (tfislr.training.run), validation fold k
    oof_fold_<k>.parquet    fold k's held-out clips predicted by fold k's soup (`weights`)
    oof.parquet             all folds: every prepared clip exactly once (format: tfislr.oof)
    report.json             accuracy per fold and overall (clip-weighted), the runs' own soup,
                            the folds skipped (an original fold none of whose signers the
                            data holds: they have no clip to predict)
    report.txt              accuracies, sizes, run dirs; both written last: the CV is
                            finished once report.json exists

Folds are trained one after another with `tfislr.training.run.train`, validation fold k
for fold k, so the split is the one `train.py --fold k` and `evaluate --fold k` use. A
killed CV resumes where it stopped: rerun the same command with `--resume` (the newest
unfinished CV of the config) or `--cv-dir DIR`. Finished folds are not retrained, the
unfinished one continues from its last finished epoch, missing predictions are redone.

The OOF predictions are those of the model that is exported (default: the distilled soup,
the original's "small + soup", whose CV was 0.7402 for len25 and 0.7395 for len80); blend
several configs' with `python -m tfislr.blend`.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from tfislr import atomic
from tfislr.cli.help import HelpFormatter
from tfislr.config import MODEL_NAMES, Config
from tfislr.errors import INTERRUPTED, ConfigError, DataError, MissingFileError, command
from tfislr.oof import OutOfFold, read_oof, write_oof
from tfislr.training.run_dir import (CV_FOLDER, STARTED_AT, RunDir, by_start_time,
                                     check_own_dir, iso_time, new_timestamped_dir)

PROG = "tfislr-cv"
CV_FILE = "cv.json"
OOF_FILE = "oof.parquet"
REPORT_FILE = "report.json"
REPORT_TEXT_FILE = "report.txt"
WEIGHT_CHOICES = MODEL_NAMES  # which soup predicts: student, teacher or distilled


def _log(message):
    print(f"[tfislr cv] {message}", flush=True)


def fold_dir(cv_dir, fold):
    return pathlib.Path(cv_dir) / f"fold_{fold}"


def fold_oof_path(cv_dir, fold):
    return pathlib.Path(cv_dir) / f"oof_fold_{fold}.parquet"


def cv_root(output_dir, config_name):
    return pathlib.Path(output_dir) / config_name / CV_FOLDER


def _cv_dirs(root):
    """The CV dirs (holding cv.json) under `root`, by `run_dir.start_time`, oldest first."""
    return by_start_time((p.parent for p in root.glob(f"*/{CV_FILE}")), CV_FILE)


def latest_unfinished_cv(output_dir, config_name):
    """The CV dir of `config_name` under `output_dir` started last without report.json, or
    None."""
    unfinished = [p for p in _cv_dirs(cv_root(output_dir, config_name))
                  if not (p / REPORT_FILE).exists()]
    return unfinished[-1] if unfinished else None


def latest_finished_cv(output_dir, config_name):
    """The finished CV dir of `config_name` started last (MissingFileError when there is
    none)."""
    root = cv_root(output_dir, config_name)
    finished = [p for p in _cv_dirs(root) if (p / REPORT_FILE).exists()]
    if not finished:
        raise MissingFileError(f"no finished cross-validation of '{config_name}' under {root}")
    return finished[-1]


def _cv_record(config, data_dir, weights):
    """What cv.json records of a CV's settings; a resumed CV must have the same."""
    return {"config": json.loads(json.dumps(config.to_dict())),
            "data_dir": str(pathlib.Path(data_dir).resolve()), "weights": weights}


def _cv_differences(cv_dir, wanted):
    """The keys of `wanted` (`_cv_record`) that the CV in `cv_dir` recorded otherwise."""
    saved = json.loads((pathlib.Path(cv_dir) / CV_FILE).read_text())
    return sorted(key for key in wanted if saved.get(key) != wanted[key])


def resumable_cv(output_dir, config, data_dir, weights="distilled"):
    """(the CV `--resume` continues, or None; notes on the CVs it passed over): the last
    started unfinished CV of `config.name` with the same config, data dir and weights. One
    started otherwise is passed over with a note, never blocking `--resume` (as
    `run_dir.resumable_run` for runs)."""
    wanted = _cv_record(config, data_dir, weights)
    notes = []
    for cv_dir in reversed(_cv_dirs(cv_root(output_dir, config.name))):
        if (cv_dir / REPORT_FILE).exists():
            continue
        differs = _cv_differences(cv_dir, wanted)
        if not differs:
            return cv_dir, notes
        notes.append(f"passed over {cv_dir}: it was started with another "
                     f"{' and '.join(differs)}")
    return None, notes


def _open_cv_dir(config, data_dir, weights, output_dir, cv_dir):
    """The CV dir to use (created; cv.json written) after checking a resumed one matches."""
    if cv_dir is None:  # a fresh <output>/<config>/cv/<timestamp>/
        cv_dir = new_timestamped_dir(pathlib.Path(output_dir) / config.name / "cv")
    cv_dir = pathlib.Path(cv_dir)
    check_own_dir(cv_dir, CV_FILE, "a cross-validation")
    wanted = _cv_record(config, data_dir, weights)
    if (cv_dir / CV_FILE).exists():
        if (cv_dir / REPORT_FILE).exists():
            raise ConfigError(f"{cv_dir} holds a finished cross-validation (report.json "
                             "exists); start a new one")
        differs = _cv_differences(cv_dir, wanted)
        if differs:
            raise ConfigError(
                f"{cv_dir} was started with another {' and '.join(differs)}; resume it with "
                "the same config, overrides, data dir and weights, or start a new CV"
            )
        _log(f"resuming {cv_dir}")
    else:
        cv_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(cv_dir / CV_FILE, {**wanted, STARTED_AT: iso_time()})
        _log(f"cv dir: {cv_dir}")
    return cv_dir


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
    from tfislr.export.members import load_member

    run_dir = pathlib.Path(run_dir)
    split = RunDir(run_dir).split()
    if split is None or split["full"]:
        raise DataError(f"{run_dir}: no validation split recorded in run.json")
    manifest = store.manifest
    rows = np.flatnonzero(manifest["participant_id"].isin(split["val_participants"]).to_numpy())
    if len(rows) == 0:
        raise DataError(f"{run_dir}: its validation signers have no clips in {store.path}")
    member = load_member(run_dir, weights)
    dataset = make_eval_dataset(store, rows, batch_size, member.max_len).map(lambda x, y: x)
    logits = predict_logits(member.model, dataset)
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
            f"the folds' predictions do not cover the store's {len(expected)} clips exactly "
            f"once ({len(oof)} predicted, {len(missing)} missing, e.g. {missing[:3].tolist()}); "
            "were the folds trained on another data dir or fold setting?"
        )
    return oof


def format_report(report):
    """A few lines: accuracy per fold and overall, the runs' own figures, where things are."""
    lines = [
        f"cross-validation of {report['config']} ({report['weights']} soup), "
        f"{report['clips']:,} clips, {len(report['folds'])} folds"
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
        lines.append(f"  {report['not_in_store']} clip(s) of train.csv were skipped by the "
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
    strategy="default",
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
        strategy: a `get_strategy` name or a `tf.distribute.Strategy` (as for `train`).
        weights: which soup predicts the held-out clips: distilled (exported), student,
            teacher.
        verbose: Keras `fit` verbosity.
        build_model: classifier factory passed to `train` (tests use a small stand-in).

    Raises:
        ConfigError: a bad argument, a finished or differently configured `cv_dir`, or
            `cv_dir` (else `output_dir`) cannot be written (checked before any work).
        DataError: no Kaggle layout at `data_dir`, or what `train` raises.
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a tfislr.config.Config, got {type(config).__name__}")
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    from tfislr.data.kaggle import check_data_dir
    from tfislr.training.strategy import cluster_tasks, get_strategy, task_info

    data_dir = check_data_dir(data_dir)
    atomic.check_writable_dir(output_dir if cv_dir is None else cv_dir)  # before any work
    if cv_dir is None and cluster_tasks() > 1:  # before any worker waits for the others
        raise ConfigError("a multi-worker cross-validation needs the same --cv-dir on every "
                          "worker: each would start its own timestamped folder")

    strategy = get_strategy(strategy)
    from tfislr.training.run import check_run_settings

    check_run_settings(config, strategy)  # before the CV dir and any fold's store
    _, _, is_chief = task_info()

    from tfislr.data.folds import cv_folds, fold_scheme
    from tfislr.data.kaggle import read_train_csv
    from tfislr.data.prepare import ensure_store
    from tfislr.data.store import load_store
    from tfislr.training.run import train

    # Every fold is decided before any is trained: a bad fold setting fails here, not after
    # hours of training, and an empty fold (see `cv_folds`) is skipped, said up front.
    num_folds = config.data.num_folds
    table = read_train_csv(data_dir)
    folds, skipped = cv_folds(table, num_folds, seed=config.data.fold_seed,
                              original=config.data.original_folds)
    _log(fold_scheme(table, num_folds, config.data.fold_seed, config.data.original_folds)[1])
    if is_chief:
        cv_dir = _open_cv_dir(config, data_dir, weights, output_dir, cv_dir)
    for fold, why in skipped.items():
        _log(f"fold {fold}/{num_folds}: skipped: {why}; the CV is over folds "
             f"{', '.join(map(str, folds))}, which hold every clip")
    store = None
    fold_oofs = []
    for fold in folds:
        run_dir = fold_dir(cv_dir, fold)
        if RunDir(run_dir).is_finished:
            _log(f"fold {fold}/{num_folds}: finished before, not retrained ({run_dir})")
        else:
            _log(f"fold {fold}/{num_folds}: training ({run_dir})")
            train(config, data_dir, output_dir=output_dir, fold=fold, strategy=strategy,
                  run_dir=run_dir, verbose=verbose, build_model=build_model)
        if not is_chief:
            continue
        oof_path = fold_oof_path(cv_dir, fold)
        if not oof_path.exists():
            if store is None:
                store = load_store(ensure_store(data_dir, config.data.max_len,
                                                config.data.prepared_dir))
            write_oof(predict_fold(run_dir, fold, store, weights,
                                   batch_size=config.data.eval_global_batch_size), oof_path)
        fold_oofs.append(read_oof(oof_path))
        _log(f"fold {fold}/{num_folds}: {fold_oofs[-1].scores()['accuracy']:.4f} on "
             f"{len(fold_oofs[-1]):,} held-out clips")
    if not is_chief:
        return cv_dir

    if store is None:
        store = load_store(ensure_store(data_dir, config.data.max_len, config.data.prepared_dir))
    info = {"config": config.name, "weights": weights, "cv_dir": str(cv_dir),
            "data_dir": str(data_dir.resolve())}
    oof = combine_folds(fold_oofs, store, info)
    write_oof(oof, cv_dir / OOF_FILE)
    _, text = _report(cv_dir, config, weights, oof, len(table), skipped)
    print(text, flush=True)
    return cv_dir


def parse_args(argv=None):
    from tfislr.cli.train import add_run_options

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train every fold of a config and write its out-of-fold predictions.",
        formatter_class=HelpFormatter,
    )
    add_run_options(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cv-dir", default=None,
                       help="exact CV folder; an unfinished one is resumed "
                            "(default: a new OUTPUT/<config>/cv/<timestamp>)")
    where.add_argument("--resume", action="store_true",
                       help="resume the newest unfinished CV of this config under --output "
                            "(starts a new one when there is none)")
    parser.add_argument("--weights", default="distilled", choices=WEIGHT_CHOICES,
                        help="which soup predicts the held-out clips")
    return parser.parse_args(argv)


def run_command(config, data_dir, strategy, output, cv_dir=None, resume=False,
                weights="distilled", verbose="auto", prog=PROG):
    """What `tfislr-cv` and `tfislr-train --cv` run once the config and strategy are known."""
    if resume:
        cv_dir, notes = resumable_cv(output, config, data_dir, weights)
        for note in notes:
            print(f"{prog}: note: {note}", file=sys.stderr)
        print(f"{prog}: {'resuming ' + str(cv_dir) if cv_dir else 'no unfinished CV; starting a new one'}",
              file=sys.stderr)
    try:
        cross_validate(config, data_dir, output_dir=output, cv_dir=cv_dir, strategy=strategy,
                       weights=weights, verbose=verbose if verbose == "auto" else int(verbose))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command with --resume to continue with "
              "the unfinished fold (finished folds are kept)", file=sys.stderr)
        return INTERRUPTED
    return 0


@command(PROG)
def main(argv=None):
    from tfislr.cli.train import config_and_strategy

    args = parse_args(argv)
    config, strategy = config_and_strategy(args)
    return run_command(config, args.data_dir, strategy, args.output, args.cv_dir, args.resume,
                       args.weights, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
