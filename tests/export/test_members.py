"""export.members: members agree on classes and sign order, each run is checked and named on
its own, the latest finished run is found."""

import json

import pytest

from tfislr.export import ensemble as ensemble_lib
from tfislr.export.members import EnsembleMember, check_members_agree, latest_run
from tfislr.runs.run_dir import RunDir

from tiny_exports import FOLD_0, FULL_FIT, NUM_CLASSES, SIGNS, small_model, write_run


def test_members_must_agree_on_classes():
    with pytest.raises(ValueError, match="disagree on num_classes"):
        check_members_agree([
            EnsembleMember("a", small_model(NUM_CLASSES, 8), 8),
            EnsembleMember("b", small_model(NUM_CLASSES + 1, 8), 8),
        ])
    swapped = SIGNS[:2][::-1] + SIGNS[2:]
    with pytest.raises(ValueError, match="disagree on the sign order: label 0"):
        check_members_agree([
            EnsembleMember("a", small_model(NUM_CLASSES, 8), 8, SIGNS),
            EnsembleMember("b", small_model(NUM_CLASSES, 8), 8, swapped),
        ])


@pytest.mark.large  # four models saved as runs
def test_members_of_one_config_are_checked_and_named_one_by_one(tmp_path, exported):
    """Two runs of one config share its name: each is checked on its own (the old check
    keyed the class counts by name, so two `tiny` members with 7 and 8 classes passed it)
    and named by its run dir, in the errors and in the export's summary line."""
    from tfislr.export.members import resolve_member

    def check(*runs):
        check_members_agree([resolve_member(str(run)) for run in runs])

    base = write_run(tmp_path / "tiny" / "a", small_model(NUM_CLASSES, 8), 8)
    swapped = write_run(tmp_path / "tiny" / "b", small_model(NUM_CLASSES, 8), 8,
                        signs=SIGNS[:2][::-1] + SIGNS[2:])
    more = write_run(tmp_path / "tiny" / "c", small_model(NUM_CLASSES + 1, 8), 8,
                     signs=SIGNS + ["extra"])
    with pytest.raises(ValueError) as order:
        check(base, swapped)
    assert str(order.value) == (
        f"ensemble members 'tiny ({base}, distilled)' and 'tiny ({swapped}, distilled)' "
        "disagree on the sign order: label 0 is 'sign_0' vs 'sign_1'")
    with pytest.raises(ValueError) as counts:
        check(base, more)
    assert str(counts.value) == (
        f"ensemble members disagree on num_classes: tiny ({base}, distilled) outputs "
        f"{NUM_CLASSES}, tiny ({more}, distilled) outputs {NUM_CLASSES + 1}")
    # Without signs.json, only the class counts tell them apart.
    with pytest.raises(ValueError, match="disagree on num_classes"):
        check_members_agree([EnsembleMember("a", small_model(NUM_CLASSES, 8), 8),
                             EnsembleMember("a", small_model(NUM_CLASSES + 1, 8), 8)])

    _, _, report = exported
    report = {**report, "members": [{**m, "name": "tiny", "run_dir": str(run)}
                                    for m, run in zip(report["members"], (base, swapped))]}
    first_line = ensemble_lib.format_report(report).splitlines()[0]
    assert f"2 members: tiny ({base}): max_len 8, " in first_line
    assert f"; tiny ({swapped}): max_len 20, " in first_line


def test_latest_run_skips_unfinished_runs(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20260101-000000", "20251201-000000"):
        (runs / "tiny" / name / "models").mkdir(parents=True)
        (runs / "tiny" / name / "models" / "distilled_soup.keras").write_bytes(b"")
        (runs / "tiny" / name / "run.json").write_text(json.dumps(FULL_FIT))  # start: its name
        RunDir(runs / "tiny" / name).mark_finished()
    (runs / "tiny" / "20260301-000000").mkdir()  # still training
    assert latest_run("tiny", runs).name == "20260101-000000"
    with pytest.raises(ValueError, match="no finished run"):
        latest_run("tiny", runs, weights="teacher")
    with pytest.raises(ValueError, match="folder not found \\(no runs of config 'other'\\)"):
        latest_run("other", runs)


def test_a_config_name_exports_full_fits_only_and_says_which_runs(tmp_path, exported):
    """A fold run (newer than the full fit, or the only run) never becomes the export of a
    config name unnoticed: the lookup takes full fits, a fold run is used when named, and
    the report and the summary's last line say which runs on which data."""
    from tfislr.export.members import resolve_member, training_data

    runs = tmp_path / "runs"
    fold = write_run(runs / "tiny" / "20260102-000000", small_model(NUM_CLASSES, 8), 8,
                     split=FOLD_0)
    with pytest.raises(ValueError, match="no finished full-fit run .* fold run is exported "
                                         "only when named: `run: " + str(fold)):
        latest_run("tiny", runs)
    full = write_run(runs / "tiny" / "20260101-000000", small_model(NUM_CLASSES, 8), 8)
    assert latest_run("tiny", runs) == full
    newer = write_run(runs / "tiny" / "20260103-000000", small_model(NUM_CLASSES, 8), 8,
                      split=FOLD_0)
    assert latest_run("tiny", runs) == full  # the fold run started last is passed over
    assert resolve_member("tiny", runs_dir=runs).run_dir == str(full)
    assert resolve_member(str(newer)).run_dir == str(newer)  # a run dir given: used
    assert resolve_member({"run": str(fold)}).run_dir == str(fold)  # named: used
    assert training_data(FULL_FIT) == "all the data (full fit)"
    assert training_data(FOLD_0) == "all but fold 0 of 4 (2 signers held out)"
    _, _, report = exported
    members = [{**report["members"][0], "run_dir": str(run), "split": split, "weights": "distilled",
                "trained_on": training_data(split)} for run, split in ((full, FULL_FIT),
                                                                     (fold, FOLD_0))]
    last = ensemble_lib.format_report({**report, "members": members}).splitlines()[-1]
    assert last == (f"  runs     {members[0]['name']} ({full}, distilled) trained on all the data "
                    f"(full fit); {members[0]['name']} ({fold}, distilled) trained on all but "
                    "fold 0 of 4 (2 signers held out)")
