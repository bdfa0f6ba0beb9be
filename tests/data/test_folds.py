"""Participant-grouped, sign-stratified folds."""

import numpy as np
import pandas as pd
import pytest

from tfislr.data import kaggle
from tfislr.data.folds import (ORIGINAL_FOLDS, assign_folds, cv_folds, fold_indices,
                               fold_scheme, uses_original_folds)
from tfislr.errors import ConfigError


def _manifest(num_participants=40, num_signs=10, seed=0):
    """Participants with different sign mixes, so stratification has something to do."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(num_participants):
        rates = rng.gamma(1.0, 4.0, num_signs)
        for sign, count in enumerate(rng.poisson(rates)):
            rows += [(1000 + p, sign)] * int(count)
    table = pd.DataFrame(rows, columns=["participant_id", "label"])
    table["sequence_id"] = rng.permutation(len(table)) * 7 + 11
    return table


def _max_deviation(manifest, folds, num_folds):
    overall = np.bincount(manifest["label"], minlength=10) / len(manifest)
    return max(
        np.abs(np.bincount(manifest["label"][folds == f], minlength=10) / (folds == f).sum() - overall).max()
        for f in range(num_folds)
    )


def test_no_participant_in_two_folds_and_all_folds_used():
    manifest = _manifest()
    folds = assign_folds(manifest, num_folds=4, seed=42)
    assert folds.dtype == np.int64 and len(folds) == len(manifest)
    assert set(folds) == {0, 1, 2, 3}
    per_participant = pd.Series(folds).groupby(manifest["participant_id"].to_numpy()).nunique()
    assert (per_participant == 1).all()


def test_stratified_better_than_random_grouping():
    manifest = _manifest()
    folds = assign_folds(manifest, num_folds=4, seed=42)
    stratified = _max_deviation(manifest, folds, 4)
    rng = np.random.default_rng(1)
    participants = manifest["participant_id"].unique()
    random_devs = []
    for _ in range(20):
        fold_of = dict(zip(participants, rng.permutation(len(participants)) % 4))
        random_devs.append(_max_deviation(manifest, manifest["participant_id"].map(fold_of).to_numpy(), 4))
    assert stratified < 0.7 * np.mean(random_devs), (stratified, np.mean(random_devs))


def test_deterministic_seeded_and_independent_of_row_order():
    manifest = _manifest()
    a = assign_folds(manifest, 4, seed=42)
    np.testing.assert_array_equal(a, assign_folds(manifest, 4, seed=42))
    # sklearn's shuffle only reorders participants whose sign mixes tie (e.g. a balanced
    # set like the synthetic one), so that is where the seed shows.
    balanced = pd.DataFrame(
        [(1000 + p, s, 100 * p + 10 * s + k) for p in range(12) for s in range(5) for k in range(3)],
        columns=["participant_id", "label", "sequence_id"],
    )
    assert not np.array_equal(assign_folds(balanced, 4, seed=42), assign_folds(balanced, 4, seed=7))
    shuffled = manifest.sample(frac=1.0, random_state=3)
    b = assign_folds(shuffled.reset_index(drop=True), 4, seed=42)
    np.testing.assert_array_equal(b, a[shuffled.index.to_numpy()])


def test_fold_indices_partition_the_rows():
    manifest = _manifest(num_participants=12)
    seen = []
    for fold in range(3):
        train, val = fold_indices(manifest, fold, num_folds=3, seed=42)
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(manifest)
        assert not set(manifest["participant_id"][train]) & set(manifest["participant_id"][val])
        seen.append(val)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(len(manifest)))


def test_errors():
    manifest = _manifest(num_participants=3)
    with pytest.raises(ValueError, match="from 3 participant"):
        assign_folds(manifest, num_folds=4)
    with pytest.raises(ValueError, match="num_folds must be an int >= 2"):
        assign_folds(manifest, num_folds=1)
    with pytest.raises(ValueError, match="participant_id"):
        assign_folds(manifest.drop(columns=["participant_id"]), num_folds=2)
    with pytest.raises(ValueError, match="fold must be an int in"):
        fold_indices(manifest, 3, num_folds=3)
    # `sign` works instead of `label`.
    by_sign = manifest.rename(columns={"label": "sign"})
    by_sign["sign"] = "s" + by_sign["sign"].astype(str)
    assert set(assign_folds(by_sign, 3)) == {0, 1, 2}


def test_synthetic_and_real_manifests(synthetic_store, real_data_dir):
    folds = assign_folds(synthetic_store.manifest, num_folds=4)
    manifest = synthetic_store.manifest
    assert pd.Series(folds).groupby(manifest["participant_id"].to_numpy()).nunique().max() == 1
    assert set(folds) == {0, 1, 2, 3}
    real = kaggle.read_train_csv(real_data_dir)
    folds = assign_folds(real, num_folds=4, seed=42, original=False)
    assert pd.Series(folds).groupby(real["participant_id"].to_numpy()).nunique().max() == 1
    for f in range(4):  # both signs in every fold (each signer did both)
        assert set(real["sign"][folds == f]) == {"hello", "thankyou"}


def test_original_folds_reproduce_the_originals_fold_file(skeleton_csv):
    """The competition's full set: every clip in the fold of the original's folds_4.csv."""
    folds = assign_folds(skeleton_csv, num_folds=4)
    np.testing.assert_array_equal(folds, skeleton_csv["fold"].to_numpy())
    assert np.bincount(folds).tolist() == [22_358, 22_741, 28_237, 21_141]
    for fold, members in ORIGINAL_FOLDS.items():
        assert set(skeleton_csv["participant_id"][folds == fold]) == set(members)
    train, val = fold_indices(skeleton_csv, 0)
    assert (len(train), len(val)) == (72_119, 22_358)


def test_real_sample_participants_land_in_their_listed_fold(real_data_dir):
    real = kaggle.read_train_csv(real_data_dir)
    assert uses_original_folds(real)
    folds = assign_folds(real, num_folds=4)
    listed = {p: fold for fold, members in ORIGINAL_FOLDS.items() for p in members}
    for participant, fold in zip(real["participant_id"], folds):
        assert fold == listed[participant]
    # The sample has none of fold 2's signers: asking for that fold says so.
    missing = sorted(set(range(4)) - set(folds.tolist()))
    for fold in missing:
        with pytest.raises(ValueError, match=f"fold {fold} has no clips"):
            fold_indices(real, fold)


def test_original_folds_only_for_the_competitions_signers_and_four_folds():
    table = pd.DataFrame({
        "participant_id": [2044, 25571, 22343, 18796, 4718, 62590] * 2,
        "label": [0, 1] * 6, "sequence_id": np.arange(12),
    })
    np.testing.assert_array_equal(assign_folds(table, 4), [0, 1, 2, 3, 0, 1] * 2)
    assert not uses_original_folds(table, num_folds=3)
    assert not uses_original_folds(table, original=False)
    assert set(assign_folds(table, 3)) == {0, 1, 2}  # stratified folds instead
    stranger = table.assign(participant_id=table["participant_id"].replace(62590, 99))
    assert not uses_original_folds(stranger)  # not every signer is the competition's


def test_fold_scheme_says_which_folds_and_why(real_data_dir):
    real = kaggle.read_train_csv(real_data_dir)
    scheme, line = fold_scheme(real)
    assert scheme == "original" and line.startswith("folds: the original's fold map")
    computed = "folds: computed signer-grouped, sign-stratified folds (StratifiedGroupKFold, "
    assert fold_scheme(real, 4, 7, original=False) == (
        "stratified", computed + "4 folds, seed 7), as the original's folds are turned off")
    assert fold_scheme(real, 3) == (
        "stratified", computed + "3 folds, seed 42), as 3 folds asked, the original's map has 4")
    stranger = real.assign(participant_id=real["participant_id"].replace(2044, 99))
    assert fold_scheme(stranger)[1].endswith(
        "as 1 participant (99) is not among the competition's 21")


def test_a_cv_skips_original_folds_without_clips_and_needs_two():
    table = pd.DataFrame({"participant_id": [2044, 25571, 18796, 4718] * 2,  # folds 0, 1, 3, 0
                          "label": [0, 1] * 4, "sequence_id": np.arange(8)})
    folds, skipped = cv_folds(table, 4)
    assert folds == [0, 1, 3] and list(skipped) == [2]
    assert skipped[2].startswith("fold 2 has no clips in this data")
    assert cv_folds(table, 3) == ([0, 1, 2], {})  # stratified folds: none empty
    only_fold_0 = table.assign(participant_id=[2044, 4718, 16069, 34503] * 2)
    with pytest.raises(ConfigError, match=r"only fold\(s\) \[0\] .* needs two"):
        cv_folds(only_fold_0, 4)
