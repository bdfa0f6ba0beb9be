"""Cross-validation folds: every participant's clips in one fold, so validation measures
unseen signers.

Two ways to assign them:

- **The original's folds** (`ORIGINAL_FOLDS`): when every participant of the data is one of
  the competition's 21 and there are 4 folds, each participant goes to the fold the
  original's own fold file gave it (22,358 / 22,741 / 28,237 / 21,141 clips on the full set;
  docs/recipe.md §16).
  Its CV numbers were measured on these folds, so ours can be compared with them. They
  cannot be recomputed: the original drew them with scikit-learn's
  `StratifiedGroupKFold(shuffle=True)`, whose shuffling changed in 2025.
- **Grouped, stratified folds** for any other data (or `original=False`):
  `StratifiedGroupKFold` (k = 4, shuffle, seed 42 by default), so each fold's sign mix
  follows the whole set's as closely as whole participants allow. The assignment is a pure
  function of the (sequence, participant, sign) triples, the number of folds and the seed:
  rows are put in a canonical order (by sequence_id) before splitting, so reordering the
  manifest does not move any sequence to another fold.
"""

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from tfislr.checks import check_int
from tfislr.errors import ConfigError
from tfislr.text import plural

# The original's participant -> fold map (its input/folds_4.csv): fold -> participants.
ORIGINAL_FOLDS = {
    0: (2044, 4718, 16069, 34503, 53618),
    1: (25571, 28656, 37779, 49445, 62590),
    2: (22343, 26734, 27610, 29302, 36257, 55372),
    3: (18796, 30680, 32319, 37055, 61333),
}
_ORIGINAL_FOLD_OF = {p: fold for fold, members in ORIGINAL_FOLDS.items() for p in members}
# How a user turns the original's folds off, as the errors below suggest it: the setting of
# the config (train takes `--set`); a command with another option passes its own words.
ORIGINAL_FOLDS_OFF = "set data.original_folds=false"


def uses_original_folds(manifest, num_folds=4, original=True):
    """True when `manifest`'s folds come from `ORIGINAL_FOLDS`: asked for, 4 folds, and
    every participant one of the competition's."""
    if not original or num_folds != len(ORIGINAL_FOLDS):
        return False
    participants = pd.unique(manifest["participant_id"])
    return len(participants) > 0 and all(int(p) in _ORIGINAL_FOLD_OF for p in participants)


def fold_scheme(manifest, num_folds=4, seed=42, original=True):
    """(scheme, line): which fold assignment `assign_folds` uses for `manifest` and why, for
    the logs; `scheme` ("original" or "stratified") is what run.json records."""
    if uses_original_folds(manifest, num_folds, original):
        return "original", (f"folds: the original's fold map ({len(_ORIGINAL_FOLD_OF)} "
                            f"competition signers → {num_folds} folds, docs/recipe.md §16)")
    if not original:
        why = "the original's folds are turned off"
    elif num_folds != len(ORIGINAL_FOLDS):
        why = f"{num_folds} folds asked, the original's map has {len(ORIGINAL_FOLDS)}"
    else:
        others = sorted(int(p) for p in pd.unique(manifest["participant_id"])
                        if int(p) not in _ORIGINAL_FOLD_OF)
        shown = ", ".join(map(str, others[:3])) + (", ..." if len(others) > 3 else "")
        verb = "is" if len(others) == 1 else "are"
        why = (f"{plural(len(others), 'participant')} ({shown}) {verb} not among the "
               f"competition's {len(_ORIGINAL_FOLD_OF)}")
    return "stratified", (f"folds: computed signer-grouped, sign-stratified folds "
                          f"(StratifiedGroupKFold, {num_folds} folds, seed {seed}), as {why}")


def _check(manifest, num_folds):
    check_int("num_folds", num_folds, minimum=2)
    missing = [c for c in ("participant_id",) if c not in manifest.columns]
    if "label" not in manifest.columns and "sign" not in manifest.columns:
        missing.append("label (or sign)")
    if missing:
        raise ValueError(f"manifest needs column(s) {', '.join(missing)} to build folds")
    num_participants = manifest["participant_id"].nunique()
    if num_participants < num_folds:
        raise ConfigError(
            f"cannot make {num_folds} participant-grouped folds from "
            f"{plural(num_participants, 'participant')}: every fold needs at least one participant; use num_folds <= "
            f"{num_participants}"
        )


def assign_folds(manifest, num_folds=4, seed=42, original=True):
    """Fold number (0..num_folds-1) of every manifest row, as an int64 array in row order.

    Args:
        manifest: DataFrame with `participant_id`, and `label` (or `sign`) for the
            stratified folds; `sequence_id`, when present, fixes a canonical order so the
            result ignores row order.
        num_folds: number of folds (>= 2, <= number of participants).
        seed: shuffling seed of `StratifiedGroupKFold`. sklearn assigns participants
            greedily in order of how uneven their sign mix is and shuffles only to break
            ties, so the seed changes the folds of balanced sets (e.g. the synthetic one)
            but often not those of a real, uneven one. Unused by the original's folds.
        original: use the original's folds when `uses_original_folds` says they apply
            (a subset of the competition's signers may leave some folds empty).
    """
    if "participant_id" in manifest.columns and uses_original_folds(manifest, num_folds, original):
        return manifest["participant_id"].map(_ORIGINAL_FOLD_OF).to_numpy(np.int64)
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


def _no_clips_message(fold):
    return (f"fold {fold} has no clips in this data: the original's fold {fold} is participants "
            f"{', '.join(map(str, ORIGINAL_FOLDS[fold]))}, none of which it holds")


def cv_folds(manifest, num_folds=4, seed=42, original=True, off_hint=ORIGINAL_FOLDS_OFF):
    """(folds, skipped): the validation folds a cross-validation trains, and why the others
    are left out (`{fold: message}`), decided before any fold is trained.

    Only the original's folds can be empty: a part of the competition's signers may hold none
    of a fold's participants (the 15-signer sample has no fold 2). Such a fold has no clip to
    validate on or to predict, so the CV skips it; the folds left still predict every clip
    exactly once. Stratified folds are never empty (`assign_folds` raises). `off_hint`:
    how the caller's user turns the original's folds off, for the error.

    Raises:
        ConfigError: fewer than two folds hold clips (one fold would train on nothing), or
            what `assign_folds` raises.
    """
    present = set(assign_folds(manifest, num_folds, seed, original).tolist())
    folds = [fold for fold in range(num_folds) if fold in present]
    skipped = {fold: _no_clips_message(fold) for fold in range(num_folds) if fold not in present}
    if len(folds) < 2:
        raise ConfigError(
            f"only fold(s) {folds} of the original's {num_folds} folds hold clips of this data; "
            f"a cross-validation needs two; {off_hint} for grouped stratified folds"
        )
    return folds, skipped


def check_fold(fold, num_folds, name="fold"):
    """`fold` if it is an int in [0, num_folds) (ConfigError otherwise, naming `name`, e.g. a
    command's "--fold"); needs no data, so runs check it before the store is prepared."""
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < num_folds:
        raise ConfigError(f"{name} must be an int in [0, {num_folds}), got {fold!r}")
    return fold


def fold_indices(manifest, fold, num_folds=4, seed=42, original=True,
                 off_hint=ORIGINAL_FOLDS_OFF):
    """(train_idx, val_idx): sorted int64 row positions for validation fold `fold`.

    Raises ValueError when that fold holds no clip of `manifest` (possible with the
    original's folds on a subset of the competition's signers); its message suggests
    `off_hint`, how the caller's user turns the original's folds off.
    """
    check_fold(fold, num_folds)
    folds = assign_folds(manifest, num_folds, seed, original)
    val = np.flatnonzero(folds == fold)
    if len(val) == 0:
        raise ConfigError(
            f"{_no_clips_message(fold)}; choose another fold, or {off_hint} for grouped "
            "stratified folds"
        )
    return np.flatnonzero(folds != fold), val
