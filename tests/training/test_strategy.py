"""Distribution: get_strategy, and 1 replica vs 2 logical-CPU replicas giving the same update.

Logical CPU devices must be configured before TF initialises, so the replica runs happen
in fresh subprocesses (this file is also the worker: `python tests/training/test_strategy.py ...`).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
GLOBAL_BATCH = 16
STEPS = 3
NUM_CLASSES = 5
MAX_LEN = 10


def _env(xla_log=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if xla_log:  # one "Instantly compiling" INFO line per XLA compilation (see test_xla.py)
        env.update(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=3")
    return env


def _start_worker(*args):
    """Starts `python tests/training/test_strategy.py *args`; its output goes to temporary files (a
    full pipe would stall a worker while another one is waited for)."""
    xla = args[-1].endswith("_xla")
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, __file__, *args], cwd=REPO, env=_env(xla),
                               stdout=stdout, stderr=stderr, text=True)
    process.output_files = stdout, stderr
    return process


def _finish_worker(process, timeout=600):
    """The worker's (stdout, stderr) once it ended; fails on a non-zero exit."""
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    outputs = []
    for file in process.output_files:
        with file:
            file.seek(0)
            outputs.append(file.read())
    stdout, stderr = outputs
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout, stderr


def _run_worker(*args, timeout=600):
    return _finish_worker(_start_worker(*args), timeout)


# --------------------------------------------------------------------------- worker side
def _set_batch_norm(layer, equal, xla):
    """Makes BN replica-count-independent in the equal modes: synchronized, or under XLA
    frozen (`trainable=False` runs Keras BN in inference mode)."""
    if equal and xla:
        layer.trainable = False
    else:
        layer.synchronized = equal


def _replica_worker(strategy_name, out_path, mode="equal"):
    """A few mean-teacher steps under `strategy_name`; saves every float variable to npz.

    mode "equal": synchronized BN, distilled-mode switch off (comparable across replica
    counts), OUSM and mixup on in groups of 8 clips; "switched": the production setting
    (per-replica BN statistics) with the distilled model already in its second-half
    inference mode; "tiny" / "tiny_equal": "switched" / "equal" with the stand-in
    classifier of test_mean_teacher (fast); "ghost" / "tiny_ghost": "equal" / "tiny_equal"
    with per-replica (not synchronized) ghost BatchNorm in groups of 4 clips, the groups of
    OUSM and mixup too, saving only the trainable variables. A "_xla" suffix trains with
    `jit_compile` (on 2 replicas: XLA per replica) and, in the equal modes, frozen BatchNorm instead
    of synchronized BN, whose cross-replica sum inside the forward pass a per-replica XLA
    program cannot hold (the comparison then covers everything but BN's batch moments).
    """
    xla = mode.endswith("_xla")
    mode = mode.removesuffix("_xla")
    equal = mode in ("equal", "tiny_equal", "ghost", "tiny_ghost")
    ghost = mode in ("ghost", "tiny_ghost")
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(strategy_name)

    import keras
    import tensorflow as tf

    from tfislr.config import load_config
    from tfislr.model import build_classifier
    from tfislr.training.mean_teacher import MODEL_NAMES, build_distiller
    from tfislr.training.optimizers import PreReducedSGD

    replicas = strategy.num_replicas_in_sync
    config = load_config("len25", [
        f"data.global_batch_size={GLOBAL_BATCH}", f"data.max_len={MAX_LEN}",
        "model.dense_dim=32", "model.transfo_dim=64", "model.distill_dense_dim=32",
        "model.distill_transfo_dim=32", "model.num_heads=4",
        # Off: what differs by design between 1 and N replicas (dropout draws per replica).
        "model.drop_rate=0",
        # OUSM (k = 3) and mixup work within groups of 8 clips, wherever they sit: two
        # groups on one replica or one on each of two give the same step. Probability
        # 0.7 so that some groups are mixed and others not.
        f"train.batch_group_size={4 if ghost else 8}", "train.mix_proba=0.7",
        "train.mix_end_fraction=100",
        # Synchronized BN needs a merge_call, which TF forbids inside the tf.cond of the
        # distilled-mode switch; the switch is tested in "switched" mode.
        f"train.distilled_inference_mode_second_half={not equal}",
        # Small enough that clipping is active: the global norm must be the global one.
        "train.max_grad_norm=0.5", "train.epochs=1",
    ])

    def build(model_config, num_classes, max_len, distilled=False):
        model = build_classifier(model_config, num_classes, max_len, distilled=distilled)
        # Per-replica BatchNorm statistics are a designed difference (as in the original's
        # unsynced DDP); synchronized BN removes it for this comparison.
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization) and not ghost:
                _set_batch_norm(layer, equal, xla)
        return model

    if mode.startswith("tiny"):
        from tiny_models import build_tiny

        def build(model_config, num_classes, max_len, distilled=False):
            model = build_tiny(model_config, num_classes, max_len, distilled=distilled)
            if ghost:  # build_distiller sets its group
                from tfislr.model.ghost_batch_norm import GhostBatchNormalization

                model.bn = GhostBatchNormalization(name="bn")
            else:
                _set_batch_norm(model.bn, equal, xla)
            return model

    keras.utils.set_random_seed(0)
    with strategy.scope():
        distiller = build_distiller(config, NUM_CLASSES, STEPS, build_model=build)
        optimizers = []
        for model in (distiller.student, distiller.distilled):
            # Plain SGD: Adam is scale-invariant and would hide a loss-scaling error.
            optimizer = PreReducedSGD(learning_rate=0.5)
            optimizer.build(model.trainable_variables)
            optimizers.append(optimizer)
        distiller.compile(*optimizers, jit_compile=xla)

    rng = np.random.default_rng(1)
    n = GLOBAL_BATCH * STEPS
    lengths = rng.integers(3, MAX_LEN + 1, size=n)
    mask = (np.arange(MAX_LEN)[None] < lengths[:, None]).astype("float32")
    views = {
        name: {
            "landmarks": (rng.normal(size=(n, MAX_LEN, 100, 3)) * mask[..., None, None]).astype("float32"),
            "padding_mask": mask,
        }
        for name in MODEL_NAMES
    }
    labels = rng.integers(0, NUM_CLASSES, size=n).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((views, labels)).batch(GLOBAL_BATCH)
    initial = {
        f"{name}/{i}": np.array(v.numpy())
        for name, model in distiller.named_models().items()
        for i, v in enumerate(model.variables) if "float" in str(v.dtype)
    }
    if not equal:
        distiller.epoch.assign(distiller.config.distilled_switch_epoch)
    history = distiller.fit(dataset, epochs=1, verbose=0, shuffle=False)
    trainable = {
        id(v) for m in distiller.named_models().values() for v in m.trainable_variables
    }

    arrays, spread = {}, 0.0
    for name, model in distiller.named_models().items():
        for i, v in enumerate(model.variables):
            if "float" not in str(v.dtype) or (ghost and id(v) not in trainable):
                continue
            arrays[f"{name}/{i}"] = np.array(v.numpy())
            copies = getattr(v.value, "values", None)
            # Mirrored: every replica holds the same value (with per-replica BN, only the
            # trainable variables; the teacher's come from the EMA).
            if copies and ((equal and not ghost) or id(v) in trainable):
                spread = max(spread, max(float(np.abs(c.numpy() - copies[0].numpy()).max()) for c in copies))
    moved = max(float(np.abs(arrays[k] - initial[k]).max()) for k in arrays)
    np.savez(out_path, **arrays)
    print(json.dumps({
        "replicas": replicas, "steps": int(distiller.step_counter.numpy()),
        "loss": float(history.history["loss"][-1]), "replica_spread": spread, "moved": moved,
        "replica_jit_compile": distiller.replica_jit_compile,
    }))


# --------------------------------------------------------------------------- tests
def _last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def _one_and_two_replicas(tmp_path, mode, many="cpu:2"):
    # The two workers run side by side (each is mostly single-threaded tracing).
    outs = {name: tmp_path / f"{name.replace(':', '_')}.npz" for name in ("default", many)}
    processes = {name: _start_worker("replicas", name, str(out), mode) for name, out in outs.items()}
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = _finish_worker(process)
            summary = _last_json(stdout)
            summary["compilations"] = stderr.count("Instantly compiling for signature")
            results[name] = (summary, np.load(outs[name]))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    return results["default"], results[many]


@pytest.mark.large  # two training subprocesses
def test_one_and_two_replicas_give_the_same_step_fast(tmp_path):
    """Stand-in classifier: the same global batch, OUSM and mixup by groups, on 1 and 2."""
    one, two = _one_and_two_replicas(tmp_path, "tiny_equal")
    assert one[0]["replicas"] == 1 and two[0]["replicas"] == 2
    assert one[0]["moved"] > 1e-2
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=1e-5)
    worst = max(float(np.abs(one[1][k] - two[1][k]).max()) for k in one[1].files)
    # Per-replica OUSM or mixup groups (or a loss-scaling error) move weights by ~1e-2 here.
    assert worst < 2e-5, worst


@pytest.mark.extra_large  # CI runs the stand-in and the XLA variants (the step's math); this one
# adds the real classifier's layers
def test_one_and_two_replicas_give_the_same_weights(tmp_path):
    one, two = _one_and_two_replicas(tmp_path, "equal")
    assert one[0]["replicas"] == 1 and two[0]["replicas"] == 2
    assert one[0]["steps"] == two[0]["steps"] == STEPS
    assert two[0]["replica_spread"] < 1e-6  # teacher EMA, BN stats, weights: in sync
    assert one[0]["moved"] > 1e-2  # the steps really changed the weights
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=1e-4)
    worst = max(float(np.abs(one[1][k] - two[1][k]).max()) for k in one[1].files)
    assert set(one[1].files) == set(two[1].files)
    # Double loss scaling, or clipping per replica, moves weights by ~1e-1 here.
    assert worst < 2e-5, worst


@pytest.mark.parametrize("mode, many", [
    # 1 and 4 replicas traced in two subprocesses.
    pytest.param("tiny_ghost", "cpu:4", marks=pytest.mark.large),
    # The real classifier's six BatchNorms; slow: 2 replicas (4 take over 10 minutes here).
    pytest.param("ghost", "cpu:2", marks=pytest.mark.extra_large),
])
def test_ghost_batch_norm_on_one_device_equals_unsynchronized_replicas(tmp_path, mode, many):
    """BatchNorm per group of 4 clips: one device with 4 groups trains as 2 or 4 replicas
    with their own (not synchronized) statistics, the original's unsynced GPUs."""
    one, other = _one_and_two_replicas(tmp_path, mode, many=many)
    assert one[0]["replicas"] == 1 and other[0]["replicas"] == int(many.split(":")[1])
    assert one[0]["steps"] == other[0]["steps"] == STEPS and one[0]["moved"] > 1e-2
    assert other[0]["replica_spread"] < 1e-6
    # Whole-batch statistics on the one device (no groups) change the tiny loss by 0.4 %.
    assert one[0]["loss"] == pytest.approx(other[0]["loss"], rel=1e-4)
    worst = max(float(np.abs(one[1][k] - other[1][k]).max()) for k in one[1].files)
    assert worst < 2e-5, worst


@pytest.mark.large  # the step compiled by XLA in two subprocesses
def test_one_and_two_replicas_give_the_same_step_under_xla(tmp_path):
    """jit_compile: Keras' whole-step XLA on 1 replica, XLA per replica on 2, same step."""
    one, two = _one_and_two_replicas(tmp_path, "tiny_equal_xla")
    assert not one[0]["replica_jit_compile"] and two[0]["replica_jit_compile"]
    # Compiled once for the 3 steps: the whole step on 1, once per device on 2
    # (test_xla.py counts over several epochs and both distilled modes).
    assert one[0]["compilations"] == 1 and two[0]["compilations"] == 2
    assert one[0]["moved"] > 1e-2 and two[0]["replica_spread"] < 1e-6
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=1e-5)
    worst = max(float(np.abs(one[1][k] - two[1][k]).max()) for k in one[1].files)
    assert worst < 2e-5, worst


@pytest.mark.extra_large
def test_one_and_two_replicas_give_the_same_weights_under_xla(tmp_path):
    """The real classifier (relative-position attention, conv blocks) under XLA on 1 and 2."""
    one, two = _one_and_two_replicas(tmp_path, "equal_xla")
    assert one[0]["steps"] == two[0]["steps"] == STEPS and two[0]["replica_jit_compile"]
    assert two[0]["replica_spread"] < 1e-6 and one[0]["moved"] > 1e-2
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=1e-4)
    worst = max(float(np.abs(one[1][k] - two[1][k]).max()) for k in one[1].files)
    assert worst < 2e-5, worst


def test_get_strategy_names():
    from tfislr.training.strategy import get_strategy, task_info

    import tensorflow as tf

    assert get_strategy("default") is tf.distribute.get_strategy()
    assert get_strategy("mirrored").num_replicas_in_sync >= 1
    strategy = tf.distribute.get_strategy()
    assert get_strategy(strategy) is strategy
    for bad in ("gpu:2", "cpu:0", "cpu:x", 3, "gpu:0", "gpu:x", "gpu:2:0", "gpu:2:1:1", "cpu:2:100"):
        with pytest.raises(ValueError):
            get_strategy(bad)
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ValueError, match="no GPU visible"):
            get_strategy("gpu:8:3500")
    assert task_info() == (None, 0, True)


def test_tpu_without_a_tpu_is_a_user_error(monkeypatch, capsys, tmp_path):
    """Like gpu:8 without a GPU: exit 2 and one line, not a RuntimeError traceback."""
    import tensorflow as tf

    from tfislr.cli import train as train_cli

    def no_tpu(tpu=None):  # what the resolver says on a machine with no TPU
        raise ValueError("Please provide a TPU Name to connect to.")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", no_tpu)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert train_cli.main(["--config", "demo", "--data-dir", str(tmp_path),
                           "--output", str(tmp_path / "runs"), "--strategy", "tpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["tfislr-train: error: strategy 'tpu': no TPU reachable (TPU_NAME=''): "
                     "Please provide a TPU Name to connect to.; set TPU_NAME to the TPU's name "
                     "or address, or choose another --strategy"]


def test_cpu_strategy_after_tf_init_explains_itself():
    import tensorflow as tf

    from tfislr.training.strategy import get_strategy

    tf.constant(1.0) + 1.0  # devices are initialised now
    count = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(RuntimeError, match="before TensorFlow initialises"):
        get_strategy(f"cpu:{count + 3}")


def test_task_info_reads_tf_config(monkeypatch):
    from tfislr.training.strategy import task_info, training_tasks

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert task_info() == ("worker", 1, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert task_info() == ("worker", 0, True)
    # Every process that trains (each has a backup to resume from), whichever this one is.
    assert training_tasks() == [("worker", 0, True), ("worker", 1, False)]
    cluster = {"chief": ["127.0.0.1:3"], **cluster, "ps": ["127.0.0.1:4"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert task_info() == ("worker", 0, False)
    assert training_tasks() == [("chief", 0, True), ("worker", 0, False), ("worker", 1, False)]
    monkeypatch.delenv("TF_CONFIG")
    assert training_tasks() == [(None, 0, True)]


@pytest.mark.large  # a training subprocess
def test_two_cpu_replicas_run_the_step_fast(tmp_path):
    """Fast: cpu:2, stand-in classifier, per-replica BN, distilled in inference mode."""
    summary = _last_json(_run_worker("replicas", "cpu:2", str(tmp_path / "w.npz"), "tiny")[0])
    assert summary["replicas"] == 2 and summary["steps"] == STEPS
    assert summary["replica_spread"] < 1e-6 and summary["moved"] > 1e-3


@pytest.mark.extra_large
def test_two_cpu_replicas_fit_in_a_fresh_process(tmp_path):
    """The cpu:N path with production settings: per-replica BN, distilled in inference mode."""
    summary = _last_json(_run_worker("replicas", "cpu:2", str(tmp_path / "w.npz"), "switched")[0])
    assert summary["replicas"] == 2 and summary["steps"] == STEPS
    assert summary["replica_spread"] < 1e-6


if __name__ == "__main__":
    if sys.argv[1] == "replicas":
        _replica_worker(*sys.argv[2:])
    else:
        raise SystemExit(f"unknown worker mode {sys.argv[1]}")
