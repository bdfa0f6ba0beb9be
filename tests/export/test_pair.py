"""export.pair: the .tflite file and its report are written as a pair (sha256), a failed or
crashed export keeps the earlier pair or leaves none, and readers detect a broken pair."""

import hashlib
import json
import os
import pathlib

import pytest

from tfislr.cli import evaluate as evaluate_cli
from tfislr.errors import DataError
from tfislr.export import ExportError, checks, export_ensemble, graph, pair
from tfislr.export import ensemble as ensemble_lib

from tiny_exports import NUM_CLASSES, SIGNS


def test_report_written_next_to_file(exported):
    _, path, report = exported
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["size"]["bytes"] == path.stat().st_size
    assert saved["signs"] == SIGNS and saved["num_classes"] == NUM_CLASSES
    assert [m["max_len"] for m in saved["members"]] == [8, 20]
    assert saved["parity"]["max_abs_diff"] <= checks.PARITY_TOLERANCE["fp32"]
    assert saved["latency"]["num_threads"] == 1 and saved["latency"]["median_ms"] > 0
    assert not any(op.startswith("CUSTOM") for op in saved["ops"])
    assert report["report_path"] == str(path.with_suffix(".json"))
    assert saved["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_failed_export_keeps_earlier_file_and_report(tmp_path, exported, monkeypatch):
    """A failed check leaves the earlier good export (file and report) as it was; the
    failure's file and report go to `.rejected.*` and the error names those, not a temp."""
    ensemble, fp32_path, _ = exported
    path = tmp_path / "keep.tflite"
    path.write_bytes(fp32_path.read_bytes())  # an earlier export that passed
    good_report = fp32_path.with_suffix(".json").read_text()
    path.with_suffix(".json").write_text(good_report)
    # Reuse the fixture's flatbuffer: this test is about the check, not the converter.
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    with pytest.raises(ExportError) as raised:
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    message = str(raised.value)
    rejected, rejected_report = tmp_path / "keep.rejected.tflite", tmp_path / "keep.rejected.json"
    assert "unchecked" not in message
    assert message.startswith(f"{path} not written: {rejected} is ")
    assert "above the 0.001 MB limit" in message and str(rejected_report) in message
    assert path.read_bytes() == fp32_path.read_bytes()
    assert path.with_suffix(".json").read_text() == good_report
    assert rejected.read_bytes() == fp32_path.read_bytes()  # kept for inspection
    report = json.loads(rejected_report.read_text())
    assert "above the" in report["error"] and report["path"] == str(rejected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["keep.tflite", "keep.json", rejected.name, rejected_report.name])


def test_failed_export_without_earlier_one_writes_no_output(tmp_path, exported, monkeypatch):
    ensemble, fp32_path, _ = exported
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    path = tmp_path / "big.tflite"
    with pytest.raises(ExportError, match=r"MB \([\d,]+ bytes\), above the 0.001 MB limit"):
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert (tmp_path / "big.rejected.json").exists()


def _export_killed_before_renaming_onto(target, *args, **kwargs):
    """`export_ensemble(*args, **kwargs)`, stopped (as a kill would) when `os.replace` is
    about to put `target` in place."""
    replace = os.replace

    def replace_but_not_onto_target(source, destination):
        if pathlib.Path(destination) == target:
            raise KeyboardInterrupt(f"killed before {target} was renamed into place")
        return replace(source, destination)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace_but_not_onto_target)
        with pytest.raises(KeyboardInterrupt):
            export_ensemble(*args, **kwargs)


def test_a_crash_between_the_two_renames_is_detected_by_every_reader(
        tmp_path, exported, monkeypatch, synthetic_data_dir, capsys):
    """The new report is in place, the file rename never happened: the old file and the
    new report are not a pair, and the readers of the report (evaluate, predict) say so."""
    from tfislr import evaluate, predict

    ensemble, fp32_path, _ = exported
    # This test is about the renames: the file is the fixture's, its checks are skipped.
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    monkeypatch.setattr(ensemble_lib, "_check_file", lambda *args, **kwargs: None)
    path = tmp_path / "model.tflite"
    path.write_bytes(b"an earlier export")
    path.with_suffix(".json").write_text(json.dumps(
        {"signs": ["old"], "sha256": hashlib.sha256(b"an earlier export").hexdigest()}))
    _export_killed_before_renaming_onto(path, ensemble, path, "fp32", verbose=False,
                                        latency_repeats=1)
    assert path.read_bytes() == b"an earlier export"
    assert json.loads(path.with_suffix(".json").read_text())["signs"] == SIGNS  # the new one
    message = (f"{path.with_suffix('.json')}: does not match {path} (sha256 differs: an "
               "interrupted export?); export again")
    for read in (evaluate.export_report, predict.sign_names):
        with pytest.raises(DataError) as raised:
            read(path)
        assert str(raised.value) == message
    assert evaluate_cli.main([str(path), "--data-dir", str(synthetic_data_dir)]) == 2
    assert capsys.readouterr().err == f"tfislr-evaluate: error: {message}\n"

    # A first export killed there leaves a report without a file: "file not found".
    fresh = tmp_path / "fresh.tflite"
    _export_killed_before_renaming_onto(fresh, ensemble, fresh, "fp32", verbose=False,
                                        latency_repeats=1)
    assert fresh.with_suffix(".json").exists() and not fresh.exists()
    assert evaluate_cli.main([str(fresh), "--data-dir", str(synthetic_data_dir)]) == 2
    assert capsys.readouterr().err == f"tfislr-evaluate: error: {fresh}: file not found\n"


def test_a_report_without_the_files_sha256_is_refused(tmp_path, exported):
    _, fp32_path, _ = exported
    path = tmp_path / "model.tflite"
    path.write_bytes(fp32_path.read_bytes())
    report = json.loads(fp32_path.with_suffix(".json").read_text())
    assert pair.read_report(fp32_path) == report
    del report["sha256"]  # a report of an export before reports recorded it
    path.with_suffix(".json").write_text(json.dumps(report))
    with pytest.raises(DataError, match=r"model.json: records no sha256 of .*model.tflite"):
        pair.read_report(path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(DataError, match=r"model.json: not valid JSON"):
        pair.read_report(path)
    path.with_suffix(".json").unlink()
    assert pair.read_report(path) == {}  # a file exported elsewhere has no report


def test_a_successful_export_removes_an_earlier_rejected_pair(tmp_path, exported, monkeypatch):
    ensemble, fp32_path, fixture_report = exported
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    path = tmp_path / "model.tflite"
    with pytest.raises(ExportError):
        export_ensemble(ensemble, path, "fp32", max_size_mb=0.001, verbose=False)
    rejected, rejected_report = pair.rejected_paths(path)
    assert pair.read_report(rejected)["error"]  # a pair too: its report matches its file
    # Passes the checks: their results are the fixture's (same file), not measured again.
    passed = {key: fixture_report[key] for key in ("size", "parity", "edge_cases", "latency")}
    monkeypatch.setattr(ensemble_lib, "_check_file", lambda report, *a, **k: report.update(passed))
    export_ensemble(ensemble, path, "fp32", verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.tflite"]
    assert pair.read_report(path)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
