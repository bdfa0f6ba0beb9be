"""The main environment's handle on the extraction environment: find it, run `extract` in it.

MediaPipe and TensorFlow cannot share an environment (requirements-extract.txt), so the
main environment never imports mediapipe: `tfislr-extract` and `tfislr-predict` on a video
run `python -m tfislr.video.extract` with the extraction environment's interpreter, and
read back the parquet files it writes.

The interpreter is, in this order: `$TFISLR_EXTRACT_PYTHON`; `.venv-extract/bin/python`
in the checkout this tfislr was imported from; `.venv-extract/bin/python` in the current
folder. `scripts/extract_env.sh` creates `.venv-extract`.
"""

import os
import pathlib
import subprocess

from tfislr.errors import DataError, MissingFileError

ENV_VAR = "TFISLR_EXTRACT_PYTHON"
VENV_NAME = ".venv-extract"


def checkout_root():
    """The source checkout tfislr is imported from, or None for an installed package."""
    root = pathlib.Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _venv_python(venv):
    for relative in ("bin/python", "Scripts/python.exe"):
        if (venv / relative).exists():
            return venv / relative
    return None


def extraction_python():
    """Path of the extraction environment's interpreter.

    Raises:
        MissingFileError: there is none (the message says how to create it).
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        if not pathlib.Path(explicit).exists():
            raise MissingFileError(f"{explicit}: interpreter not found (set by {ENV_VAR})")
        return pathlib.Path(explicit)
    # The checkout, then the working folder (once, when they are the same folder).
    folders = list(dict.fromkeys(r for r in (checkout_root(), pathlib.Path.cwd()) if r is not None))
    for folder in folders:
        found = _venv_python(folder / VENV_NAME)
        if found is not None:
            return found
    raise MissingFileError(
        f"no extraction environment ({' or '.join(str(f / VENV_NAME) for f in folders)}): "
        f"create it with scripts/extract_env.sh, or set {ENV_VAR} to its python"
    )


def module_command(module, args):
    """`(argv, env)` that run `python -m <module>` with `args` in the extraction env.

    The child imports tfislr from the same checkout as this process (PYTHONPATH is set to
    it, and to nothing else: the main environment's packages must not leak in).
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    root = checkout_root()
    if root is not None:
        env["PYTHONPATH"] = str(root)
    return [str(extraction_python()), "-m", module, *map(str, args)], env


def extract_command(args):
    """`(argv, env)` that run `tfislr.video.extract` with `args` in the extraction env."""
    return module_command("tfislr.video.extract", args)


def run_extract(args, capture=False):
    """Runs the extraction with `args`; returns the `CompletedProcess`.

    With `capture`, its output is collected (for `predict`) and a failure becomes an
    exception: exit code 2 a `DataError` with the child's error line, anything else a
    RuntimeError with the end of its stderr.
    """
    command, env = extract_command(args)
    if not capture:
        return subprocess.run(command, env=env, check=False)
    result = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines() or ["(no message)"]
        message = lines[-1].split(": error: ", 1)[-1]
        raise DataError(message)
    if result.returncode != 0:
        raise RuntimeError(
            f"the extraction ({' '.join(command)}) failed with exit code {result.returncode}:\n"
            + "\n".join(result.stderr.strip().splitlines()[-20:])
        )
    return result
