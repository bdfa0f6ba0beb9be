"""Shared test fixtures: the real-data sample (skips when absent) and small synthetic sets."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

REAL_DATA_DIR = pathlib.Path(
    os.environ.get(
        "TFISLR_REAL_DATA",
        pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "real",
    )
)


@pytest.fixture(scope="session")
def real_data_dir():
    """The real Kaggle-layout sample in ../shared/data/real; the test skips without it."""
    if not (REAL_DATA_DIR / "train.csv").exists():
        pytest.skip(f"real data sample not found at {REAL_DATA_DIR}")
    return REAL_DATA_DIR
