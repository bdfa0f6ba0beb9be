"""Two source trees' len80 train steps, alternated step by step in two processes; JSON.

    python benchmarks/train_step_ab.py BASELINE_TREE NEW_TREE [--steps 20] [--config len80]
        [--set KEY=VALUE ...] [--new-set KEY=VALUE ...]

On a shared 2-core machine the speed of the same command drifts by ±10 % between runs a
minute apart, more than most changes of the step. Here each tree traces its own step
(`build_distiller`, batch 32, random landmarks, as `benchmarks/train_step.py`) in its own
process; then the two processes run one step in turn, so that both see the same drift.
Prints each side's median and the median of the per-pair ratios (baseline / new: above 1
means the new tree is faster). Both trees must have `tfislr.config.load_config` and
`tfislr.training.mean_teacher.build_distiller(config, classes, steps_per_epoch=...)`.

`--set` overrides the config of both sides, `--new-set` of the new side only (e.g. the same
tree twice with `--new-set augment.device=accelerator`). With `augment.device:
accelerator` a side's step takes the raw batch instead (the same random clips, random
partners for every view, the parameters `Augmenter.view_parameters` draws in phase 1) and
augments it on the device first, as training does.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

_WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, numpy as np, tensorflow as tf
from tfislr.config import load_config
from tfislr.training.mean_teacher import MODEL_NAMES, build_distiller
config_dir = os.path.join(sys.argv[1], "tfislr", "configs")  # configs/ before 2026-12-07
if not os.path.isdir(config_dir):
    config_dir = os.path.join(sys.argv[1], "configs")
config = load_config(os.path.join(config_dir, sys.argv[2] + ".yaml"), sys.argv[3:])
batch, max_len = 32, config.data.max_len
keras.utils.set_random_seed(0)
distiller = build_distiller(config, 250, steps_per_epoch=1000)
rng = np.random.default_rng(0)
def view():
    landmarks = rng.normal(size=(batch, max_len, 100, 3)).astype("float32")
    return {"landmarks": tf.constant(landmarks), "padding_mask": tf.ones((batch, max_len))}
views = {name: view() for name in MODEL_NAMES}
labels = tf.constant(rng.integers(0, 250, size=batch).astype("int32"))
if getattr(config.augment, "device", "host") == "accelerator":
    from tfislr.augment import Augmenter
    augmenter, phase = Augmenter(config.augment), tf.constant(1)
    parameters = [[augmenter.view_parameters(tf.constant([i, v]), max_len, phase)
                   for v in range(len(MODEL_NAMES))] for i in range(batch)]
    views = {"landmarks": views["student"]["landmarks"], "length": tf.fill([batch], max_len),
             "partner_landmarks": tf.constant(rng.normal(
                 size=(batch, len(MODEL_NAMES), max_len, 100, 3)).astype("float32")),
             "partner_length": tf.fill([batch, len(MODEL_NAMES)], max_len),
             **{key: tf.stack([tf.stack([p[key] for p in clip]) for clip in parameters])
                for key in parameters[0][0]}}
for _ in range(3):  # trace, then two warm-up steps
    distiller.train_on_batch(views, labels)
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    distiller.train_on_batch(views, labels)
    print(time.perf_counter() - start, flush=True)
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=pathlib.Path, help="source tree of the baseline")
    parser.add_argument("new", type=pathlib.Path, help="source tree of the change")
    parser.add_argument("--steps", type=int, default=20, help="steps of each tree")
    parser.add_argument("--config", default="len80", help="config name in each tree's tfislr/configs/ (configs/ before 2026-12-07)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="KEY=VALUE config override of both sides")
    parser.add_argument("--new-set", dest="new_overrides", action="append", default=[],
                        help="KEY=VALUE config override of the new side only")
    args = parser.parse_args(argv)

    import numpy as np

    workers = []
    for tree, overrides in ((args.baseline, args.overrides),
                            (args.new, args.overrides + args.new_overrides)):
        tree = tree.resolve()
        env = dict(os.environ, PYTHONPATH=str(tree))
        workers.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tree), args.config, *overrides], env=env, cwd=tree,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        ))
    for worker in workers:  # both trace at once; timing starts when both are ready
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit(f"a worker failed to start (exit code {worker.wait()})")
    times = [[], []]
    for step in range(args.steps):
        order = (0, 1) if step % 2 == 0 else (1, 0)  # ABBA: neither side always goes first
        for side in order:
            workers[side].stdin.write("step\n")
            workers[side].stdin.flush()
            times[side].append(float(workers[side].stdout.readline()))
    for worker in workers:
        worker.stdin.close()
        worker.wait()
    baseline, new = (np.array(t) for t in times)
    print(json.dumps({
        "config": args.config,
        "overrides": {"both": args.overrides, "new": args.new_overrides},
        "steps": args.steps,
        "baseline": {"tree": str(args.baseline),
                     "median_step_seconds": round(float(np.median(baseline)), 3)},
        "new": {"tree": str(args.new), "median_step_seconds": round(float(np.median(new)), 3)},
        "speedup_median_of_pair_ratios": round(float(np.median(baseline / new)), 3),
        "speedup_of_medians": round(float(np.median(baseline) / np.median(new)), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
