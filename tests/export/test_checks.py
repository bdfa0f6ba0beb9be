"""export.checks on an exported file: edge inputs, parity (its failure and unreadable clips)."""

import numpy as np
import pytest

from tfislr.export import ExportError, checks, export_ensemble, graph

from tiny_exports import NUM_CLASSES, members, runner_for, write_run


@pytest.mark.parametrize("case", list(checks.edge_case_inputs()))
def test_edge_inputs_on_exported_file(exported, case):
    _, path, _ = exported
    _, runner = runner_for(path)
    clip = checks.edge_case_inputs()[case]
    probs = runner(inputs=clip)["outputs"]
    assert probs.shape == (NUM_CLASSES,)
    assert np.all(np.isfinite(probs)), f"{case}: {probs}"
    assert abs(float(probs.sum()) - 1.0) < 1e-5


def test_nothing_left_inputs_agree(exported):
    """0 frames, all-NaN and no-hands all mean "no hand seen": one defined answer."""
    _, path, _ = exported
    _, runner = runner_for(path)
    cases = checks.edge_case_inputs()
    outputs = [runner(inputs=cases[c])["outputs"] for c in ("0_frames", "all_nan", "no_hands",
                                                            "all_inf")]
    for out in outputs[1:]:
        np.testing.assert_allclose(out, outputs[0], atol=1e-6)


def test_parity_failure_is_reported(exported, tmp_path):
    """A module with other weights than the file must fail the parity check."""
    _, path, _ = exported
    other = graph.build_ensemble_module(members(seed=5))
    with pytest.raises(ExportError, match=r"parity failed .* max abs probability diff"):
        checks.check_parity(other, path, checks.probe_sequences(4), tolerance=1e-3)


def test_unreadable_parity_clips_are_skipped_and_named(tmp_path, exported, monkeypatch,
                                                       synthetic_data_dir, capsys):
    """A missing or truncated clip of --parity-data is left out with one line naming it;
    the check runs on the others. With no readable clip the export fails before converting."""
    import shutil

    import export as export_cli
    import pandas as pd

    ensemble, fp32_path, _ = exported
    data = shutil.copytree(synthetic_data_dir, tmp_path / "data")
    paths = pd.read_csv(data / "train.csv")["path"]
    truncated, missing = data / paths.iloc[0], data / paths.iloc[len(paths) - 1]  # both chosen
    truncated.write_bytes(truncated.read_bytes()[:100])
    missing.unlink()
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: fp32_path.read_bytes())
    report = export_ensemble(ensemble, tmp_path / "model.tflite", "fp32", parity_clips=data,
                             latency_repeats=1)
    out = capsys.readouterr().out
    assert report["parity"]["num_sequences"] == 16 - 2
    assert [m.split(": ")[0] for m in report["parity_skipped"]] == [str(truncated), str(missing)]
    for message in report["parity_skipped"]:
        assert out.count(message) == 1
    assert "(2 unreadable clips skipped)" in out

    # No readable clip: one error line, and no conversion was started.
    for path in paths:
        (data / path).unlink(missing_ok=True)
    monkeypatch.setattr(graph, "convert", lambda *a, **k: pytest.fail("converted"))
    run = write_run(tmp_path / "run", ensemble[0].model, ensemble[0].max_len)
    assert export_cli.main(["single", "--run", str(run), "--parity-data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfislr-export: error: {data}: none of the 16 clips chosen from "
                          f"train.csv can be read ({truncated}: file not found; ")
    assert err.endswith("; and 13 more)\n")
