"""The Keras version guard of tfislr/training/keras_adapter.py (its private hooks)."""

import pathlib
import re

import keras
import pytest

from tfislr.training import keras_adapter


def test_installed_keras_is_a_version_the_hooks_were_checked_against():
    assert keras.__version__ in keras_adapter.KERAS_CHECKED, (
        f"keras {keras.__version__} is installed, but tfislr's overrides of private Keras "
        f"hooks (tfislr/training/keras_adapter.py) were checked against "
        f"{keras_adapter.KERAS_CHECKED} only: read each hook in this Keras, then add it"
    )
    keras_adapter.check_keras_version()


def test_another_keras_version_is_refused_with_a_clear_message():
    with pytest.raises(ImportError, match=r"keras 3\.99\.0 is not a version .*keras_adapter"):
        keras_adapter.check_keras_version("3.99.0")


def test_the_private_hooks_exist_in_the_installed_keras():
    """Each overridden hook still exists on the Keras class it overrides."""
    hooks = {
        keras.Model: ("_maybe_symbolic_build", "_make_function", "make_train_function"),
        keras.optimizers.Optimizer: ("_all_reduce_sum_gradients",),
        keras.callbacks.BackupAndRestore: ("_save_model", "_load_model"),
        keras.layers.Layer: ("_flatten_layers",),
    }
    for owner, names in hooks.items():
        for name in names:
            assert hasattr(owner, name), f"{owner.__name__}.{name} is gone"
    from keras.src.backend.common import global_state

    assert hasattr(global_state, "get_global_attribute")


def test_pyproject_admits_only_the_checked_versions():
    pyproject = (pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text()
    (spec,) = re.findall(r'"keras([^"]*)"', pyproject)
    lowest, upper = min(keras_adapter.KERAS_CHECKED), max(keras_adapter.KERAS_CHECKED)
    major, minor, _ = upper.split(".")
    assert spec == f">={lowest},<{major}.{int(minor) + 1}", spec
