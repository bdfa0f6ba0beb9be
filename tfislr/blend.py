"""Blend the out-of-fold predictions of several configs and compare their CV accuracy.

    tfislr-blend len25 len80 [--weights 1 1] [--runs-dir runs]
        [--out blend.parquet] [--json | --json-out report.json]

Each source is an OOF file (`tfislr.runs.oof`), a cross-validation folder (its `oof.parquet`) or a
config name (its newest finished cross-validation under `--runs-dir`). The blend is the
weighted mean of the sources' probabilities (equal weights by default; weights are
normalised to sum to 1), which is what the exported ensemble computes with equal weights.
Prints accuracy per fold and overall for every source and for the blend, side by side with
the original's reported CV (len25 0.7402, len80 0.7395, blend 0.749); `--out` writes the
blend as an OOF file itself.

The sources must cover the same clips with the same labels, folds and signs: a blend of
predictions made on different folds would not be out-of-fold for every model.
"""

import pathlib
import sys

import numpy as np

from tfislr.errors import ConfigError, DataError, MissingFileError
from tfislr.runs.oof import OutOfFold

PROG = "tfislr-blend"

# The 6th-place solution's signer-grouped 4-fold CV: distilled model + soup of each config
# and the mean of the two (its notebooks/Validation.ipynb).
ORIGINAL_CV = {"len25": 0.7402, "len80": 0.7395, "blend": 0.749}


def resolve_source(spec, runs_dir="runs"):
    """An OOF file path from a file, a CV folder or a config name (newest finished CV)."""
    path = pathlib.Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "oof.parquet").is_file():
            return path / "oof.parquet"
        raise MissingFileError(f"{path / 'oof.parquet'}: file not found (is the cross-validation "
                               "finished?)")
    from tfislr.runs.cv_dir import OOF_FILE, latest_finished_cv

    return latest_finished_cv(runs_dir, str(spec)) / OOF_FILE


def _check_aligned(oofs, names):
    first = oofs[0]
    for name, oof in zip(names[1:], oofs[1:]):
        if oof.signs != first.signs:
            raise DataError(f"{name} and {names[0]} predict different signs (or orders)")
        if not np.array_equal(oof.table["sequence_id"], first.table["sequence_id"]):
            extra = np.setxor1d(oof.table["sequence_id"], first.table["sequence_id"])
            raise DataError(
                f"{name} and {names[0]} cover different clips ({len(oof):,} vs {len(first):,}, "
                f"{len(extra):,} not in both); blend CVs of the same data"
            )
        for column in ("label", "fold"):
            if not np.array_equal(oof.table[column], first.table[column]):
                raise DataError(
                    f"{name} and {names[0]} disagree on the {column} of some clips; blend CVs "
                    "of the same data with the same folds"
                )


def blend(oofs, weights=None, names=None):
    """The weighted mean of the probabilities of aligned `OutOfFold`s.

    Args:
        oofs: one or more `OutOfFold` over the same clips, labels, folds and signs.
        weights: one non-negative number per source (normalised); default equal.
        names: how errors name the sources (default "source 1", ...).

    Raises:
        ValueError: no sources, bad weights, or sources that do not align.
    """
    oofs = list(oofs)
    if not oofs:
        raise ConfigError("blend needs at least one OOF source")
    names = list(names or [f"source {i + 1}" for i in range(len(oofs))])
    weights = np.ones(len(oofs)) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != (len(oofs),):
        raise ConfigError(f"give one weight per source: {len(oofs)} sources, {weights.size} weights")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ConfigError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
    _check_aligned(oofs, names)
    weights = weights / weights.sum()
    mean = sum(w * oof.probabilities.astype(np.float64) for w, oof in zip(weights, oofs))
    return OutOfFold(oofs[0].table, mean.astype(np.float32), oofs[0].signs,
                     {"blend_of": names, "weights": weights.tolist()})


def compare(named_oofs, weights=None):
    """Accuracy per fold and overall of each source and of their blend (a report dict)."""
    names = list(named_oofs)
    blended = blend(named_oofs.values(), weights, names)
    rows = [{"name": name, **oof.scores()} for name, oof in named_oofs.items()]
    rows.append({"name": "blend", **blended.scores()})
    return {"rows": rows, "weights": blended.info["weights"], "sources": names,
            "original_cv": ORIGINAL_CV}, blended


def format_table(report):
    folds = sorted({fold for row in report["rows"] for fold in row["folds"]})
    width = max(12, *(len(row["name"]) + 2 for row in report["rows"]))
    header = f"{'OOF accuracy':<{width}}" + "".join(f"{'fold ' + str(f):>9}" for f in folds)
    lines = [header + f"{'CV':>9}{'clips':>9}"]
    for row in report["rows"]:
        lines.append(
            f"{row['name']:<{width}}"
            + "".join(f"{row['folds'][f]['accuracy']:>9.4f}" for f in folds)
            + f"{row['accuracy']:>9.4f}{row['clips']:>9,}"
        )
    weights = ", ".join(f"{n} {w:.3g}" for n, w in zip(report["sources"], report["weights"]))
    original = report["original_cv"]
    lines += [
        f"blend = weighted mean of the probabilities ({weights})",
        f"the original's CV (reported, 4 signer-grouped folds of the competition data): "
        f"len25 {original['len25']:.4f}, len80 {original['len80']:.4f}, "
        f"blend {original['blend']:.3f}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m tfislr.blend`, the same as the command
    from tfislr.cli.blend import main

    sys.exit(main())
