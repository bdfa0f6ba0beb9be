"""The `large` / `extra_large` marker hooks of tests/conftest.py, run by a pytest of their own
(a subprocess on a tiny test file, no TensorFlow): what a bare run, --run_large and a test
named by its node id collect, and the closing line saying what was left out."""

import pathlib
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent

SAMPLE = '''
import pytest

def test_quick():
    pass

@pytest.mark.large
def test_big():
    pass

@pytest.mark.large
@pytest.mark.parametrize("n", [1, 2])
def test_big_param(n):
    pass

@pytest.mark.extra_large
def test_huge():
    pass
'''


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp("markers")
    (folder / "test_sample.py").write_text(SAMPLE)
    # Its own ini (the markers, no addopts), so the rootdir is this folder, not the repository.
    (folder / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    large: l\n    extra_large: xl\n")
    return folder


def _pytest(folder, *args):
    """(collected node ids, whole output) of `pytest -p conftest --collect-only` in `folder`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
         "--collect-only", "-q", *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(TESTS)})
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    return ids, done.stdout + done.stderr


def test_bare_run_leaves_out_large_and_says_so(sample):
    ids, output = _pytest(sample)
    assert ids == ["test_sample.py::test_quick"], output
    assert "4 test(s) marked large or extra_large left out" in output, output


def test_run_large_adds_large_only(sample):
    ids, output = _pytest(sample, "--run_large")
    assert "test_sample.py::test_big" in ids and "test_sample.py::test_huge" not in ids, output
    assert len(ids) == 4, output
    assert "1 test(s) marked extra_large left out" in output, output


@pytest.mark.parametrize("named, expected", [
    ("test_sample.py::test_big", ["test_sample.py::test_big"]),
    ("test_sample.py::test_big_param", ["test_sample.py::test_big_param[1]",
                                        "test_sample.py::test_big_param[2]"]),
    ("test_sample.py::test_big_param[2]", ["test_sample.py::test_big_param[2]"]),
    ("test_sample.py::test_huge", ["test_sample.py::test_huge"]),
])
def test_a_test_named_by_its_id_runs_whatever_its_marker(sample, named, expected):
    ids, output = _pytest(sample, named)
    assert ids == expected, output
    assert "left out" not in output, output


def test_a_file_named_still_leaves_out_its_large_tests(sample):
    ids, output = _pytest(sample, "test_sample.py")
    assert ids == ["test_sample.py::test_quick"], output


def test_a_node_id_given_from_another_folder_is_recognised(sample):
    ids, output = _pytest(sample.parent, f"{sample.name}/test_sample.py::test_big",
                          "--rootdir", str(sample), "-c", str(sample / "pytest.ini"))
    assert ids == ["test_sample.py::test_big"], output
