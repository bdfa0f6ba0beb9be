"""The export command on run dirs: an ensemble YAML by config name, `single --run`, and errors
that name the option."""

import json

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfislr.errors import ConfigError, DataError
from tfislr.export import checks, export_ensemble, graph

from tiny_exports import NUM_CLASSES, SIGNS, runner_for, small_model, write_run


@pytest.mark.large  # two exports through the command
def test_cli_ensemble_yaml_and_single_run(tmp_path, monkeypatch):
    """export.py on run dirs: by config name (latest run) via YAML, and `single --run`."""
    import export as export_cli

    runs = tmp_path / "runs"
    model = small_model(NUM_CLASSES, 12, seed=3)
    write_run(runs / "tiny" / "20260101-000000", small_model(NUM_CLASSES, 12, seed=9), 12)
    latest = write_run(runs / "tiny" / "20260102-000000", model, 12)
    yaml_path = tmp_path / "ens.yaml"
    out = tmp_path / "out" / "tinyens.tflite"
    yaml_path.write_text(
        f"name: tinyens\nmembers:\n  - config: tiny\nruns_dir: {runs}\n"
        f"output: {out}\nquantization: fp32\n"
    )
    assert export_cli.main(["ensemble", "--config", str(yaml_path)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["members"][0]["run_dir"] == str(latest)
    assert report["quantization"] == "fp32" and report["signs"] == SIGNS

    # The file holds the latest run's weights: compare with that model directly.
    _, runner = runner_for(out)
    clip = checks.probe_sequences(lengths=[30], seed=2)[0]
    from tfislr.preprocessing import Preprocess

    points = Preprocess(12)(tf.constant(clip))[tf.newaxis]
    logits = model({"landmarks": points, "padding_mask": tf.ones(tf.shape(points)[:2])})
    np.testing.assert_allclose(runner(inputs=clip)["outputs"],
                               keras.ops.convert_to_numpy(keras.ops.softmax(logits[0])),
                               atol=1e-5)

    # `single --run` loads the same run: reuse the flatbuffer (the checks still run on it).
    monkeypatch.setattr(graph, "convert", lambda *args, **kwargs: out.read_bytes())
    assert export_cli.main(["single", "--run", str(latest), "--quantization", "fp32"]) == 0
    single = json.loads((latest / "model.json").read_text())
    assert (latest / "model.tflite").exists() and single["members"][0]["run_dir"] == str(latest)
    assert export_cli.main(["single", "--run", str(tmp_path / "nope")]) == 2  # tfislr.errors


def test_single_run_errors_name_the_option(tmp_path, capsys):
    """`single --run` errors say "--run", never "an ensemble member"; a CV dir names its
    fold_K/ runs (in an ensemble too)."""
    import export as export_cli

    run = write_run(tmp_path / "cv" / "fold_1", small_model(NUM_CLASSES, 8), 8)
    expected = {
        run / "config.json": f"{run / 'config.json'}: is a file, not a run dir (--run); the run "
                             f"dir holding it is {run}",
        tmp_path / "nope": f"{tmp_path / 'nope'}: run dir not found (--run)",
        tmp_path / "cv": f"{tmp_path / 'cv'}: is a cross-validation dir, not a run dir: its "
                         f"runs are in its fold_K/ subfolders (fold_1); give one of them, "
                         f"e.g. {run}",
    }
    for given, message in expected.items():
        assert export_cli.main(["single", "--run", str(given)]) == 2
        assert capsys.readouterr().err == f"tfislr-export: error: {message}\n"
    with pytest.raises(DataError, match="is a cross-validation dir"):
        export_ensemble([{"run": str(tmp_path / "cv")}], tmp_path / "x.tflite", verbose=False)
    with pytest.raises(ConfigError, match=r"not a run dir \(an ensemble member\)"):
        export_ensemble([{"run": str(run / "config.json")}], tmp_path / "x.tflite",
                        verbose=False)
