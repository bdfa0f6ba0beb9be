"""Throughput of the mean-teacher train step and of the augmented input pipeline; prints JSON.

    python benchmarks/train_step.py [--config len80] [--batch 32] [--steps 10]
                                    [--data-dir DIR] [--pipeline-batches 20] [--skip-pipeline]
                                    [--profile DIR]

- `train_step`: sequences/s of one optimizer step of the full recipe (big student forward +
  backward, EMA teacher forward, distilled forward + backward, two AdamW updates, EMA
  update, mixup draw) on fixed full-length batches (T = max_len, no padding), after the
  trace and two warm-up steps. The original's PyTorch loop: ~10 seq/s on this machine
  (len80, batch 32, two threads; benchmarks/README.md).
- `input_pipeline`: sequences/s of `make_train_dataset` with every augmentation of phase 1
  (3 independently augmented views per sequence), measured alone. Uses `--data-dir`
  (Kaggle layout, prepared on first use) or a synthetic set generated in a temp folder.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def bench_train_step(config, batch, steps, num_classes=250, profile_dir=None):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfislr.training.mean_teacher import MODEL_NAMES, build_distiller

    keras.utils.set_random_seed(0)
    max_len = config.data.max_len
    distiller = build_distiller(config, num_classes, steps_per_epoch=1000)
    rng = np.random.default_rng(0)
    views = {
        name: {
            "landmarks": tf.constant(rng.normal(size=(batch, max_len, 100, 3)).astype("float32")),
            "padding_mask": tf.ones((batch, max_len)),
        }
        for name in MODEL_NAMES
    }
    labels = tf.constant(rng.integers(0, num_classes, size=batch).astype("int32"))
    start = time.perf_counter()
    distiller.train_on_batch(views, labels)  # traces
    trace_seconds = time.perf_counter() - start
    for _ in range(2):
        distiller.train_on_batch(views, labels)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        distiller.train_on_batch(views, labels)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    if profile_dir:  # two more steps under the TF profiler (TensorBoard's profile plugin)
        tf.profiler.experimental.start(str(profile_dir))
        for _ in range(2):
            distiller.train_on_batch(views, labels)
        tf.profiler.experimental.stop()
    params = {name: int(sum(np.prod(v.shape) for v in m.trainable_variables))
              for name, m in distiller.named_models().items()}
    return {
        "config": config.name,
        "batch": batch,
        "max_len": max_len,
        "steps_timed": steps,
        "trace_seconds": round(trace_seconds, 1),
        "median_step_seconds": round(median, 3),
        "min_step_seconds": round(min(times), 3),  # the least disturbed by other processes
        "sequences_per_second": round(batch / median, 2),
        "trainable_parameters": params,
        "jit_compile": config.runtime.jit_compile,
        "precision": config.runtime.precision,
    }


def bench_pipeline(config, data_dir, batch, num_batches):
    import numpy as np

    from tfislr.augment import Augmenter
    from tfislr.data.pipeline import make_train_dataset
    from tfislr.data.prepare import ensure_store
    from tfislr.data.store import load_store

    store = load_store(ensure_store(data_dir, config.data.max_len, progress=False))
    augmenter = Augmenter(config.augment)
    augmenter.set_phase(1)  # strength 3: every augmentation can fire
    dataset = make_train_dataset(
        store, np.arange(len(store)), batch, config.data.max_len, seed=0,
        augmenter=augmenter, repeat=True,
    )
    iterator = iter(dataset)
    for _ in range(2):  # trace + fill the prefetch buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return {
        "data_dir": str(data_dir),
        "sequences_in_store": len(store),
        "batch": batch,
        "batches_timed": num_batches,
        "views_per_sequence": 3,
        "sequences_per_second": round(batch * num_batches / seconds, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="len80")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--pipeline-batches", type=int, default=20)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="also trace two steps with the TF profiler into DIR (TensorBoard; "
                             "under XLA add --xla_cpu_enable_xprof_traceme=true to XLA_FLAGS "
                             "to see each fusion)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tfislr.config import load_config

    config = load_config(args.config, args.overrides)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "tensorflow": tf.__version__,
                    "gpus": len(tf.config.list_physical_devices("GPU"))},
    }
    if not args.skip_step:
        report["train_step"] = bench_train_step(
            config, args.batch, args.steps, profile_dir=args.profile)
        print(json.dumps({"train_step": report["train_step"]}), file=sys.stderr)
    if not args.skip_pipeline:
        if args.data_dir is None:
            from tfislr.data.synthetic import write_synthetic_dataset

            with tempfile.TemporaryDirectory() as tmp:
                data_dir = write_synthetic_dataset(
                    pathlib.Path(tmp) / "data", num_signs=10, num_participants=8,
                    sequences_per_sign=16, seed=0, num_workers=1,
                )
                report["input_pipeline"] = bench_pipeline(
                    config, data_dir, args.batch, args.pipeline_batches)
                report["input_pipeline"]["data_dir"] = "synthetic (10 signs x 16 clips)"
        else:
            report["input_pipeline"] = bench_pipeline(
                config, pathlib.Path(args.data_dir), args.batch, args.pipeline_batches)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
