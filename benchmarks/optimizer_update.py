"""The len80 student's AdamW update and teacher EMA, as Keras' ops and as XLA islands; JSON.

    python benchmarks/optimizer_update.py [--config len80] [--repeats 20]

Each update runs in a `tf.function` on one device, once traced with the islands
(`tfislr.model.xla_fusion`, the default) and once with `TFISLR_XLA_FUSION=0` (Keras'
per-variable ops), interleaved; medians in ms. The gradients are fixed random tensors.
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
    parser.add_argument("--config", default="len80")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from tfislr.config import load_config
    from tfislr.model import modes
    from tfislr.training.mean_teacher import build_distiller

    distiller = build_distiller(load_config(args.config), 250, steps_per_epoch=1000)
    variables = distiller.student.trainable_variables
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=v.shape).astype("float32") * 1e-3) for v in variables]
    def in_train_step(update):  # where the train step runs it (see xla_fusion.islands)
        def run():
            with modes.islands():
                update()
        return run

    updates = {
        "adamw": in_train_step(lambda: distiller.student_optimizer.apply(grads, variables)),
        "teacher_ema": in_train_step(lambda: distiller._update_teacher(tf.constant(0.97))),
    }
    functions = {}
    for name, update in updates.items():
        for fusion in ("1", "0"):
            os.environ["TFISLR_XLA_FUSION"] = fusion  # read while tracing
            functions[name, fusion] = tf.function(update)
            functions[name, fusion]()
    os.environ.pop("TFISLR_XLA_FUSION")
    times = {key: [] for key in functions}
    for _ in range(args.repeats):
        for key, function in functions.items():
            start = time.perf_counter()
            function()
            times[key].append(1000 * (time.perf_counter() - start))
    results = {
        name: {"keras_ms": round(float(np.median(times[name, "0"])), 2),
               "island_ms": round(float(np.median(times[name, "1"])), 2)}
        for name in updates
    }
    parameters = int(sum(np.prod(v.shape) for v in variables))
    print(json.dumps({"config": args.config, "variables": len(variables),
                      "parameters": parameters, "update": results}, indent=2))


if __name__ == "__main__":
    main()
