"""Minimal reproduction: Keras `jit_compile=True` under a MirroredStrategy of 2 devices; prints JSON.

    python benchmarks/xla_replicas.py [--devices cpu:2]

Why `MeanTeacherDistiller.compile` refuses `jit_compile` on more than one replica: Keras 3
(TensorFlow backend) XLA-compiles the function that *contains* `strategy.run`, so one XLA
cluster, placed on the first device, reads every replica's variables and fails with
"Trying to access resource ... located in device ...:1 from device ...:0"
(keras-team/keras#19005; TF's XLA known issue "tf.Variable on a different device"). This
script shows it with a two-layer `keras.Sequential` and Keras' own AdamW, so it is not
the mean-teacher step: the same model fits without `jit_compile` and with it on one
device. XLA per replica needs the replica function compiled on its own
(`strategy.run(tf.function(step, jit_compile=True))`), with the all-reduce outside it.
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def fit_once(strategy, jit_compile):
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
        first_line = str(error).strip().splitlines()
        message = next((line for line in first_line if "Trying to access" in line), first_line[-1])
        return {"ok": False, "error": type(error).__name__, "message": message.strip()[:300]}
    return {"ok": True, "loss": float(history.history["loss"][-1])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="cpu:2")
    args = parser.parse_args(argv)

    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(args.devices)
    import tensorflow as tf

    report = {
        "tensorflow": tf.__version__,
        "replicas": strategy.num_replicas_in_sync,
        "without_xla": fit_once(strategy, False),
        "with_xla": fit_once(strategy, True),
        "with_xla_one_device": fit_once(tf.distribute.get_strategy(), True),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
