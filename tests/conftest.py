"""Shared test fixtures: the real-data sample (skips when absent) and small synthetic sets; the
`--run_large` / `--run_extra_large` options without which the `large` / `extra_large` tests
are left out."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest


def pytest_addoption(parser):
    parser.addoption("--run_large", action="store_true", default=False,
                     help="also run the tests marked `large` (what CI runs beyond the quick suite)")
    parser.addoption("--run_extra_large", action="store_true", default=False,
                     help="also run the tests marked `extra_large` (the longest) and `large`")


def _left_out(config):
    """The markers whose tests this run leaves out."""
    if config.getoption("--run_extra_large"):
        return ()
    return ("extra_large",) if config.getoption("--run_large") else ("large", "extra_large")


def pytest_report_header(config):
    left_out = _left_out(config)
    if left_out:
        return (f"left out: tests marked {' and '.join(left_out)} "
                f"(--run_large adds `large`, --run_extra_large adds both)")
    return None


# How many tests this run's markers left out (pytest_collection_modifyitems), for the summary.
_LEFT_OUT_COUNT = pytest.StashKey[int]()


def _named_by_id(config):
    """The node ids given on the command line (`path::name`, `path::Class`), relative to the
    rootdir as pytest's node ids are: tests asked for by name."""
    named = []
    for arg in config.args:
        path, sep, rest = arg.partition("::")
        if not sep:
            continue
        try:
            relative = (config.invocation_params.dir / path).resolve().relative_to(config.rootpath)
        except ValueError:  # outside the rootdir: pytest names it otherwise; leave it to the markers
            continue
        named.append(f"{relative.as_posix()}::{rest}")
    return named


def pytest_collection_modifyitems(config, items):
    """Deselects `large` tests without --run_large or --run_extra_large and `extra_large` tests
    without --run_extra_large (keras-hub's opt-in markers), so a bare `pytest` is the quick
    suite and `--collect-only` counts what would run. A test named by its node id on the
    command line (`pytest file.py::test_x`, with or without its parameters) runs whatever its
    marker: the user asked for that test."""
    left_out = _left_out(config)
    if not left_out:
        return
    named = _named_by_id(config)
    kept, dropped = [], []
    for item in items:
        marked = any(item.get_closest_marker(name) is not None for name in left_out)
        asked = any(item.nodeid == n or item.nodeid.startswith((n + "::", n + "["))
                    for n in named)
        (dropped if marked and not asked else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        config.stash[_LEFT_OUT_COUNT] = len(dropped)


def pytest_terminal_summary(terminalreporter, config):
    """Says at the end (also under -q, which hides the header) how many tests the markers left
    out and which option adds them."""
    count = config.stash.get(_LEFT_OUT_COUNT, 0)
    if count:
        terminalreporter.write_line(
            f"{count} test(s) marked {' or '.join(_left_out(config))} left out: "
            "--run_large adds `large`, --run_extra_large both (or name a test by its id)")


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


SKELETON_CSV = pathlib.Path(
    os.environ.get(
        "TFISLR_SKELETON_CSV",
        REAL_DATA_DIR.parent / "skeleton" / "asl_signs_skeleton.csv",
    )
)


@pytest.fixture(scope="session")
def skeleton_csv():
    """The competition's 94,477 sequence ids, participants, the original's folds and frame
    counts (no landmarks, no labels) as a DataFrame; the test skips without the file."""
    import pandas as pd

    if not SKELETON_CSV.exists():
        pytest.skip(f"competition skeleton not found at {SKELETON_CSV}")
    return pd.read_csv(SKELETON_CSV)


# Small synthetic Kaggle-layout set shared by the data, pipeline and training tests:
# 6 signs × 12 clips over 6 participants (72 parquet files, ~2 s to write).
SYNTHETIC_SIZES = {"num_signs": 6, "num_participants": 6, "sequences_per_sign": 12, "seed": 0}


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A small synthetic data set in the exact Kaggle layout (train.csv, sign map, parquet files).

    Read-only by convention: tests that modify files must copy it first.
    """
    from tfislr.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", **SYNTHETIC_SIZES)


@pytest.fixture(scope="session")
def synthetic_store(synthetic_data_dir, tmp_path_factory):
    """`synthetic_data_dir` prepared at max_len 25 (in-process), loaded as a PreparedStore."""
    from tfislr.data.prepare import prepare_store
    from tfislr.data.store import load_store

    prepared = tmp_path_factory.mktemp("prepared")
    return load_store(prepare_store(synthetic_data_dir, 25, prepared, num_workers=1, progress=False))


@pytest.fixture(scope="session")
def synthetic_export(synthetic_data_dir, tmp_path_factory):
    """An untrained tiny distilled classifier (max_len 12) on the signs of
    `synthetic_data_dir`, exported fp32 once for the evaluate, predict and stream tests:
    (Keras model, .tflite path, signs by label). Read-only: tests that change the file or its
    report copy it first."""
    from tfislr.data.kaggle import read_sign_map, sign_names
    from tfislr.export import EnsembleMember, export_ensemble

    from tiny_exports import untrained_model

    signs = sign_names(read_sign_map(synthetic_data_dir))
    model = untrained_model(len(signs), 12)
    path = tmp_path_factory.mktemp("synthetic_export") / "model.tflite"
    export_ensemble([EnsembleMember("tiny", model, 12, signs)], path, "fp32", verbose=False,
                    latency_repeats=1)
    return model, path, signs
