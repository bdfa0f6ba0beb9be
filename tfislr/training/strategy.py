"""One switch for where training runs: `get_strategy(name)`.

| name            | strategy                                                         |
| --------------- | ---------------------------------------------------------------- |
| "default"       | TF's default strategy: one device (the GPU if there is one)      |
| "mirrored"      | `MirroredStrategy` over all local GPUs (the original: 8 × V100)  |
| "multi_worker"  | `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG` |
| "tpu"           | `TPUStrategy`; the TPU address from `TPU_NAME` (or local TPU)    |
| "cpu:N"         | `MirroredStrategy` over N logical CPU devices (tests, debugging) |

The train step is the same under all of them (tfislr.training.mean_teacher).
"""

import json
import os

import tensorflow as tf

from tfislr.errors import ConfigError

STRATEGY_NAMES = ("default", "mirrored", "multi_worker", "tpu", "cpu:N")


def _logical_cpus(count):
    """Splits the first physical CPU into `count` logical devices (before TF initialises them)."""
    cpus = tf.config.list_physical_devices("CPU")
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpus[0], wanted)
    except RuntimeError as error:
        # TF refuses to change devices once the runtime is initialised (any op or
        # variable creates it). If the split we want already exists, go on.
        existing = tf.config.list_logical_devices("CPU")
        if len(existing) == count:
            return [d.name for d in existing]
        raise RuntimeError(
            f"get_strategy('cpu:{count}') must be called before TensorFlow initialises its "
            f"devices (before any tensor, variable or model is created in this process); "
            f"this process already runs with {len(existing)} logical CPU(s). Call it first "
            f"thing, or run the job in a fresh process. TF said: {error}"
        ) from error
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tpu_strategy():
    tpu_name = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise RuntimeError(
            f"get_strategy('tpu'): no TPU reachable (TPU_NAME={tpu_name!r}): {error}"
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy():
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            cluster = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from error
        if "cluster" not in cluster or "task" not in cluster:
            raise ConfigError("TF_CONFIG must have 'cluster' and 'task' entries")
    # Without TF_CONFIG this is a one-worker cluster, which is valid (and useful to test).
    return tf.distribute.MultiWorkerMirroredStrategy()


def get_strategy(name="default"):
    """Returns the `tf.distribute.Strategy` called `name` (see the module docstring).

    `cpu:N` configures N logical CPU devices, which TF allows only before it has
    initialised its devices: call `get_strategy` at the start of the process.
    Raises `tfislr.errors.ConfigError` (a ValueError) for an unknown name or a bad TF_CONFIG.
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if not isinstance(name, str):
        raise ValueError(f"strategy must be a name or a tf.distribute.Strategy, got {name!r}")
    name = name.strip().lower()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name in ("multi_worker", "multi-worker", "multiworker"):
        return _multi_worker_strategy()
    if name == "tpu":
        return _tpu_strategy()
    if name.startswith("cpu:"):
        try:
            count = int(name.split(":", 1)[1])
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(f"strategy '{name}': expected cpu:N with N >= 1, e.g. cpu:2")
        devices = _logical_cpus(count)
        return tf.distribute.MirroredStrategy(devices[:count])
    raise ConfigError(f"unknown strategy '{name}'; expected one of {', '.join(STRATEGY_NAMES)}")


def task_info():
    """(task_type, task_index, is_chief) of this process in a TF_CONFIG cluster.

    Without TF_CONFIG the process is its own chief. In a cluster with no "chief"
    task, worker 0 plays the chief (the convention of MultiWorkerMirroredStrategy).
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None, 0, True
    config = json.loads(raw)
    task = config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    has_chief = "chief" in config.get("cluster", {})
    is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)
    return task_type, index, is_chief
