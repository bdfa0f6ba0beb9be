"""Why tfislr sets `--xla_cpu_use_fusion_emitters=false`: Keras dropout under XLA:CPU; prints JSON.

    python benchmarks/xla_dropout.py [--shape 8,16,80,80] [--repeats 5]

Times the forward and backward of one `keras.layers.Dropout(0.05)` (the model's attention
dropout shape at batch 8, T = 80, 16 heads) without XLA, under XLA with TF's default XLA_FLAGS,
and under XLA with the flag (tfislr.model.xla). XLA reads its flags once per process,
so each XLA variant runs in its own subprocess (this file is also the worker).
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(shape, repeats, jit):
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    x = tf.Variable(tf.random.normal(shape))
    layer = keras.layers.Dropout(0.05, seed=1)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, x)

    step().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="8,16,80,80")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=("graph", "xla"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = [int(n) for n in args.shape.split(",")]
    if args.worker:
        print(worker(shape, args.repeats, args.worker == "xla"))
        return

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tfislr.model.xla import CPU_FUSION_EMITTERS_FLAG

    def run(mode, xla_flags):
        env = dict(os.environ, XLA_FLAGS=xla_flags)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", mode, "--shape", args.shape,
             "--repeats", str(args.repeats)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
        return float(out.strip().splitlines()[-1])

    print(json.dumps({
        "shape": shape,
        "median_ms": {
            "no_xla": run("graph", ""),
            "xla_default_flags": run("xla", ""),
            "xla_with_tfislr_flag": run("xla", CPU_FUSION_EMITTERS_FLAG),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
