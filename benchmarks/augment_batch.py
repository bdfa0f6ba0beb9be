"""Cost of the batched augmentation alone (`tfislr.augment_batch.augment_views`); prints JSON.

    python benchmarks/augment_batch.py [--batch 32] [--max-len 80] [--rounds 20] [--phase 1]

What `augment.device: accelerator` adds to each train step: the three views of a batch of
`--batch` random full-length clips, every view with a random full-length partner (CutMix,
once it fires for any view, runs for the whole batch and is kept where it fires), parameters drawn
by `Augmenter.view_parameters` in phase `--phase`. Eager-traced `tf.function` with and without
`jit_compile`, one call of each in turn per round (ABAB), after a trace and a warm-up
call; medians of the per-call wall seconds and of the per-call CPU seconds (the process's,
all threads), and microseconds per clip-view.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def raw_batch(batch, max_len, views=3, phase=1):
    """A raw training batch (`tfislr.augment_batch.RAW_KEYS`) of random clips."""
    import numpy as np
    import tensorflow as tf

    from tfislr.augment import Augmenter

    rng = np.random.default_rng(0)
    augmenter, phase = Augmenter(), tf.constant(phase)
    parameters = [[augmenter.view_parameters(tf.constant([i, v]), max_len, phase)
                   for v in range(views)] for i in range(batch)]
    return {
        "landmarks": tf.constant(rng.normal(size=(batch, max_len, 100, 3)), tf.float32),
        "length": tf.fill([batch], max_len),
        "partner_landmarks": tf.constant(rng.normal(size=(batch, views, max_len, 100, 3)),
                                         tf.float32),
        "partner_length": tf.fill([batch, views], max_len),
        **{key: tf.stack([tf.stack([p[key] for p in clip]) for clip in parameters])
           for key in parameters[0][0]},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--phase", type=int, choices=(1, 2), default=1)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from tfislr.augment_batch import augment_views
    from tfislr.config import MODEL_NAMES

    raw = raw_batch(args.batch, args.max_len, phase=args.phase)
    functions = {
        jit: tf.function(lambda r: augment_views(r, MODEL_NAMES), jit_compile=jit)
        for jit in (False, True)
    }
    for function in functions.values():  # trace (and compile), then one warm-up call
        for _ in range(2):
            function(raw)["distilled"]["landmarks"].numpy()
    timings = {jit: [] for jit in functions}
    for round_ in range(args.rounds):
        for jit in ((False, True) if round_ % 2 == 0 else (True, False)):
            cpu, wall = time.process_time(), time.perf_counter()
            functions[jit](raw)["distilled"]["landmarks"].numpy()
            timings[jit].append((time.perf_counter() - wall, time.process_time() - cpu))
    clip_views = args.batch * len(MODEL_NAMES)
    report = {"batch": args.batch, "max_len": args.max_len, "views": len(MODEL_NAMES),
              "phase": args.phase,
              "rounds": args.rounds, "cpus": os.cpu_count()}
    for jit, values in timings.items():
        wall, cpu = (float(np.median(column)) for column in zip(*values))
        report["xla" if jit else "no_xla"] = {
            "median_seconds": round(wall, 4), "median_cpu_seconds": round(cpu, 4),
            "us_per_clip_view": round(1e6 * wall / clip_views, 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
