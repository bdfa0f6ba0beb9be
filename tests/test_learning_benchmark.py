"""benchmarks/learning.py: its statistics, and (slow) a short run of the benchmark itself."""

import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _learning():
    spec = importlib.util.spec_from_file_location("learning", REPO / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(curve):
    return {"accuracy": {model: list(curve) for model in ("student", "teacher", "distilled")},
            "soup": None}


def test_summary_and_comparison_statistics():
    learning = _learning()
    a = learning.summarize({1: _run([0.1, 0.5, 0.6, 0.7]), 2: _run([0.3, 0.5, 0.8, 0.9])})
    b = learning.summarize({1: _run([0.2, 0.6, 0.9, 0.9]), 2: _run([0.2, 0.6, 0.9, 0.9])})
    student = a["student"]
    assert a["epochs"] == 4 and a["seeds"] == [1, 2]
    assert student["per_epoch"][0]["mean"] == pytest.approx(0.2)
    assert student["per_epoch"][0]["std"] == pytest.approx(0.1 * 2 ** 0.5)  # ddof 1
    # Second half = epochs 3-4: per seed 0.65 and 0.85.
    assert student["second_half_mean"]["mean"] == pytest.approx(0.75)
    assert student["second_half_mean"]["min"] == pytest.approx(0.65)
    assert student["final"]["mean"] == pytest.approx(0.8)
    difference = learning.compare(a, b)["teacher"]
    assert difference["second_half_mean"]["b_minus_a"] == pytest.approx(0.15)
    # The standard error comes from A's spread only (B's seeds agree).
    assert difference["second_half_mean"]["standard_error"] == pytest.approx(0.1)
    assert difference["second_half_mean"]["t"] == pytest.approx(1.5)
    assert difference["epochs_b_above_a"] == 3  # epoch 1: 0.2 vs 0.2
    assert difference["second_half_epochs_b_above_a"] == 2


@pytest.mark.extra_large
@pytest.mark.timeout(2700)  # generates and prepares the 960-clip set, then trains; over 20
# minutes when the machine is loaded
def test_a_short_benchmark_run_records_every_epoch_of_the_three_models(tmp_path):
    learning = _learning()
    assert learning.main(["--name", "short", "--seeds", "1", "--epochs", "2",
                          "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "learning_short.json").read_text())
    assert (tmp_path / "learning_short.png").stat().st_size > 0
    run = record["per_seed"]["1"]
    for model in ("student", "teacher", "distilled"):
        curve = run["accuracy"][model]
        assert len(curve) == 2 and all(0.0 <= acc <= 1.0 for acc in curve)
        assert record["summary"][model]["final"]["mean"] == curve[-1]
        assert run["soup"]["models"][model]["soup_accuracy"] is not None
    assert record["setting"]["overrides"][:4] == list(learning.BASE_OVERRIDES)
    assert record["summary"]["epochs"] == 2 and record["data"] == learning.DATA_SPEC
