"""Dtype policies: float32 rebuilds of mixed-precision models, and their export."""

import numpy as np
import pytest

import keras

from tfislr import landmarks
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
        "landmarks": rng.normal(size=(batch, max_len, landmarks.NUM_POINTS, 3)).astype("float32"),
        "padding_mask": np.ones((batch, max_len), "float32"),
    }


@pytest.mark.parametrize("name", MIXED)
def test_float32_model_is_an_exact_full_precision_copy(policy, name):
    from test_export import small_model

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


@pytest.mark.parametrize("name", MIXED)
def test_mixed_precision_run_exports_and_passes_its_checks(policy, tmp_path, name):
    """Saved under a mixed policy, loaded from its run dir, exported: parity and edge inputs."""
    from test_export import small_model, write_run

    from tfislr.export import PARITY_TOLERANCE, export_ensemble

    policy(name)
    run_dir = write_run(tmp_path / "run", small_model(max_len=8), 8)
    policy("float32")
    report = export_ensemble([str(run_dir)], tmp_path / "m.tflite", "fp32",
                             verbose=False, latency_repeats=1)
    assert report["parity"]["max_abs_diff"] <= PARITY_TOLERANCE["fp32"]
    assert (tmp_path / "m.tflite").stat().st_size > 0
