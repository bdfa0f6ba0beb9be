"""BackupAndRestore: every random state of the step comes back with the weights."""

import json

import keras
import numpy as np

from tfislr.training import callbacks as cb


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.5),
        keras.layers.Dense(8), keras.layers.Dropout(0.3), keras.layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _values(model):
    return [np.array(state) for state in cb.random_states(model)]


def test_random_states_are_saved_and_restored(tmp_path):
    trained = _model()
    backup = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    trained.fit(*_data(), batch_size=4, epochs=2, verbose=0, callbacks=[backup])
    saved = _values(trained)
    assert len(saved) >= 2  # one seed generator per Dropout layer
    fresh = _model()
    # Without the states a resumed run would start from a fresh run's dropout masks.
    assert any(not np.array_equal(a, b) for a, b in zip(_values(fresh), saved))
    restore = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    restore.set_model(fresh)
    restore.on_train_begin()
    for a, b in zip(_values(fresh), saved):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fresh.weights, trained.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_a_kill_between_the_writes_restores_the_epoch_the_weights_belong_to(tmp_path):
    model = _model()
    backup = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0, callbacks=[backup])
    after_epoch_1 = _values(model)
    # Epoch 2's random states written, then killed before the weights and metadata.
    model.fit(*_data(), batch_size=4, epochs=1, verbose=0)
    backup._current_epoch = 2
    current, previous = backup._state_paths()
    states = {f"state_{i}": v for i, v in enumerate(_values(model))}
    np.savez(current.with_suffix(".tmp.npz"), epoch=2, **states)
    current.replace(previous)
    current.with_suffix(".tmp.npz").replace(current)
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    fresh = _model()
    restore = cb.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    restore.set_model(fresh)
    restore.on_train_begin()
    for a, b in zip(_values(fresh), after_epoch_1):
        np.testing.assert_array_equal(a, b)
