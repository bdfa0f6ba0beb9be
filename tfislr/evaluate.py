"""Kaggle-style scoring of an exported .tflite on a data dir in the Kaggle layout.

    tfislr-evaluate MODEL.tflite --data-dir DIR [--fold K] [--json | --json-out OUT]

Runs the file the way the competition did: one ai-edge-litert signature runner
(`serving_default`, one thread by default), one sequence at a time, each clip read
from its parquet file as raw `[T, 543, 3]` frames by the same reader the training
store uses. Reports top-1 accuracy (the competition metric), top-5 accuracy,
per-sign accuracy, latency (median/p95 of the runner call) and file size, as a table
and as JSON.

`--fold K` scores only the signers of fold K; the report says whether they were held out
from every member's training (only a recorded split can show that). The split travels
with the model: training records it in the run's `run.json` and export copies it into
the report next to the .tflite file, so K's signers are the ones the run validated on
(whatever `data.num_folds` it used), not a split rebuilt from today's defaults. `--num-folds`,
`--fold-seed` and `--original-folds` override that and rebuild the folds; a file without
a recorded split uses the config defaults. The report says which of these it did.
"""

import pathlib
import sys
import time

import numpy as np

from tfislr.checks import check_int
from tfislr.errors import ConfigError, DataError
from tfislr.text import plural


PROG = "tfislr-evaluate"
UNREADABLE_SHOWN = 3  # unreadable files named in the printed summary


def export_report(model_path):
    """The report `export_ensemble` saved next to the file (`<model>.json`), or {}.

    Raises:
        DataError: the report is not the file's (`tfislr.export.pair.read_report`).
    """
    from tfislr.export.pair import read_report

    return read_report(model_path)


# The settings that decide the folds (`tfislr.data.folds.fold_indices`), as config.data
# names them and run.json records them.
FOLD_SETTINGS = ("num_folds", "fold_seed", "original_folds")


def resolve_split(report, fold, num_folds=None, fold_seed=None, original_folds=None):
    """How `--fold K` picks its signers: {fold, *FOLD_SETTINGS, val_participants, held_out,
    source}.

    `report` is the export report (`export_report`); its members carry the split their
    run recorded. `val_participants` is the list of the member that validated on fold K,
    or None when the folds are rebuilt (a fold setting given, no recorded split, or no
    member validated on K). `held_out` is True when the recorded splits show that no member
    trained on fold K's signers, False when one did (it validated on another fold, or
    trained on all the data), None when nothing says (no recorded split, or folds rebuilt
    with given settings that may differ from the run's). `source` says in words which it was.

    Raises:
        ConfigError: members recorded different fold settings (or different signers for
            fold K) and no fold setting says which folds to use.
    """
    from tfislr.config import DataConfig

    if fold is None:
        return None
    given = {"num_folds": num_folds, "fold_seed": fold_seed, "original_folds": original_folds}
    overridden = any(value is not None for value in given.values())
    recorded = [m["split"] for m in report.get("members", [])
                if m.get("split") and not m["split"].get("full")]
    settings = sorted({tuple(s.get(key) for key in FOLD_SETTINGS) for s in recorded})
    if len(settings) > 1 and not overridden:
        raise ConfigError(
            f"the ensemble's members were split differently ({', '.join(FOLD_SETTINGS)} = "
            f"{settings}); give --num-folds and --fold-seed to choose the folds"
        )
    defaults = DataConfig()
    base = (dict(zip(FOLD_SETTINGS, settings[0])) if settings
            else {key: getattr(defaults, key) for key in FOLD_SETTINGS})
    split = {"fold": fold, **{key: base[key] if given[key] is None else given[key]
                              for key in FOLD_SETTINGS}, "val_participants": None}
    # A member trained on all the data has seen every signer, whatever the folds.
    full = any(m.get("split") and m["split"].get("full") for m in report.get("members", []))
    seen = ("; a member trained on all the data, so every signer was in its training data"
            if full else "")
    if overridden:
        return {**split, "held_out": False if full else None,
                "source": "folds rebuilt with the given fold settings" + seen}
    if not recorded:
        return {**split, "held_out": False if full else None,
                "source": "folds rebuilt with the config defaults: the export report "
                          "records no validation split" + seen}
    signers = {tuple(s["val_participants"]) for s in recorded if s["fold"] == fold}
    if len(signers) > 1:
        raise ConfigError(f"the ensemble's members recorded different signers for fold {fold}; "
                          "give --num-folds and --fold-seed to rebuild the folds")
    folds = sorted({s["fold"] for s in recorded})
    if signers and folds == [fold]:
        return {**split, "val_participants": list(signers.pop()), "held_out": not full,
                "source": "the validation signers recorded by the run (export report)" + seen}
    if signers:
        return {**split, "val_participants": list(signers.pop()), "held_out": False,
                "source": f"the validation signers recorded by the run (export report); other "
                          f"members validated on fold(s) {folds}, so fold {fold}'s signers were "
                          "in their training data" + seen}
    return {**split, "held_out": False,
            "source": f"folds rebuilt with the run's settings; the members validated "
                      f"on fold(s) {folds}, so fold {fold}'s signers were in their "
                      "training data" + seen}


def select_sequences(data_dir, fold=None, num_folds=4, fold_seed=42, val_participants=None,
                     original_folds=True):
    """train.csv rows to score: all, or the held-out signers of `fold` (`--limit` is applied
    by `evaluate_tflite`, which reports how many there were before it).

    With `val_participants` (a split recorded by training) those signers' rows are the
    fold; otherwise the fold is rebuilt by `fold_indices` from the fold settings.
    """
    from tfislr.data.kaggle import read_train_csv

    table = read_train_csv(data_dir)
    if fold is not None:
        from tfislr.data.folds import fold_indices

        if not 0 <= fold < num_folds:
            raise ConfigError(f"--fold must be in [0, {num_folds}), got {fold}")
        if val_participants is not None:
            table = table[table["participant_id"].isin(val_participants)]
        else:
            _, val_idx = fold_indices(table, fold, num_folds=num_folds, seed=fold_seed,
                                      original=original_folds,
                                      off_hint="pass --original-folds false")
            table = table.iloc[np.sort(np.asarray(val_idx))]
    if len(table) == 0:
        raise DataError(f"no sequences to evaluate in {data_dir} (fold={fold})")
    return table.reset_index(drop=True)


def evaluate_tflite(model_path, data_dir, fold=None, num_folds=None, fold_seed=None, limit=None,
                    num_threads=1, progress=False, original_folds=None):
    """Scores `model_path` on `data_dir`; returns the report dict (see module docstring).

    `fold` picks the held-out signers by `resolve_split`: the split recorded with the
    model, unless `num_folds`/`fold_seed`/`original_folds` are given (then the folds are
    rebuilt with them).
    Files that cannot be read are reported apart, never scored: "errors" lists their
    messages, "num_unreadable" counts them, and the accuracies (and per-sign ones) are of
    the `num_scored` readable clips. `tfislr-evaluate` exits non-zero when there are any, unless
    `--allow-unreadable`: an accuracy of part of the data is not passed off as the whole.
    """
    from tfislr.data.kaggle import SIGN_MAP_JSON, read_sign_map, sign_names
    from tfislr.export.checks import check_size
    from tfislr.export.pair import check_signs
    from tfislr.export.runner import TFLiteRunner, check_model_file, latency_summary

    model_path = pathlib.Path(model_path)
    check_model_file(model_path)
    signs = sign_names(read_sign_map(data_dir))
    exported = export_report(model_path)
    split = resolve_split(exported, fold, num_folds, fold_seed, original_folds)
    if split is None:
        table = select_sequences(data_dir)
    else:
        from tfislr.data.folds import uses_original_folds
        from tfislr.data.kaggle import read_train_csv

        table = select_sequences(data_dir, fold, split["num_folds"], split["fold_seed"],
                                 split["val_participants"], split["original_folds"])
        # Whether the folds are the original's map (no seed in play) or seeded stratified ones.
        split["original_map"] = uses_original_folds(read_train_csv(data_dir), split["num_folds"],
                                                    split["original_folds"])
    num_available = len(table)
    table = table.iloc[:None if limit is None else check_int("limit", limit)]
    runner = TFLiteRunner(model_path, num_threads=num_threads)
    if runner.num_classes != len(signs):
        raise DataError(
            f"{model_path} outputs {plural(runner.num_classes, 'class', 'classes')} but "
            f"{data_dir} has {plural(len(signs), 'sign')}"
        )
    check_signs(model_path, exported, signs, pathlib.Path(data_dir) / SIGN_MAP_JSON)

    labels = table["label"].to_numpy().astype(np.int64)
    start = time.perf_counter()
    top1, top5_hit, times_ms, errors = _predict_all(runner, data_dir, table["path"], labels,
                                                    progress)
    readable = top1 >= 0
    correct = top1 == labels
    scored = labels[readable]
    return {
        "model": str(model_path),
        "data_dir": str(data_dir),
        "fold": fold,
        "num_folds": split["num_folds"] if split else None,
        "split": split,
        "num_sequences": int(len(table)),  # scored: the first `limit` of `num_available`
        "num_available": int(num_available),
        "limit": limit,
        "num_scored": int(readable.sum()),
        "num_unreadable": int((~readable).sum()),
        # Of the readable clips (NaN when none was readable).
        "accuracy": float(correct[readable].mean()) if readable.any() else float("nan"),
        "top5_accuracy": float(top5_hit[readable].mean()) if readable.any() else float("nan"),
        "latency": latency_summary(times_ms, num_threads=num_threads),
        "size": check_size(model_path, max_size_mb=None),
        "wall_seconds": time.perf_counter() - start,
        "per_sign": _per_sign(scored, correct[readable], signs),
        "errors": errors,
        "sequence_ids": [int(s) for s in table["sequence_id"]],
        "labels": labels.tolist(),
        "predictions": top1.tolist(),
    }


def _predict_all(runner, data_dir, paths, labels, progress):
    """Runs `runner` on each landmark file (`paths` relative to `data_dir`, `labels` int64
    [N]); returns top-1 predictions int64 [N] (-1 where unreadable), top-5 hits bool [N],
    the milliseconds of each inference and the messages of the unreadable files."""
    from tfislr.data.kaggle import LandmarkFileError, landmark_path, read_landmark_file

    top1 = np.full(len(labels), -1, np.int64)
    top5_hit = np.zeros(len(labels), bool)
    times_ms, errors = [], []
    for i, path in enumerate(paths):
        try:
            frames = read_landmark_file(landmark_path(data_dir, path))
        except LandmarkFileError as error:
            errors.append(str(error))
            continue
        probabilities, milliseconds = runner.timed(frames)
        runner.check_finite(probabilities, path)
        times_ms.append(milliseconds)
        ranked = np.argsort(-probabilities, kind="stable")
        top1[i] = ranked[0]
        top5_hit[i] = labels[i] in ranked[:5]
        if progress and (i + 1) % 500 == 0:
            print(f"  {i + 1}/{plural(len(labels), 'sequence')}", file=sys.stderr)
    return top1, top5_hit, times_ms, errors


def _per_sign(labels, correct, signs):
    """`{sign name: {"label", "n", "accuracy"}}` of the signs present in `labels` (int64
    [N]), from `correct` (bool [N])."""
    per_sign = {}
    for label in np.unique(labels):
        rows = labels == label
        per_sign[signs[label]] = {
            "label": int(label),
            "n": int(rows.sum()),
            "accuracy": float(correct[rows].mean()),
        }
    return per_sign


def format_report(report, max_signs=15):
    """The summary table plus the worst `max_signs` signs (all of them are in the JSON)."""
    # "held-out" only when the recorded splits show no member trained on those signers.
    held_out = (report.get("split") or {}).get("held_out")
    if report["fold"] is None:
        fold = "all sequences"
    elif held_out:
        fold = f"fold {report['fold']} held-out signers"
    elif held_out is False:
        fold = f"fold {report['fold']} signers, not held out: in the training data"
    else:
        fold = f"fold {report['fold']} signers"
    available = report.get("num_available", report["num_sequences"])
    if report["num_sequences"] < available:  # --limit N
        fold = (f"first {report['num_sequences']} of {available} sequences"
                + ("" if report["fold"] is None else f" of {fold}"))
    latency = report["latency"]
    lines = [f"{report['model']} on {report['data_dir']} ({fold})"]
    if report.get("split"):
        split = report["split"]
        scheme = ("the original's folds (its participant->fold map, no seed)"
                  if split.get("original_map") else f"seed {split['fold_seed']}")
        lines.append(f"  {'split':<14}{split['num_folds']} folds, {scheme}: {split['source']}")
    lines += [
        f"  {'sequences':<14}{report['num_sequences']}" + (
            f" ({report['num_scored']} scored)" if report["errors"] else ""),
        f"  {'accuracy':<14}{report['accuracy']:.4f}",
        f"  {'top-5':<14}{report['top5_accuracy']:.4f}",
        f"  {'latency':<14}median {latency['median_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms "
        f"({latency['num_threads']} thread)",
        f"  {'size':<14}{report['size']['mb']:.2f} MB ({report['size']['mib']:.2f} MiB)",
    ]
    if report["errors"]:
        # The first few messages (each "<file>: <problem>"); all of them are in the JSON.
        named = report["errors"][:UNREADABLE_SHOWN]
        more = len(report["errors"]) - len(named)
        lines.append(f"  {'unreadable':<14}{plural(len(report['errors']), 'file')} (not scored: the "
                     "accuracy is of the others): "
                     + "; ".join(named) + (f"; and {more} more" if more else ""))
    ranked = sorted(report["per_sign"].items(), key=lambda item: (item[1]["accuracy"], item[0]))
    shown = ranked if max_signs is None else ranked[:max_signs]
    lines.append(f"  per-sign accuracy ({'all' if len(shown) == len(ranked) else 'worst'} "
                 f"{len(shown)} of {len(ranked)}):")
    lines.append(f"    {'sign':<20}{'n':>6}{'accuracy':>10}")
    for sign, row in shown:
        lines.append(f"    {sign:<20}{row['n']:>6}{row['accuracy']:>10.3f}")
    return "\n".join(lines)


def unreadable_error(report):
    """The `DataError` of a report with unreadable files (count and first file), or None."""
    if not report["errors"]:
        return None
    return DataError(f"{report['num_unreadable']} of {plural(report['num_sequences'], 'landmark file')} "
                     f"could not be read (first: {report['errors'][0]}); the accuracy is of "
                     "the others; pass --allow-unreadable to accept that")


if __name__ == "__main__":  # `python -m tfislr.evaluate`, the same as the command
    from tfislr.cli.evaluate import main

    sys.exit(main())
