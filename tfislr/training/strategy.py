"""One switch for where training runs: `get_strategy(name)`, the name a config's
`runtime.strategy` (or `--strategy`) gives; `tfislr.config.parse_strategy` checks it.

| name            | strategy                                                         |
| --------------- | ---------------------------------------------------------------- |
| "default"       | TF's default strategy: one device (the GPU if there is one)      |
| "mirrored"      | `MirroredStrategy` over all local GPUs (the original: 8 × V100)  |
| "multi_worker"  | `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG` |
| "tpu"           | `TPUStrategy`; the TPU address from `TPU_NAME` (or local TPU)    |
| "cpu:N"         | `MirroredStrategy` over N logical CPU devices (tests, debugging) |
| "gpu:N[:MB]"    | `MirroredStrategy` over N logical GPUs on the first GPU, MB each  |

The train step is the same under all of them (tfislr.training.mean_teacher).

`gpu:N` is the closest one GPU comes to the original's 8 GPUs: with `gpu:8` each logical
device holds 32 clips of the global batch of 256, so BatchNorm normalises over 32 clips as
on each of the original's GPUs (it did not synchronise BatchNorm). The N devices share the
GPU's compute, so a step takes about as long as on one device, plus the all-reduce. TF
needs a memory limit per logical GPU: MB, or by default 90 % of the GPU's memory (read
with `nvidia-smi`) split N ways.
"""

import json
import os
import subprocess

import tensorflow as tf

from tfislr.config import parse_strategy
from tfislr.errors import ConfigError


def _logical_devices(kind, count, memory_mb=None):
    """Splits the first physical `kind` device into `count` logical ones (before TF
    initialises them); returns their names."""
    physical = tf.config.list_physical_devices(kind)
    if not physical:
        raise ConfigError(f"strategy '{kind.lower()}:{count}': no {kind} visible to TensorFlow")
    if kind == "GPU" and memory_mb is None:
        total = _gpu_memory_mb()
        if total is None:
            raise ConfigError(
                f"strategy 'gpu:{count}': cannot read the GPU's memory with nvidia-smi; give "
                f"the MB per logical GPU, e.g. gpu:{count}:{max(1024, 30000 // count)}"
            )
        memory_mb = int(0.9 * total) // count
    wanted = [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb) for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(physical[0], wanted)
    except RuntimeError as error:
        # TF refuses to change devices once the runtime is initialised (any op or
        # variable creates it). If the split we want already exists, go on.
        existing = tf.config.list_logical_devices(kind)
        if len(existing) == count:
            return [d.name for d in existing]
        raise RuntimeError(
            f"get_strategy('{kind.lower()}:{count}') must be called before TensorFlow "
            f"initialises its devices (before any tensor, variable or model is created in "
            f"this process); this process already runs with {len(existing)} logical "
            f"{kind}(s). Call it first thing, or run the job in a fresh process. TF said: {error}"
        ) from error
    return [d.name for d in tf.config.list_logical_devices(kind)][:count]


def _gpu_memory_mb():
    """Total memory of GPU 0 in MB from `nvidia-smi`, or None when it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _tpu_strategy():
    tpu_name = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        # A user error like 'gpu:8' without a GPU: the machine has no TPU for this name.
        raise ConfigError(
            f"strategy 'tpu': no TPU reachable (TPU_NAME={tpu_name!r}): {error}; set "
            "TPU_NAME to the TPU's name or address, or choose another --strategy"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy():
    cluster = _tf_config()
    if cluster and ("cluster" not in cluster or "task" not in cluster):
        raise ConfigError("TF_CONFIG must have 'cluster' and 'task' entries")
    # Without TF_CONFIG this is a one-worker cluster, which is valid (and useful to test).
    return tf.distribute.MultiWorkerMirroredStrategy()


def get_strategy(name="default"):
    """Returns the `tf.distribute.Strategy` called `name` (see the module docstring).

    `cpu:N` configures N logical CPU devices, which TF allows only before it has
    initialised its devices: call `get_strategy` at the start of the process.
    Raises `tfislr.errors.ConfigError` (a ValueError) for an unknown name, a bad TF_CONFIG,
    or devices the machine lacks ("tpu" without a reachable TPU, "gpu:N" without a GPU).
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if not isinstance(name, str):
        raise ValueError(f"strategy must be a name or a tf.distribute.Strategy, got {name!r}")
    kind, count, memory_mb = parse_strategy(name)  # the name's checks, without TensorFlow
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return _multi_worker_strategy()
    if kind == "tpu":
        return _tpu_strategy()
    return tf.distribute.MirroredStrategy(_logical_devices(kind, count, memory_mb))


def _tf_config():
    """TF_CONFIG as a dict ({} without it); ConfigError when it is not a JSON object."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object, got {raw!r}")
    return config


def cluster_tasks():
    """How many tasks (processes) the TF_CONFIG cluster lists; 1 without TF_CONFIG."""
    cluster = _tf_config().get("cluster") or {}
    return max(1, sum(len(addresses) for addresses in cluster.values()))


def task_info():
    """(task_type, task_index, is_chief) of this process in a TF_CONFIG cluster.

    Without TF_CONFIG the process is its own chief. In a cluster with no "chief"
    task, worker 0 plays the chief (the convention of MultiWorkerMirroredStrategy).
    """
    config = _tf_config()
    if not config:
        return None, 0, True
    task = config.get("task", {})
    task_type, index = task.get("type"), int(task.get("index", 0))
    return task_type, index, _is_chief(task_type, index, config.get("cluster", {}))


def training_tasks():
    """`task_info` of every process that trains (chief and workers) in the TF_CONFIG
    cluster; `[(None, 0, True)]` without TF_CONFIG."""
    config = _tf_config()
    if not config:
        return [(None, 0, True)]
    cluster = config.get("cluster", {})
    return [(task_type, index, _is_chief(task_type, index, cluster))
            for task_type in ("chief", "worker") for index in range(len(cluster.get(task_type, ())))]


def _is_chief(task_type, index, cluster):
    return task_type == "chief" or ("chief" not in cluster and task_type == "worker" and index == 0)
