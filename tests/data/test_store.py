"""The prepared store (`tfislr.data.store`): its folder, summary and consistency checks.

What the prepare step writes into a store is tested in test_prepare.py.
"""

import pathlib
import shutil

import numpy as np
import pytest

from tfislr.data import store


def test_store_dir_and_read_summary(tmp_path, synthetic_store):
    assert store.store_dir(tmp_path, 80) == pathlib.Path(tmp_path) / "max_len_80"
    assert store.store_dir(str(tmp_path), 25.0) == tmp_path / "max_len_25"
    assert store.read_summary(synthetic_store.path) == synthetic_store.summary
    assert store.read_summary(tmp_path / "absent") is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / store.SUMMARY_FILE).write_text("{ half written")
    assert store.read_summary(broken) is None  # an unreadable summary: not a complete store


def test_load_store_without_a_complete_store_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete prepared store"):
        store.load_store(tmp_path / "nothing")


def test_load_store_checks_consistency(tmp_path, synthetic_store):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_store.path, copy)
    np.save(copy / "row_splits.npy", synthetic_store.row_splits[:-1])
    with pytest.raises(ValueError, match="row_splits do not match"):
        store.load_store(copy)
    loaded = store.load_store(synthetic_store.path, mmap=False)
    assert isinstance(loaded.landmarks, np.ndarray) and not isinstance(loaded.landmarks, np.memmap)
