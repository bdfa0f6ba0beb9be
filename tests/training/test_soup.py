"""Checkpoints of the three models and their uniform soup."""

import h5py
import keras
import numpy as np
import pytest

from tfislr.training import soup
from tiny_models import MAX_LEN, NUM_CLASSES, build_tiny, tiny_config


def _datasets(path):
    """{h5 dataset path: array} of a Keras weights file, read with h5py (not Keras)."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def _triple(seed=0):
    keras.utils.set_random_seed(seed)
    config = tiny_config()
    models = []
    for distilled in (False, False, True):
        model = build_tiny(config.model, NUM_CLASSES, MAX_LEN, distilled)
        model({"landmarks": np.zeros((2, MAX_LEN, 100, 3), "float32"),
               "padding_mask": np.ones((2, MAX_LEN), "float32")}, training=True)
        models.append(model)
    return soup.ModelTriple(*models)


def _perturb(triple, rng):
    for model in triple.named_models().values():
        for v in model.variables:
            if "float" in str(v.dtype):
                v.assign(v.numpy() + rng.normal(size=v.shape).astype("float32"))


def test_soup_is_the_mean_of_the_saved_weights(tmp_path):
    triple = _triple()
    rng = np.random.default_rng(0)
    paths = []
    for epoch in (4, 5, 6):
        _perturb(triple, rng)
        paths.append(soup.save_checkpoint(triple, tmp_path / "checkpoints", epoch))
    assert [e for e, _ in soup.list_checkpoints(tmp_path / "checkpoints")] == [4, 5, 6]
    assert not list((tmp_path / "checkpoints").glob("*.tmp.*"))

    epochs = soup.soup_last_checkpoints(triple, tmp_path / "checkpoints", last_n=2)
    assert epochs == [5, 6]
    triple.save_weights(tmp_path / "soup.weights.h5")

    saved = [_datasets(p) for p in paths[-2:]]
    souped = _datasets(tmp_path / "soup.weights.h5")
    assert set(souped) == set(saved[0]) and len(souped) > 10
    # The three models and the BatchNorm statistics are all in the files.
    assert any(k.startswith("student/") for k in souped) and any(k.startswith("teacher/") for k in souped)
    assert any(k.startswith("distilled/") for k in souped)
    assert not any(k.startswith("layers/") for k in souped)
    for key, value in souped.items():
        assert np.issubdtype(value.dtype, np.floating), key
        np.testing.assert_allclose(value, (saved[0][key] + saved[1][key]) / 2, rtol=1e-6, atol=1e-6)


def test_batchnorm_statistics_are_averaged(tmp_path):
    triple = _triple()
    bn = triple.student.bn
    values = []
    for epoch, offset in ((1, 1.0), (2, 3.0)):
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, offset, "float32"))
        values.append(offset)
        soup.save_checkpoint(triple, tmp_path, epoch)
    soup.soup_last_checkpoints(triple, tmp_path, last_n=5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(values))


def test_checkpoint_round_trip_restores_all_three(tmp_path):
    triple = _triple(seed=1)
    path = soup.save_checkpoint(triple, tmp_path, 7)
    assert path.name == "epoch_007.weights.h5"
    before = {n: [v.numpy().copy() for v in m.variables] for n, m in triple.named_models().items()}
    _perturb(triple, np.random.default_rng(1))
    triple.load_weights(path)
    for name, model in triple.named_models().items():
        for a, v in zip(before[name], model.variables):
            if "float" in str(v.dtype):
                np.testing.assert_array_equal(a, v.numpy())


def test_soup_needs_checkpoints(tmp_path):
    triple = _triple()
    with pytest.raises(ValueError, match="no checkpoints"):
        soup.soup_last_checkpoints(triple, tmp_path, 3)
    with pytest.raises(ValueError):
        soup.uniform_soup(triple, [])
