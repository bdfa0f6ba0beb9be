"""Dtype policies: float32 rebuilds of mixed-precision models, and their export."""

import numpy as np
import pytest

import keras

from tfislr import landmarks as lm
from tfislr.model.precision import float32_model, uses_float32

MIXED = ("mixed_float16", "mixed_bfloat16")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test and restores the previous one."""
    previous = keras.config.dtype_policy().name
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(previous)


def _inputs(max_len=8, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "landmarks": rng.normal(size=(batch, max_len, lm.NUM_POINTS, 3)).astype("float32"),
        "padding_mask": np.ones((batch, max_len), "float32"),
    }


@pytest.mark.parametrize("name", MIXED)
def test_float32_model_is_an_exact_full_precision_copy(policy, name):
    from tiny_exports import small_model

    policy(name)
    mixed = small_model(max_len=8)
    policy("float32")
    assert not uses_float32(mixed)
    copy = float32_model(mixed)
    assert copy is not mixed and uses_float32(copy)
    assert all(
        layer.dtype_policy.name == "float32" for layer in copy._flatten_layers()
    )
    for a, b in zip(mixed.weights, copy.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Same model, computed in full precision: close to the half-precision logits.
    inputs = _inputs()
    np.testing.assert_allclose(
        np.asarray(copy(inputs)), np.asarray(mixed(inputs)), atol=0.2, rtol=0.05
    )
    assert float32_model(copy) is copy  # already float32: no rebuild


@pytest.mark.parametrize("name", [pytest.param("mixed_float16", marks=pytest.mark.large),
                                  pytest.param("mixed_bfloat16", marks=pytest.mark.extra_large)])
def test_mixed_precision_run_exports_and_passes_its_checks(policy, tmp_path, name):
    """Saved under a mixed policy, loaded from its run dir, exported: parity and edge inputs."""
    from tiny_exports import small_model, write_run

    from tfislr.export import PARITY_TOLERANCE, export_ensemble

    policy(name)
    run_dir = write_run(tmp_path / "run", small_model(max_len=8), 8)
    policy("float32")
    report = export_ensemble([str(run_dir)], tmp_path / "m.tflite", "fp32",
                             verbose=False, latency_repeats=1)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOLERANCE["fp32"]
    assert (tmp_path / "m.tflite").stat().st_size > 0


# ----------------------------------------------------------------------------- config
def test_precision_choices_and_the_boolean_alias(tmp_path):
    import json

    from tfislr.config import config_from_dict, load_config

    assert load_config("demo").runtime.precision == "float32"
    for name in ("float32", *MIXED):
        assert load_config("demo", [f"runtime.precision={name}"]).runtime.precision == name
        assert load_config("demo", [f"train.precision={name}"]).runtime.precision == name
    alias = load_config("demo", ["train.mixed_precision=true"])
    assert alias.runtime.precision == "mixed_float16"
    assert load_config("demo", ["train.mixed_precision=false"]).runtime.precision == "float32"
    # config.json records the resolved value, and reads back equal.
    alias.to_json(tmp_path / "config.json")
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["runtime"]["precision"] == "mixed_float16"
    assert not {"precision", "mixed_precision"} & set(written["train"])
    assert config_from_dict(json.loads((tmp_path / "config.json").read_text())) == alias
    with pytest.raises(ValueError, match="runtime.precision must be one of"):
        load_config("demo", ["runtime.precision=float16"])
    with pytest.raises(ValueError, match="contradicts train.precision=mixed_bfloat16"):
        load_config("demo", ["train.mixed_precision=true", "train.precision=mixed_bfloat16"])


@pytest.mark.parametrize("name, scaled", [("float32", False), ("mixed_float16", True),
                                          ("mixed_bfloat16", False)])
def test_loss_scaling_only_for_float16(policy, name, scaled):
    from tiny_exports import small_model

    from tfislr.config import load_config
    from tfislr.training.optimizers import make_optimizer

    config = load_config("demo", [f"runtime.precision={name}"])
    policy(name)
    optimizer = make_optimizer(config.train, 10, small_model(max_len=8), "adamw",
                               config.runtime.precision)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == scaled


# ----------------------------------------------------------------------------- a real run
TINY_RUN = [
    "data.global_batch_size=8", "train.batch_group_size=8", "data.max_len=12",
    "model.embed_dim=4", "model.dense_dim=16", "model.transfo_dim=32",
    "model.distill_dense_dim=16", "model.distill_transfo_dim=32", "model.num_heads=4",
    "train.epochs=1", "train.soup_last_n=1",
]


def _run_and_export(data_dir, tmp_path, name):
    import json

    from tfislr.config import load_config
    from tfislr import export as tflite
    from tfislr.training.run import train

    config = load_config("demo", TINY_RUN + [
        f"runtime.precision={name}", f"data.prepared_dir={tmp_path / 'prepared'}"])
    run_dir = train(config, data_dir, output_dir=tmp_path / "runs", verbose=0)
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["precision"] == name
    assert json.loads((run_dir / "run.json").read_text())["runtime"]["precision"] == name
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    # The default quantization (fp16 weights): parity and edge inputs are checked inside.
    report = tflite.export_ensemble([str(run_dir)], tmp_path / "run.tflite", verbose=False,
                                    latency_repeats=1)
    assert report["parity"]["max_abs_diff"] <= tflite.PARITY_TOLERANCE["fp16"]
    assert report["edge_cases"]
    return report


@pytest.mark.extra_large
def test_mixed_float16_run_exports(synthetic_data_dir, tmp_path):
    _run_and_export(synthetic_data_dir, tmp_path, "mixed_float16")


@pytest.mark.extra_large
def test_mixed_bfloat16_run_exports(synthetic_data_dir, tmp_path):
    _run_and_export(synthetic_data_dir, tmp_path, "mixed_bfloat16")
