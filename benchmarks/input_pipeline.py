"""Throughput of the augmented training pipeline (`make_train_dataset`); prints JSON.

    python benchmarks/input_pipeline.py [--batches 20] [--repeats 3] [--target 6000]
    python benchmarks/input_pipeline.py --compare OLD_TREE [--pairs 4]
    python benchmarks/input_pipeline.py --device accelerator [--pairs 4]

Clips are those of `benchmarks/train_step.py`'s synthetic store (10 signs x 16 clips, len80
config: batch 32, max_len 80, 3 augmented views a clip), prepared once in a temp folder.

- `one_core`: clips per CPU-second on one core (the worker runs under `taskset -c 0`; the
  process's CPU time, all threads, is what is divided, so other load on the machine
  matters less than with wall time), phase 1 and phase 2.
- `all_cores`: clips per wall-second with every core (`os.cpu_count()`), phase 1 and 2,
  with the CPU-seconds used per wall-second (how many cores tf.data kept busy).
- `per_augmentation`: CPU microseconds per view of each augmentation alone (its
  probability set to 1, every other one to 0) above the augmenter with every probability 0
  (`branching`: the draws and untaken branches), plus `read_and_pad` (no augmenter), all on
  one core; `expected` is the cost at the config's probability.
- `cores_for_target`: `--target` clips/s divided by the phase-1 one-core rate.

Each measurement makes a new iterator, pulls 2 batches (trace, warm-up), then times
`--batches` batches; medians of `--repeats` such windows. With `--compare`, the two trees
run in two processes on core 0, window by window in turn (ABBA, as
`benchmarks/train_step_ab.py`), for phase 1 and 2; ratio above 1 means this tree is faster.
With `--device accelerator` the A/B is this tree's host path (old) against its elements
for on-device augmentation (new: the host reads, pads and draws the parameters; the
augmentation itself runs in the train step, `augment.device: accelerator`), also on core 0;
with `--compare OLD_TREE` too, OLD_TREE's host path against them.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

_WORKER = r"""
import dataclasses, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf
from tfislr.augment import Augmenter
from tfislr.config import AugmentConfig
from tfislr.data.pipeline import make_train_dataset
from tfislr.data.store import load_store
store = load_store(sys.argv[2])
batch, max_len, device = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
# Only a tree with the option is asked for it (an older tree is always "host").
where = {} if device == "host" else {"augment_device": device}
PROBABILITIES = ("face_cutmix_p", "hand_fill_p", "interpolate_p", "flip_p", "rotate_p",
                 "crop_p", "crop_p_phase2", "scale_p")
datasets = {}
def dataset(mode, phase):
    if (mode, phase) not in datasets:
        augmenter = None
        if mode != "read_and_pad":
            config = AugmentConfig()
            if mode != "full":  # one augmentation alone (or none: "branching")
                only = {"crop": ("crop_p", "crop_p_phase2")}.get(mode, (mode + "_p",))
                config = dataclasses.replace(
                    config, **{p: (1.0 if p in only else 0.0) for p in PROBABILITIES})
            augmenter = Augmenter(config)
            augmenter.set_phase(phase)
        datasets[mode, phase] = make_train_dataset(
            store, np.arange(len(store)), batch, max_len, seed=0, augmenter=augmenter,
            repeat=True, **(where if mode == "full" else {}))
    return datasets[mode, phase]
print("ready", flush=True)
for line in sys.stdin:
    mode, phase, batches = line.split()
    iterator = iter(dataset(mode, int(phase)))
    for _ in range(2):
        next(iterator)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(int(batches)):
        next(iterator)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    del iterator
    print(cpu, wall, flush=True)
"""

AUGMENTATIONS = {  # mode -> (config probability, phase it is measured in)
    "face_cutmix": ("face_cutmix_p", 1),
    "hand_fill": ("hand_fill_p", 1),
    "interpolate": ("interpolate_p", 1),
    "flip": ("flip_p", 1),
    "rotate": ("rotate_p", 1),
    "crop": ("crop_p", 1),
    "scale": ("scale_p", 1),
}
VIEWS = 3


class Worker:
    """One tree's pipeline in its own process, optionally pinned to core 0; `device`: the
    `augment_device` of its "full" datasets."""

    def __init__(self, tree, store_dir, batch, max_len, one_core, device="host"):
        tree = pathlib.Path(tree).resolve()
        command = [sys.executable, "-c", _WORKER, str(tree), str(store_dir), str(batch),
                   str(max_len), device]
        if one_core:
            command = ["taskset", "-c", "0"] + command
        self.tree = tree
        self.batch = batch
        self.process = subprocess.Popen(
            command, env=dict(os.environ, PYTHONPATH=str(tree)), cwd=tree,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def wait_ready(self):
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"the worker of {self.tree} failed (exit {self.process.wait()})")

    def window(self, mode, phase, batches):
        """(CPU seconds, wall seconds, clips) of `batches` batches."""
        self.process.stdin.write(f"{mode} {phase} {batches}\n")
        self.process.stdin.flush()
        cpu, wall = (float(v) for v in self.process.stdout.readline().split())
        return cpu, wall, batches * self.batch

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def _median(values):
    import numpy as np

    return float(np.median(values))


def measure(worker, mode, phase, batches, repeats):
    """Median clips per CPU-second and per wall-second over `repeats` windows."""
    windows = [worker.window(mode, phase, batches) for _ in range(repeats)]
    return {
        "clips_per_cpu_second": round(_median([n / c for c, _, n in windows]), 1),
        "clips_per_second": round(_median([n / w for _, w, n in windows]), 1),
        "cpu_seconds_per_second": round(_median([c / w for c, w, _ in windows]), 2),
    }


def report_tree(tree, store_dir, args):
    one = Worker(tree, store_dir, args.batch, args.max_len, one_core=True)
    one.wait_ready()
    result = {"one_core": {}, "all_cores": {}, "per_augmentation_us_per_view": {}}
    for phase in (1, 2):
        result["one_core"][f"phase{phase}"] = measure(one, "full", phase, args.batches,
                                                      args.repeats)
    per_view_us = {}
    for mode, phase in [("read_and_pad", 1), ("branching", 1)] + [
        (mode, phase) for mode, (_, phase) in AUGMENTATIONS.items()
    ]:
        rate = measure(one, mode, phase, args.batches, args.repeats)["clips_per_cpu_second"]
        per_view_us[mode] = 1e6 / rate / VIEWS
    one.close()
    from tfislr.config import AugmentConfig

    defaults = AugmentConfig()
    base = per_view_us["branching"]
    table = result["per_augmentation_us_per_view"]
    table["read_and_pad"] = round(per_view_us["read_and_pad"], 1)
    table["branching"] = round(base - per_view_us["read_and_pad"], 1)
    for mode, (probability, _) in AUGMENTATIONS.items():
        fires = per_view_us[mode] - base
        table[mode] = {"when_it_fires": round(fires, 1),
                       "expected": round(fires * getattr(defaults, probability), 1)}
    every = Worker(tree, store_dir, args.batch, args.max_len, one_core=False)
    every.wait_ready()
    for phase in (1, 2):
        result["all_cores"][f"phase{phase}"] = measure(every, "full", phase, args.batches,
                                                       args.repeats)
    every.close()
    rate = result["one_core"]["phase1"]["clips_per_cpu_second"]
    result["cores_for_target"] = {"target_clips_per_second": args.target,
                                  "phase1_cores": round(args.target / rate, 1)}
    return result


def compare(old_tree, new_tree, store_dir, args, new_device="host"):
    workers = [Worker(t, store_dir, args.batch, args.max_len, one_core=True, device=d)
               for t, d in ((old_tree, "host"), (new_tree, new_device))]
    for worker in workers:
        worker.wait_ready()
    result = {}
    for phase in (1, 2):
        for worker in workers:  # trace both before timing
            worker.window("full", phase, 1)
        rates = [[], []]
        for pair in range(args.pairs):
            for side in ((0, 1) if pair % 2 == 0 else (1, 0)):
                cpu, _, clips = workers[side].window("full", phase, args.batches)
                rates[side].append(clips / cpu)
        import numpy as np

        old, new = np.array(rates[0]), np.array(rates[1])
        result[f"phase{phase}"] = {
            "old_clips_per_cpu_second": round(_median(old), 1),
            "new_clips_per_cpu_second": round(_median(new), 1),
            "speedup_median_of_pair_ratios": round(_median(new / old), 2),
            "old_all": [round(v, 1) for v in old],
            "new_all": [round(v, 1) for v in new],
        }
    for worker in workers:
        worker.close()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", metavar="OLD_TREE", type=pathlib.Path,
                        help="A/B on one core against the source tree OLD_TREE")
    parser.add_argument("--batches", type=int, default=20, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="windows per measurement")
    parser.add_argument("--pairs", type=int, default=4, help="alternated pairs (--compare)")
    parser.add_argument("--target", type=float, default=6000.0,
                        help="step rate (clips/s) to feed, for cores_for_target")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--device", choices=("host", "accelerator"), default="host",
                        help="accelerator: A/B of this tree's host path (or --compare's) "
                             "against its elements for on-device augmentation")
    args = parser.parse_args(argv)

    tree = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(tree))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfislr.data.prepare import ensure_store
    from tfislr.data.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_synthetic_dataset(
            pathlib.Path(tmp) / "data", num_signs=10, num_participants=8,
            sequences_per_sign=16, seed=0, num_workers=1)
        store_dir = ensure_store(data_dir, args.max_len, progress=False)
        header = {"clips": "synthetic (10 signs x 16 clips)", "batch": args.batch,
                  "max_len": args.max_len, "views": VIEWS, "batches_per_window": args.batches,
                  "cpus": os.cpu_count()}
        if args.compare or args.device == "accelerator":
            old = (args.compare or tree).resolve()
            header["old_tree"], header["new_tree"] = f"{old} (host)", f"{tree} ({args.device})"
            header["pairs"] = args.pairs
            header.update(compare(old, tree, store_dir, args, new_device=args.device))
        else:
            header["tree"] = str(tree)
            header["repeats"] = args.repeats
            header.update(report_tree(tree, store_dir, args))
    print(json.dumps(header, indent=2))


if __name__ == "__main__":
    main()
