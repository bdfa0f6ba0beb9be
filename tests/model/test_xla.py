"""XLA and the GPU path: the jit-compiled mean-teacher step is traced and compiled once per
distilled mode, on one replica (Keras compiles the whole step) and on two logical CPU
replicas (each replica compiles its forward/backward on its own device); the step's graph
under mixed_bfloat16 has a GPU kernel for every op and no float64.

XLA's compilations are counted from TF's own log (`device_compiler` VLOG), which TF reads
only at start-up, so the run happens in a fresh subprocess (this file is also the worker:
`python tests/model/test_xla.py compile-count`).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS = 4  # the distilled model switches to inference mode at 0-based epoch 2
STEPS_PER_EPOCH = 3


def _compile_count_worker(strategy_name="default"):
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(strategy_name)  # before TF initialises its devices
    replicas = strategy.num_replicas_in_sync

    import keras
    import numpy as np
    import tensorflow as tf

    from tiny_models import NUM_CLASSES, make_distiller, make_views
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
            "runtime.jit_compile=true", f"train.epochs={EPOCHS}",
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


@pytest.mark.large
def test_jit_step_compiles_once_per_distilled_mode():
    _check_compiles_once("default", 1)


@pytest.mark.extra_large
def test_jit_step_on_two_replicas_compiles_once_per_mode_and_device():
    _check_compiles_once("cpu:2", 2)


def test_cpu_emitter_flag_is_added_once_and_never_overrides_the_user(monkeypatch):
    from tfislr.model import xla

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert xla.use_cpu_loop_emitters()
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {xla.CPU_FUSION_EMITTERS_FLAG}"
    assert not xla.use_cpu_loop_emitters()  # already there: unchanged
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    assert not xla.use_cpu_loop_emitters()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_fusion_emitters=true"


def _graph_nodes(concrete_function):
    graph_def = concrete_function.graph.as_graph_def()
    return list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]


def _type_attrs(node):
    from tensorflow.core.framework import types_pb2

    types = {}
    for key, value in node.attr.items():
        if value.HasField("type"):
            types[key] = [value.type]
        elif value.HasField("list") and value.list.type:
            types[key] = list(value.list.type)
    return types, types_pb2


def _without_gpu_kernel(nodes):
    """{op: dtypes} of the nodes for which this TF build registers no GPU kernel accepting
    their dtypes: on a GPU, TF would run them on the host (a copy each way per step)."""
    from tensorflow.python.framework import kernels

    registered, gaps = {}, {}
    for node in nodes:
        if node.op == "Placeholder":  # the function's inputs, not executed
            continue
        if node.op not in registered:
            registered[node.op] = [
                kernel for kernel in kernels.get_registered_kernels_for_op(node.op).kernel
                if kernel.device_type in ("GPU", "DEFAULT")
            ]
        types, types_pb2 = _type_attrs(node)
        if not any(
            all(
                all(t in constraint.allowed_values.list.type for t in types.get(constraint.name, []))
                for constraint in kernel.constraint
            )
            for kernel in registered[node.op]
        ):
            gaps.setdefault(node.op, set()).update(
                types_pb2.DataType.Name(t) for ts in types.values() for t in ts
            )
    return gaps


@pytest.mark.large  # traces the train and evaluation steps of the real classifier
def test_bfloat16_step_has_gpu_kernels_and_no_float64():
    """The single-GPU fast path (mixed_bfloat16): every op of the train and evaluation steps
    has a GPU kernel for its dtypes (no host round trip outside XLA either), none is float64
    and none calls Python (`tf.py_function`)."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import kernels

    if not any(k.device_type == "GPU" for k in kernels.get_registered_kernels_for_op("MatMul").kernel):
        pytest.skip("this TensorFlow build has no GPU kernels to check against")
    from tfislr.config import load_config
    from tfislr.training.mean_teacher import MODEL_NAMES, build_distiller

    batch, max_len = 8, 12
    config = load_config("len25", [
        f"data.global_batch_size={batch}", f"data.max_len={max_len}", "train.batch_group_size=8",
        "model.dense_dim=32", "model.transfo_dim=64", "model.distill_dense_dim=32",
        "model.distill_transfo_dim=32", "model.num_heads=4", "runtime.precision=mixed_bfloat16",
    ])
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        distiller = build_distiller(config, 5, 4)
        view = {"landmarks": tf.TensorSpec([batch, max_len, 100, 3]),
                "padding_mask": tf.TensorSpec([batch, max_len])}
        labels = tf.TensorSpec([batch], tf.int32)
        nodes = _graph_nodes(tf.function(distiller.train_step).get_concrete_function(
            ({name: view for name in MODEL_NAMES}, labels)
        )) + _graph_nodes(tf.function(distiller.test_step).get_concrete_function((view, labels)))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert any(node.op == "MatMul" and "BFLOAT16" in str(node.attr["T"]) for node in nodes)  # bf16 really
    assert not _without_gpu_kernel(nodes)
    float64 = {n.op for n in nodes if any("DT_DOUBLE" == _type_attrs(n)[1].DataType.Name(t)
                                          for ts in _type_attrs(n)[0].values() for t in ts)}
    assert not float64
    assert not {n.op for n in nodes} & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "tests"))
    if sys.argv[1] == "compile-count":
        _compile_count_worker(*sys.argv[2:])
    else:
        raise SystemExit(f"unknown worker mode {sys.argv[1]}")
