"""The project's commands as subprocesses in tests: their environment, and a SIGKILL at a
chosen moment (what a crash, a preempted node or a user's Ctrl-\\ leaves behind), and what
the training runs' tests read from a run folder."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
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


# Tiny but complete: every part of the recipe runs (augmentations, mixup, OUSM, soup).
# One DeBERTa layer: what these runs check (resume, run dir, workers) does not depend on
# the depth, and each layer adds ~8 s of graph tracing to a run (3-epoch CLI run: 66 s
# CPU with 3 layers, 49 s with 1). test_notebook trains the three-layer stack.
TINY = [
    "data.global_batch_size=8", "train.batch_group_size=8", "model.dense_dim=16", "model.transfo_dim=32",
    "model.distill_dense_dim=16", "model.distill_transfo_dim=32", "model.num_heads=4",
    "model.transfo_layers=1", "train.soup_last_n=2", "train.mix_proba=1.0",
]


def train_command(*args):
    """`python train.py *args` in this checkout."""
    return [sys.executable, str(REPO / "train.py"), *map(str, args)]


def h5_floats(path, prefix):
    """{dataset name without `prefix`: array} of the float datasets of an HDF5 file."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith(prefix) and obj.dtype.kind == "f":
                found[name[len(prefix):]] = obj[()]
        f.visititems(visit)
    return found


def history_epochs(run_dir):
    """The epochs (1-based) a run's history.csv records; [] before the first."""
    import pandas as pd

    path = run_dir / "history.csv"
    return pd.read_csv(path)["epoch"].tolist() if path.exists() else []


def weights_files(run_dir):
    """{relative path: {dataset: array}} of the checkpoints and the soup models of a run."""
    import io
    import zipfile

    found = {}
    for path in sorted((run_dir / "checkpoints").glob("*.weights.h5")):
        found[str(path.relative_to(run_dir))] = h5_floats(path, "")
    for path in sorted((run_dir / "models").glob("*.keras")):
        with zipfile.ZipFile(path) as archive:
            found[str(path.relative_to(run_dir))] = h5_floats(
                io.BytesIO(archive.read("model.weights.h5")), "")
    return found


def free_ports(count):
    """`count` TCP ports free on 127.0.0.1 now (for multi-worker runs)."""
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports
