"""XLA on N replicas: Keras' own `jit_compile` path fails, the mean-teacher step's works; prints JSON.

    python benchmarks/xla_replicas.py [--devices cpu:2] [--steps 3]

Keras 3 (TensorFlow backend) XLA-compiles the function that *contains* `strategy.run`, so
one XLA cluster, placed on the first device, reads every replica's variables and fails
with "Trying to access resource ... located in device ...:1 from device ...:0"
(keras-team/keras#19005; TF's XLA known issue "tf.Variable on a different device").
`keras_sequential` shows it with a two-layer `keras.Sequential` and Keras' own AdamW
(it fits without `jit_compile`, and with it on one device).

`mean_teacher` is the fix used by `MeanTeacherDistiller` (tfislr.training.mean_teacher):
on N replicas each replica XLA-compiles only its forward and backward
(`replica_gradients`, replica-local) on its own device; the all-reduce, clipping,
optimizers and teacher EMA run around it as ordinary TF ops. It trains a small real
classifier for `--steps` steps and reports the seconds of the first (compiling) step and
the median of the others. tests/training/test_strategy.py checks that this path gives the same
weights on 1 and 2 replicas.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def _error(error):
    lines = str(error).strip().splitlines() or [""]
    message = next((line for line in lines if "Trying to access" in line), lines[-1])
    return {"ok": False, "error": type(error).__name__, "message": message.strip()[:300]}


def fit_keras_sequential(strategy, jit_compile):
    import keras
    import numpy as np

    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)]
        )
        model.compile(optimizer=keras.optimizers.AdamW(), loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.random((16, 3), dtype="float32")
    y = rng.random((16, 2), dtype="float32")
    try:
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    except Exception as error:  # the reproduction reports whatever TF raises
        return _error(error)
    return {"ok": True, "loss": float(history.history["loss"][-1])}


def fit_mean_teacher(strategy, steps, max_len=16):
    import numpy as np
    import tensorflow as tf

    from tfislr.config import load_config
    from tfislr.training.mean_teacher import MODEL_NAMES, build_distiller

    replicas = strategy.num_replicas_in_sync
    global_batch = 8 * replicas
    config = load_config("len25", [
        f"data.global_batch_size={global_batch}", f"data.max_len={max_len}",
        "train.batch_group_size=8", "runtime.jit_compile=true",
        "model.dense_dim=32", "model.transfo_dim=64", "model.distill_dense_dim=32",
        "model.distill_transfo_dim=32", "model.num_heads=4",
    ])
    with strategy.scope():
        distiller = build_distiller(config, 10, steps)
    rng = np.random.default_rng(0)
    views = {
        name: {
            "landmarks": rng.normal(size=(global_batch, max_len, 100, 3)).astype("float32"),
            "padding_mask": np.ones((global_batch, max_len), "float32"),
        }
        for name in MODEL_NAMES
    }
    labels = rng.integers(0, 10, size=global_batch).astype("int32")
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((views, labels))
    )
    batch = next(iter(data))
    train = distiller.make_train_function()
    times = []
    try:
        for _ in range(steps):
            start = time.perf_counter()
            logs = train(iter([batch]))
            float(logs["loss"])  # waits for the step
            times.append(time.perf_counter() - start)
    except Exception as error:
        return _error(error)
    return {
        "ok": True,
        "replica_jit_compile": distiller.replica_jit_compile,
        "loss": float(logs["loss"]),
        "first_step_seconds": round(times[0], 2),
        "median_later_step_seconds": round(float(np.median(times[1:])), 3) if steps > 1 else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="cpu:2")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)

    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(args.devices)
    import tensorflow as tf

    report = {
        "tensorflow": tf.__version__,
        "replicas": strategy.num_replicas_in_sync,
        "keras_sequential": {
            "without_xla": fit_keras_sequential(strategy, False),
            "with_xla": fit_keras_sequential(strategy, True),
            "with_xla_one_device": fit_keras_sequential(tf.distribute.get_strategy(), True),
        },
        "mean_teacher_with_xla": fit_mean_teacher(strategy, args.steps),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
