"""A two-worker run (MultiWorkerMirroredStrategy, two processes on localhost CPU) killed
mid-way resumes with the same command and ends bitwise where an uninterrupted two-worker
run ends (as tests/training/test_run.py checks for one process)."""

import json
import subprocess

import numpy as np
import pytest

from subprocess_runs import REPO, backed_up_epoch, env, run_until_killed
from subprocess_runs import TINY, free_ports, history_epochs, train_command, weights_files

EPOCHS = 2


def _worker_envs(workers):
    """One environment per worker of a localhost cluster at `workers` (host:port)."""
    envs = []
    for index in range(len(workers)):
        worker_env = env()
        worker_env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        envs.append(worker_env)
    return envs


def _start(command, envs, log):
    return [subprocess.Popen(command, cwd=REPO, env=e, stdout=log, stderr=subprocess.STDOUT)
            for e in envs]


def _wait(processes, logs):
    try:
        for process in processes:
            process.wait(timeout=1200)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process in processes:
        assert process.returncode == 0, "".join(log.read_text()[-4000:] for log in logs)


@pytest.mark.extra_large
@pytest.mark.timeout(2700)  # two 2-worker runs side by side, then the resumed one
def test_a_killed_two_worker_run_resumes_to_the_uninterrupted_run(synthetic_data_dir, tmp_path):
    from tfislr.config import load_config
    from tfislr.data.prepare import ensure_store

    prepared = tmp_path / "prepared"
    ensure_store(synthetic_data_dir, load_config("demo").data.max_len, prepared, num_workers=1,
                 progress=False)  # first: the workers below only read it
    overrides = TINY + ["train.batch_group_size=4", f"data.prepared_dir={prepared}"]
    options = ["--config", "demo", "--data-dir", synthetic_data_dir, "--epochs", EPOCHS,
               "--strategy", "multi_worker", "--verbose", 2,
               *sum((["--set", s] for s in overrides), [])]
    run_dir, straight_dir = tmp_path / "run", tmp_path / "straight"
    command = train_command(*options, "--run-dir", run_dir)
    envs = _worker_envs([f"127.0.0.1:{port}" for port in free_ports(2)])

    # The uninterrupted reference trains alongside (its own cluster, its own ports).
    straight_log = tmp_path / "straight.log"  # a file: a full pipe would stall the run
    with straight_log.open("w") as log:
        straight = _start(train_command(*options, "--run-dir", straight_dir),
                          _worker_envs([f"127.0.0.1:{port}" for port in free_ports(2)]), log)
    try:
        # Both workers killed once the chief has backed up epoch 0 (inside epoch 1).
        run_until_killed(command, lambda: backed_up_epoch(run_dir) is not None, envs=envs)
        assert not (run_dir / "metrics.json").exists()
        assert history_epochs(run_dir) == [1]  # 1-based, like the checkpoints
        # The same command again on both workers (same cluster, same ports).
        resumed_log = tmp_path / "resumed.log"
        with resumed_log.open("w") as log:
            _wait(_start(command, envs, log), [resumed_log])
    finally:
        _wait(straight, [straight_log])
    assert "resuming" in resumed_log.read_text()
    assert (run_dir / "finished.json").exists() and not (run_dir / "worker_1").exists()
    # Each epoch once: an epoch logged but killed before its backup is redone, and its row
    # replaced (the resume of one worker or of the cluster alike).
    assert history_epochs(run_dir) == history_epochs(straight_dir) == list(range(1, EPOCHS + 1))
    compared, expected = weights_files(run_dir), weights_files(straight_dir)
    assert sorted(compared) == sorted(expected) and len(compared) == 2 + 3
    for name, weights in compared.items():
        assert sorted(weights) == sorted(expected[name]) and weights, name
        for key, value in expected[name].items():
            np.testing.assert_array_equal(weights[key], value, err_msg=f"{name}: {key}")
    resumed_metrics = json.loads((run_dir / "metrics.json").read_text())["models"]
    assert resumed_metrics == json.loads((straight_dir / "metrics.json").read_text())["models"]
