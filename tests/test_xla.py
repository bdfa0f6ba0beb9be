"""XLA: the jit-compiled mean-teacher step is traced and compiled once per distilled mode,
on one replica (Keras compiles the whole step) and on two logical CPU replicas (each
replica compiles its forward/backward on its own device).

XLA's compilations are counted from TF's own log (`device_compiler` VLOG), which TF reads
only at start-up, so the run happens in a fresh subprocess (this file is also the worker:
`python tests/test_xla.py compile-count`).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 4  # the distilled model switches to inference mode at 0-based epoch 2
STEPS_PER_EPOCH = 3


def _compile_count_worker(strategy_name="default"):
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(strategy_name)  # before TF initialises its devices
    replicas = strategy.num_replicas_in_sync

    import keras
    import numpy as np
    import tensorflow as tf

    from test_mean_teacher import NUM_CLASSES, make_distiller, make_views
    from tfislr.training import mean_teacher

    traces = []
    train_step = mean_teacher.MeanTeacherDistiller.train_step

    def counted(self, data, distilled_inference=False, **kwargs):
        traces.append(bool(distilled_inference))  # runs once per trace, not per step
        return train_step(self, data, distilled_inference=distilled_inference, **kwargs)

    mean_teacher.MeanTeacherDistiller.train_step = counted
    global_batch = 8 * replicas  # one OUSM/mixup group of 8 clips per replica
    with strategy.scope():
        distiller = make_distiller(
            "train.jit_compile=true", f"train.epochs={EPOCHS}",
            f"data.global_batch_size={global_batch}", steps_per_epoch=STEPS_PER_EPOCH,
        )

    class Epoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            distiller.epoch.assign(epoch)

    rng = np.random.default_rng(0)
    n = global_batch * STEPS_PER_EPOCH
    views = make_views(rng, n)
    labels = rng.integers(0, NUM_CLASSES, size=n).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((views, labels)).batch(global_batch, drop_remainder=True)
    history = distiller.fit(data, epochs=EPOCHS, callbacks=[Epoch()], verbose=0, shuffle=False)
    print(json.dumps({
        "replicas": replicas,
        "replica_jit_compile": distiller.replica_jit_compile,
        "traces": traces,
        "steps": int(distiller.step_counter.numpy()),
        "finite": bool(np.all(np.isfinite(history.history["loss"]))),
    }))


def _run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    # INFO logs of the XLA compilation cache: one "Instantly compiling" line per compilation
    # and one "kind=constant" line per argument XLA had to treat as a compile-time constant.
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    env["TF_CPP_VMODULE"] = "device_compiler=3"
    result = subprocess.run(
        [sys.executable, __file__, *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _check_compiles_once(strategy_name, replicas):
    summary, log = _run("compile-count", strategy_name)
    assert summary["replicas"] == replicas
    assert summary["replica_jit_compile"] == (replicas > 1)
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH and summary["finite"]
    # One trace per distilled mode (training, then inference from half-way) and replica
    # (a MirroredStrategy traces the step once per device), whatever the steps and epochs.
    assert summary["traces"] == [False] * replicas + [True] * replicas, summary["traces"]
    # One XLA program per mode: the whole step on one replica, on N replicas one per
    # mode and device.
    compilations = re.findall(r"Instantly compiling for signature: (\S+)", log)
    assert len(compilations) == 2 * replicas, compilations
    # Nothing per step (step counter, epoch, batch, weights) is baked into the program.
    constants = [line for line in log.splitlines() if re.search(r"\] \d+: kind=constant", line)]
    assert not constants, constants[:5]


@pytest.mark.slow
@pytest.mark.ci
def test_jit_step_compiles_once_per_distilled_mode():
    _check_compiles_once("default", 1)


@pytest.mark.slow
def test_jit_step_on_two_replicas_compiles_once_per_mode_and_device():
    _check_compiles_once("cpu:2", 2)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "tests"))
    if sys.argv[1] == "compile-count":
        _compile_count_worker(*sys.argv[2:])
    else:
        raise SystemExit(f"unknown worker mode {sys.argv[1]}")
