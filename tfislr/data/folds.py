"""Cross-validation folds: grouped by participant, stratified by sign (seed-spec §9).

As in the original (`StratifiedGroupKFold`, k = 4, shuffle, seed 42): every participant's
clips fall in one fold, so validation always measures unseen signers, and each fold's sign
mix follows the whole set's as closely as whole participants allow.

The assignment is a pure function of the (sequence, participant, sign) triples, the
number of folds and the seed: rows are put in a canonical order (by sequence_id) before
splitting, so reordering the manifest does not move any sequence to another fold.
"""

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from tfislr.errors import ConfigError


def _check(manifest, num_folds):
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"num_folds must be an int >= 2, got {num_folds!r}")
    missing = [c for c in ("participant_id",) if c not in manifest.columns]
    if "label" not in manifest.columns and "sign" not in manifest.columns:
        missing.append("label (or sign)")
    if missing:
        raise ValueError(f"manifest needs column(s) {', '.join(missing)} to build folds")
    num_participants = manifest["participant_id"].nunique()
    if num_participants < num_folds:
        raise ConfigError(
            f"cannot make {num_folds} participant-grouped folds from {num_participants} "
            f"participant(s): every fold needs at least one participant; use num_folds <= "
            f"{num_participants}"
        )


def assign_folds(manifest, num_folds=4, seed=42):
    """Fold number (0..num_folds-1) of every manifest row, as an int64 array in row order.

    Args:
        manifest: DataFrame with `participant_id` and `label` (or `sign`); `sequence_id`,
            when present, fixes a canonical order so the result ignores row order.
        num_folds: number of folds (>= 2, <= number of participants).
        seed: shuffling seed of `StratifiedGroupKFold`. sklearn assigns participants
            greedily in order of how uneven their sign mix is and shuffles only to break
            ties, so the seed changes the folds of balanced sets (e.g. the synthetic one)
            but often not those of a real, uneven one.
    """
    _check(manifest, num_folds)
    order = (
        np.argsort(manifest["sequence_id"].to_numpy(), kind="stable")
        if "sequence_id" in manifest.columns
        else np.arange(len(manifest))
    )
    target = manifest["label" if "label" in manifest.columns else "sign"].to_numpy()[order]
    groups = manifest["participant_id"].to_numpy()[order]
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    folds = np.full(len(manifest), -1, np.int64)
    with warnings.catch_warnings():
        # Rare signs (fewer clips than folds) cannot be stratified; that is expected.
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, val) in enumerate(splitter.split(np.zeros(len(target)), target, groups)):
            folds[order[val]] = fold
    empty = sorted(set(range(num_folds)) - set(folds.tolist()))
    if empty:
        raise ConfigError(f"fold(s) {empty} came out empty; use fewer folds")
    return folds


def fold_indices(manifest, fold, num_folds=4, seed=42):
    """(train_idx, val_idx): sorted int64 row positions for validation fold `fold`."""
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < num_folds:
        raise ConfigError(f"fold must be an int in [0, {num_folds}), got {fold!r}")
    folds = assign_folds(manifest, num_folds, seed)
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
