"""The project's commands as subprocesses in tests: their environment, and a SIGKILL at a
chosen moment (what a crash, a preempted node or a user's Ctrl-\\ leaves behind)."""

import json
import os
import pathlib
import signal
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def env():
    """This environment, with the repository importable and TensorFlow's info lines off."""
    result = dict(os.environ)
    result["PYTHONPATH"] = os.pathsep.join([str(REPO), result.get("PYTHONPATH", "")])
    result.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return result


def backed_up_epoch(run_dir):
    """The last epoch `BackupAndRestore` saved in `run_dir` (0-based), or None (none yet, or
    its metadata file is being written)."""
    metadata = pathlib.Path(run_dir) / "backup" / "training_metadata.json"
    try:
        return json.loads(metadata.read_text() or "{}").get("epoch")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_until_killed(command, condition, timeout=900, poll_seconds=0.2, envs=None):
    """Starts `command`, SIGKILLs its whole process group once `condition()` holds (checked
    every `poll_seconds`), returns its output. Fails if the command ends (or `timeout`
    seconds pass) before that.

    With `envs` (a list of environments, e.g. one TF_CONFIG per worker of a cluster) one
    process is started per environment, all are killed together, and the output is theirs
    one after another."""
    processes = [subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
                 for environment in (envs or [env()])]
    deadline = time.time() + timeout
    try:
        while (time.time() < deadline and all(p.poll() is None for p in processes)
               and not condition()):
            time.sleep(poll_seconds)
        for process in processes:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert condition(), f"not reached in {timeout} s: {command}"
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            process.wait(30)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    return "".join(process.stdout.read().decode() for process in processes)
