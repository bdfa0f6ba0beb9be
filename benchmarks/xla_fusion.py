"""Forward + backward of Mish, LayerNorm and Dropout with and without XLA; prints JSON.

    python benchmarks/xla_fusion.py [--shape 32 80 1024] [--repeats 20]

Each op runs in a `tf.function` (the gradient of `sum(op(x) * x)` with respect to `x`),
once as TensorFlow's kernels and once jit-compiled, interleaved, medians in ms. This is
the measurement behind `tfislr.model.xla_fusion`: the element-wise chains XLA fuses into
one loop (Mish, LayerNorm) are compiled as islands of the ordinary step; Dropout is not
(XLA:CPU's random-bits loop is slower than TensorFlow's Philox kernel). `dense` (one
Dense layer of the width, kernel and bias gradients included) is why the whole step is
slower under XLA on this CPU (`train.jit_compile`): XLA:CPU's matrix products are slower
than the oneDNN kernels TensorFlow's graph uses, and they are most of the step.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[32, 80, 1024],
                        help="activation shape (default: len80's [batch 32, T 80, width 1024])")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    from tfislr.model.xla import use_cpu_loop_emitters

    use_cpu_loop_emitters()  # as `train.jit_compile` does, before the first compilation
    import keras
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(size=args.shape).astype("float32"))
    norm = keras.layers.LayerNormalization()
    norm.build(x.shape)
    dropout = keras.layers.Dropout(0.05)
    dense = keras.layers.Dense(x.shape[-1])
    dense.build(x.shape)
    ops = {
        "mish": keras.activations.mish,
        "layer_norm": norm,
        "dropout": lambda v: dropout(v, training=True),
        "dense": dense,  # gradients for its kernel and bias too
    }
    results = {}
    for name, op in ops.items():
        steps = {}
        for jit in (False, True):
            def step(v, op=op):
                with tf.GradientTape() as tape:
                    tape.watch(v)
                    loss = tf.reduce_sum(op(v) * v)
                return tape.gradient(loss, [v, *getattr(op, "trainable_weights", [])])

            steps[jit] = tf.function(step, jit_compile=jit)
            steps[jit](x)[0].numpy()  # trace and compile
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for jit in (False, True):
                start = time.perf_counter()
                steps[jit](x)[0].numpy()
                times[jit].append(1000 * (time.perf_counter() - start))
        results[name] = {"tensorflow_ms": round(float(np.median(times[False])), 2),
                         "xla_ms": round(float(np.median(times[True])), 2)}
    print(json.dumps({"shape": args.shape, "forward_backward": results}, indent=2))


if __name__ == "__main__":
    main()
