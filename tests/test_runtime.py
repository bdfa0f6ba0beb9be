"""TensorFlow start-up: no GPU-probing noise on a machine without a GPU, real errors kept."""

import os
import pathlib
import subprocess
import sys

import pytest

from tfislr import runtime

REPO = pathlib.Path(__file__).resolve().parents[1]
CUINIT = "failed call to cuInit"


def _python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=300)


def test_keep_line_rules():
    probe = "E0000 00:00:1.2 123 cuda_platform.cc:52] failed call to cuInit: INTERNAL: ..."
    real = "E0000 00:00:1.2 123 some_kernel.cc:9] something really broke"
    info = "I0000 00:00:1.2 123 port.cc:153] oneDNN custom operations are on."
    assert not runtime.keep_line(probe, 2, gpu_driver=False)
    assert runtime.keep_line(probe, 2, gpu_driver=True)  # with a GPU it is a real failure
    assert runtime.keep_line(real, 2, gpu_driver=False)
    assert runtime.keep_line("Traceback (most recent call last):", 2, gpu_driver=False)
    assert not runtime.keep_line(info, 2, gpu_driver=False)
    assert runtime.keep_line(info, 0, gpu_driver=False)


@pytest.mark.large
@pytest.mark.skipif(runtime.has_nvidia_driver(), reason="this machine has an NVIDIA driver")
def test_entry_point_start_up_is_quiet_but_real_errors_show():
    # Without start_tensorflow the probe prints the cuInit line here: the check can fail.
    plain = _python("import tensorflow as tf; tf.config.list_physical_devices('GPU')",
                    TF_CPP_MIN_LOG_LEVEL="2")
    assert CUINIT in plain.stderr, plain.stderr[-2000:]

    # An entry point that loads TensorFlow (after parsing, through start_tensorflow:
    # tfislr/cli/command.py) prints nothing of it; `--help` no longer loads it at all.
    entry = _python("import sys; from tfislr.cli.model import main; "
                    "sys.exit(main(['--config', 'demo', '--num-classes', '6', '--no-summary']))")
    assert entry.returncode == 0, entry.stderr[-2000:]
    assert CUINIT not in entry.stderr and "absl::InitializeLog" not in entry.stderr, entry.stderr

    # A real error written while the probe's output is filtered still reaches stderr.
    real = _python(
        "import os, sys\n"
        "import tensorflow as tf\n"
        "probe = tf.config.list_physical_devices\n"
        "def noisy(*a):\n"
        "    os.write(2, b'E0000 00:00:1.0 1 kernel.cc:9] a real error\\n')\n"
        "    print('a Python warning', file=sys.stderr)\n"
        "    return probe(*a)\n"
        "tf.config.list_physical_devices = noisy\n"
        "from tfislr.runtime import start_tensorflow\n"
        "start_tensorflow()\n"
    )
    assert real.returncode == 0, real.stderr[-2000:]
    assert "kernel.cc:9] a real error" in real.stderr and "a Python warning" in real.stderr
    after_import = real.stderr.split("a real error", 1)[1]
    assert CUINIT not in after_import


def test_no_entry_point_imports_tensorflow_before_its_start_up():
    # TensorFlow's start-up lines are filtered only if `start_tensorflow` imports it first:
    # an entry point whose module (or package) imports it at import time prints them all.
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    modules = sorted({target.split(":")[0] for target in scripts.values()})
    loaded = _python(
        "import importlib, sys\n"
        f"for module in {modules!r}:\n"
        "    importlib.import_module(module)\n"
        "    early = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "    if early:\n"
        "        print(module, early)\n"
        "        break\n"
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout == "", loaded.stdout
