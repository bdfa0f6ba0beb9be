"""Commands answer before TensorFlow loads: `--help`, a bad option and a bad `--set` of every
console script run with TensorFlow and Keras unimportable (tfislr/cli/command.py says where
TensorFlow loads instead)."""

import os
import pathlib
import subprocess
import sys
import textwrap
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]

# Run before the command: any import of TensorFlow or Keras fails, as in an environment
# without them.
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"{name} is blocked: the command imported it too early")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
""")


def _run(target, argv):
    module, function = target.split(":")
    code = (BLOCKER + f"from {module} import {function}\n"
            f"sys.exit({function}({argv!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_answers_without_tensorflow(name):
    result = _run(SCRIPTS[name], ["--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]


def test_the_blocker_blocks():
    """The same blocker makes a command that does need TensorFlow fail (so a 0 above means
    TensorFlow was not imported)."""
    code = BLOCKER + "import tfislr.model\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=120)
    assert result.returncode == 1 and "is blocked" in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize("argv, needle", [
    (["--config", "demo", "--data-dir", "d", "--set", "train.epochs=zero"], "train.epochs"),
    (["--config", "demo", "--data-dir", "d", "--set", "nosuch.key=1"], "nosuch"),
    (["--config", "no_such_config", "--data-dir", "d"], "no_such_config"),
    (["--config", "demo", "--data-dir", "d", "--epochs", "-1"], "--epochs"),
])
def test_train_refuses_bad_options_without_tensorflow(argv, needle):
    """A bad `--set`, config or option: exit 2 and one line, before TensorFlow is needed."""
    result = _run(SCRIPTS["tfislr-train"], argv)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith("tfislr-train: error:") and needle in lines[-1], lines


def test_model_refuses_a_bad_set_without_tensorflow():
    result = _run(SCRIPTS["tfislr-model"], ["--config", "len80", "--set", "model.nope=1"])
    assert result.returncode == 2, result.stderr
    assert "model.nope" in result.stderr.strip().splitlines()[-1]
