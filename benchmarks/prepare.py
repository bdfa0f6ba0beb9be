"""Prepare-step and tf.data throughput on a synthetic Kaggle layout; prints JSON.

    .venv/bin/python benchmarks/prepare.py [--signs 250 --participants 21 --per-sign 40]
        [--max-len 80] [--workers N [N ...]] [--cache-dir DIR] [--json OUT]

1. Writes (once; cached under DIR, default `<tmp>/tfislr_bench`) a synthetic data set of
   signs × per-sign sequences (default 250 × 40 = 10,000 parquet files).
2. Prepares it from scratch with each `--workers` count (default: 1, then all cores) and
   reports files/s (wall time of the whole step: TensorFlow import, tracing and worker
   start-up included).
3. Loads the store and times the tf.data pipelines over all sequences: the eval pipeline
   and the training pipeline without augmenter (3 views), in sequences/s, plus the
   one-off cost of moving the store into its TF variable. With `--augmenter`, also the
   training pipeline with `tfislr.augment.Augmenter` (3 augmented views) on a few batches.

The machine's load average is included: on a shared machine the figures vary with it.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tfislr.data import prepare, store as store_lib, synthetic  # noqa: E402


def _synthetic(cache_dir, signs, participants, per_sign, seed):
    folder = pathlib.Path(cache_dir) / f"synthetic_{signs}x{per_sign}_p{participants}_s{seed}"
    marker = folder / ".complete"
    if marker.exists():
        return folder, None
    start = time.perf_counter()
    synthetic.write_synthetic_dataset(
        folder, signs, participants, per_sign, seed, num_workers=None, progress=True
    )
    marker.write_text("ok\n")
    return folder, time.perf_counter() - start


def _iterate(dataset, limit=None):
    count, start = 0, time.perf_counter()
    for k, (_, labels) in enumerate(dataset):
        count += int(labels.shape[0])
        if limit is not None and k + 1 >= limit:
            break
    return count, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signs", type=int, default=250)
    parser.add_argument("--participants", type=int, default=21)
    parser.add_argument("--per-sign", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--augmenter", action="store_true", help="also time the Augmenter")
    parser.add_argument("--augmenter-batches", type=int, default=10)
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "tfislr_bench"))
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    cores = prepare.default_num_workers()
    # 1 worker first: it then pays TensorFlow's import and tracing once, like each spawned worker.
    workers_list = args.workers or sorted({cores, 1})
    data_dir, generation_seconds = _synthetic(
        args.cache_dir, args.signs, args.participants, args.per_sign, args.seed
    )
    num_files = args.signs * args.per_sign
    data_bytes = sum(p.stat().st_size for p in (data_dir / "train_landmark_files").rglob("*.parquet"))
    result = {
        "machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_start": os.getloadavg()},
        "data": {"dir": str(data_dir), "files": num_files, "signs": args.signs,
                 "participants": args.participants, "bytes": data_bytes,
                 "generation_seconds": generation_seconds and round(generation_seconds, 1)},
        "prepare": [],
    }

    out_root = pathlib.Path(args.cache_dir) / f"prepared_{os.getpid()}"
    store_path = None
    for workers in workers_list:
        out = out_root / f"w{workers}"
        start = time.perf_counter()
        store_path = prepare.prepare_store(data_dir, args.max_len, out, num_workers=workers, progress=True)
        seconds = time.perf_counter() - start
        summary = store_lib.read_summary(store_path)
        result["prepare"].append({
            "workers": summary["num_workers"], "seconds": round(seconds, 2),
            "files_per_second": round(num_files / seconds, 1),
            "prepared": summary["prepared"], "skipped": summary["skipped"],
            "total_frames": summary["total_frames"], "store_bytes": summary["landmarks_bytes"],
        })
        print(json.dumps(result["prepare"][-1]), file=sys.stderr)

    import numpy as np
    import tensorflow as tf

    from tfislr.data import pipeline

    store = store_lib.load_store(store_path)
    indices = np.arange(len(store))
    start = time.perf_counter()
    pipeline.store_tensors(store)
    to_variable = time.perf_counter() - start
    timings = {"store_to_variable_seconds": round(to_variable, 3), "batch_size": args.batch_size,
               "max_len": args.max_len}
    evaluation = pipeline.make_eval_dataset(store, indices, args.batch_size, args.max_len)
    _iterate(evaluation, limit=2)  # warm-up (tracing)
    count, seconds = _iterate(evaluation)
    timings["eval_sequences_per_second"] = round(count / seconds, 1)
    train = pipeline.make_train_dataset(store, indices, args.batch_size, args.max_len, seed=0)
    _iterate(train, limit=2)
    count, seconds = _iterate(train)
    timings["train_no_augmenter_sequences_per_second"] = round(count / seconds, 1)
    if args.augmenter:
        from tfislr.augment import Augmenter

        train = pipeline.make_train_dataset(
            store, indices, args.batch_size, args.max_len, seed=0, augmenter=Augmenter()
        )
        _iterate(train, limit=2)
        count, seconds = _iterate(train, limit=args.augmenter_batches)
        timings["train_augmenter_3_views_sequences_per_second"] = round(count / seconds, 1)
    timings["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    result["tf_data"] = timings
    result["machine"]["load_average_end"] = os.getloadavg()
    shutil.rmtree(out_root, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
