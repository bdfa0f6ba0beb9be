"""A rehearsal at the competition's size (94,477 clips) on synthetic data; prints JSON.

    python benchmarks/full_scale.py [--fraction 0.1] [--workers 2] [--cache-dir DIR]
        [--skip-train] [--train-steps 3] [--json OUT]

The clips are those of `../shared/data/skeleton/asl_signs_skeleton.csv` (`--skeleton`): the
competition's sequence ids, signers, the original's folds and every clip's frame count, with
250 synthetic signs (`tfislr.data.synthetic.write_skeleton_dataset`). Stages:

1. **generate**: parquet files in the Kaggle layout for a `--fraction` of the clips (every
   signer, a random sample of each signer's clips). All 94,477 files would take about as
   much disk as the real set (tens of GB) and hours of a small machine, so the files/s and
   bytes measured on the sample are extrapolated to the full set (`full_set_estimate`).
2. **prepare**: `prepare_store` of the sample at max_len 25 and 80: files/s, frames, peak
   memory of the workers.
3. **full stores**: stores with all 94,477 rows, assembled from the sample's preprocessed clips
   (each clip takes a sample clip of the same signer with the nearest raw frame count, so the
   length distribution follows the real frame counts), written in the store format with the
   fingerprint `ensure_store` checks, so training reads them like a prepared store. Reported:
   size on disk and in memory, `load_store` time (memory-mapped and into RAM), and the one-off
   cost of moving the store into its TF variable.
4. **validation** and **train** (unless `--skip-train`): see `_validation_stage` and
   `_train_stage`.

Peak memory is the maximum resident set size (`ru_maxrss`, so far: it never goes down) of this
process and, separately, of the largest child process (the generate/prepare workers); the
full-store stages also give how much resident memory loading into RAM and moving the store
into its TF variable added. The machine's load average is in the
JSON: this machine is shared, so timings vary with it. Every stage's result is cached in
`--cache-dir` (data included), so a rerun redoes only stages that did not finish.
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tfislr import landmarks as lm  # noqa: E402
from tfislr.data import kaggle, prepare, store as store_lib, synthetic  # noqa: E402

SKELETON = REPO.parent / "shared" / "data" / "skeleton" / "asl_signs_skeleton.csv"
MAX_LENS = (25, 80)
NUM_SIGNS = 250


def _peak_memory():
    """Peak resident memory so far, in MiB: this process, and the largest child process."""
    return {
        "self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "largest_child_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def _rss_mib():
    """Resident memory of this process now, in MiB (Linux)."""
    return round(int(pathlib.Path("/proc/self/statm").read_text().split()[1])
                 * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _folder_bytes(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def _log(message):
    print(f"[full_scale] {message}", file=sys.stderr, flush=True)


class Stages:
    """Results of finished stages, kept in `<cache>/stages.json` so a rerun skips them."""

    def __init__(self, cache_dir):
        self.path = pathlib.Path(cache_dir) / "stages.json"
        self.results = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name, function):
        if name in self.results:
            _log(f"{name}: cached")
            return self.results[name]
        _log(f"{name} ...")
        start = time.perf_counter()
        result = function()
        result["stage_seconds"] = round(time.perf_counter() - start, 1)
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        self.results[name] = result
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2) + "\n")
        tmp.replace(self.path)
        _log(f"{name}: {json.dumps(result)}")
        return result


def sample_skeleton(skeleton, fraction, seed=0):
    """A `fraction` of each signer's clips (at least one each), in skeleton order."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(skeleton), bool)
    for _, rows in skeleton.groupby("participant_id").indices.items():
        count = max(1, int(round(fraction * len(rows))))
        keep[rng.choice(rows, count, replace=False)] = True
    return skeleton[keep].reset_index(drop=True)


def _generate(skeleton, sample, data_dir, workers):
    if data_dir.exists():
        shutil.rmtree(data_dir)
    start = time.perf_counter()
    synthetic.write_skeleton_dataset(data_dir, sample, NUM_SIGNS, seed=0, num_workers=workers,
                                     progress=True)
    seconds = time.perf_counter() - start
    data_bytes = _folder_bytes(data_dir / "train_landmark_files")
    files_per_second = len(sample) / seconds
    bytes_per_frame = data_bytes / int(sample["n_frames"].sum())
    return {
        "files": len(sample),
        "frames": int(sample["n_frames"].sum()),
        "workers": workers,
        "seconds": round(seconds, 1),
        "files_per_second": round(files_per_second, 1),
        "bytes": data_bytes,
        "bytes_per_frame": round(bytes_per_frame, 1),
        "full_set_estimate": {
            "files": len(skeleton),
            "seconds": round(len(skeleton) / files_per_second),
            "gb": round(bytes_per_frame * int(skeleton["n_frames"].sum()) / 1e9, 1),
            "how": "the sample's files/s and bytes per frame times the full set's files and frames",
        },
        "peak_memory": _peak_memory(),
    }


def _prepare(data_dir, max_len, workers, num_full):
    out = data_dir / "prepared"
    shutil.rmtree(store_lib.store_dir(out, max_len), ignore_errors=True)
    start = time.perf_counter()
    path = prepare.prepare_store(data_dir, max_len, out, num_workers=workers, progress=True)
    seconds = time.perf_counter() - start
    summary = store_lib.read_summary(path)
    return {
        "max_len": max_len,
        "workers": summary["num_workers"],
        "files": summary["num_sequences"],
        "prepared": summary["prepared"],
        "skipped": summary["skipped"],
        "seconds": round(seconds, 1),
        "files_per_second": round(summary["num_sequences"] / seconds, 1),
        "full_set_estimate_seconds": round(num_full * seconds / summary["num_sequences"]),
        "store_bytes_on_disk": _folder_bytes(path),
        "peak_memory": _peak_memory(),
    }


def build_full_store(sample_store, skeleton, full_dir, max_len):
    """Writes `<full_dir>/prepared/max_len_<M>/` with one row per skeleton clip (see stage 3).

    `full_dir` gets a train.csv and sign map listing every clip (with the sign of the sample
    clip it borrows), so `ensure_store(full_dir, M)` accepts the store as up to date; the
    parquet files of `full_dir` do not exist and are never read.
    """
    manifest = sample_store.manifest
    lengths = sample_store.lengths
    source = np.empty(len(skeleton), np.int64)
    for participant, rows in skeleton.groupby("participant_id").indices.items():
        candidates = np.flatnonzero(manifest["participant_id"].to_numpy() == participant)
        raw = manifest["n_raw_frames"].to_numpy()[candidates]
        order = np.argsort(raw, kind="stable")
        wanted = skeleton["n_frames"].to_numpy()[rows]
        position = np.clip(np.searchsorted(raw[order], wanted), 0, len(order) - 1)
        below = np.clip(position - 1, 0, len(order) - 1)
        nearer_below = np.abs(raw[order][below] - wanted) < np.abs(raw[order][position] - wanted)
        source[rows] = candidates[order[np.where(nearer_below, below, position)]]

    table = pd.DataFrame({
        "path": [f"train_landmark_files/{p}/{s}.parquet"
                 for p, s in zip(skeleton["participant_id"], skeleton["sequence_id"])],
        "participant_id": skeleton["participant_id"].to_numpy(np.int64),
        "sequence_id": skeleton["sequence_id"].to_numpy(np.int64),
        "sign": manifest["sign"].to_numpy()[source],
    })
    full_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(full_dir / kaggle.TRAIN_CSV, index=False)
    sign_map = {name: label for label, name in enumerate(sample_store.signs)}
    (full_dir / kaggle.SIGN_MAP_JSON).write_text(json.dumps(sign_map))

    target = store_lib.store_dir(full_dir / "prepared", max_len)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    counts = lengths[source]
    row_splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    values = np.lib.format.open_memmap(target / store_lib.LANDMARKS_FILE, mode="w+",
                                       dtype=np.float32, shape=(int(row_splits[-1]), lm.NUM_POINTS, 3))
    chunk = 4096
    for begin in range(0, len(source), chunk):
        rows = source[begin : begin + chunk]
        values[row_splits[begin] : row_splits[begin + len(rows)]] = np.concatenate(
            [sample_store.sequence(int(i)) for i in rows])
    values.flush()
    del values
    np.save(target / store_lib.ROW_SPLITS_FILE, row_splits)
    full_manifest = pd.DataFrame({
        "sequence_id": table["sequence_id"],
        "participant_id": table["participant_id"],
        "sign": table["sign"],
        "label": manifest["label"].to_numpy(np.int64)[source],
        "path": table["path"],
        "n_raw_frames": skeleton["n_frames"].to_numpy(np.int64),
        "n_hand_frames": manifest["n_hand_frames"].to_numpy(np.int64)[source],
        "n_frames": counts.astype(np.int64),
    })
    full_manifest.to_parquet(target / store_lib.MANIFEST_FILE, index=False)
    (target / store_lib.SIGNS_FILE).write_text(json.dumps(list(sample_store.signs)))
    (target / store_lib.SKIPPED_FILE).write_text(",".join(store_lib.SKIPPED_COLUMNS) + "\n")
    summary = {
        "format_version": store_lib.STORE_FORMAT_VERSION,
        "max_len": max_len,
        "fingerprint": prepare.data_fingerprint(full_dir, max_len),
        "data_dir": str(full_dir),
        "num_sequences": len(table),
        "prepared": len(table),
        "skipped": 0,
        "skipped_by_kind": {},
        "total_frames": int(row_splits[-1]),
        "sequences_without_hands": int((full_manifest["n_hand_frames"] == 0).sum()),
        "landmarks_bytes": int(row_splits[-1]) * lm.NUM_POINTS * 3 * 4,
        "assembled_from": str(sample_store.path),
    }
    (target / store_lib.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return target


def _full_store(sample_dir, full_dir, skeleton, max_len):
    start = time.perf_counter()
    sample_store = store_lib.load_store(store_lib.store_dir(sample_dir / "prepared", max_len))
    path = build_full_store(sample_store, skeleton, full_dir, max_len)
    build_seconds = time.perf_counter() - start

    start = time.perf_counter()
    mapped = store_lib.load_store(path)
    mmap_seconds = time.perf_counter() - start
    del mapped
    start = time.perf_counter()
    rss_before = _rss_mib()
    loaded = store_lib.load_store(path, mmap=False)
    ram_seconds = time.perf_counter() - start
    rss_loaded = _rss_mib() - rss_before
    in_memory = (loaded.landmarks.nbytes + loaded.row_splits.nbytes
                 + int(loaded.manifest.memory_usage(deep=True).sum()))
    result = {
        "max_len": max_len,
        "sequences": len(loaded),
        "frames": int(len(loaded.landmarks)),
        "frames_per_sequence_mean": round(float(loaded.lengths.mean()), 2),
        "assemble_seconds": round(build_seconds, 1),
        "bytes_on_disk": _folder_bytes(path),
        "bytes_in_memory": in_memory,
        "load_seconds_mmap": round(mmap_seconds, 3),
        "load_seconds_into_ram": round(ram_seconds, 2),
        "rss_growth_loading_into_ram_mib": round(rss_loaded, 1),
        "load_note": "the store was just written, so its pages are likely in the OS cache: "
                     "a cold read from disk is slower",
    }
    del loaded

    import tensorflow as tf  # noqa: F401  (imported here, not counted in the timings above)

    from tfislr.data import pipeline

    mapped = store_lib.load_store(path)
    rss_before = _rss_mib()
    start = time.perf_counter()
    tensors = pipeline.store_tensors(mapped)
    result["to_tf_variable_seconds"] = round(time.perf_counter() - start, 1)
    result["rss_growth_to_tf_variable_mib"] = round(_rss_mib() - rss_before, 1)
    del tensors
    result["peak_memory"] = _peak_memory()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skeleton", default=str(SKELETON))
    parser.add_argument("--fraction", type=float, default=0.1,
                        help="share of the clips written as parquet files and prepared")
    parser.add_argument("--workers", type=int, default=prepare.default_num_workers())
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "tfislr_full_scale"))
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")

    if not args.skip_train:
        # First, before TensorFlow initialises: the 8 logical CPU replicas (as 8 GPUs would be).
        from tfislr.training.strategy import get_strategy

        strategy = get_strategy("cpu:8")
    cache = pathlib.Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    skeleton = pd.read_csv(args.skeleton)
    sample = sample_skeleton(skeleton, args.fraction)
    sample_dir, full_dir = cache / f"sample_{args.fraction:g}", cache / "full"
    stages = Stages(cache)
    result = {
        "machine": {"cores": prepare.default_num_workers(), "platform": platform.platform(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "load_average_start": [round(x, 2) for x in os.getloadavg()]},
        "skeleton": {"path": str(args.skeleton), "clips": len(skeleton),
                     "participants": int(skeleton["participant_id"].nunique()),
                     "frames": int(skeleton["n_frames"].sum()),
                     "clips_per_fold": {str(k): int(v) for k, v in skeleton.groupby("fold").size().items()}},
        "subsampled": {
            "parquet files and prepare": f"{len(sample)} of {len(skeleton)} clips "
                                         f"(fraction {args.fraction:g}, every signer); full-set "
                                         "time and size extrapolated",
            "full stores": "all clips; landmarks borrowed from the sample's prepared clips "
                           "(same signer, nearest raw frame count)",
        },
    }
    result["generate"] = stages.run(
        "generate", lambda: _generate(skeleton, sample, sample_dir, args.workers))
    result["prepare"] = [
        stages.run(f"prepare_{m}", lambda m=m: _prepare(sample_dir, m, args.workers, len(skeleton)))
        for m in MAX_LENS
    ]
    for m in MAX_LENS:  # a store built by older preprocessing code is stale: rebuild it
        target = store_lib.store_dir(full_dir / "prepared", m)
        if target.exists() and not prepare.is_up_to_date(target, prepare.data_fingerprint(full_dir, m)):
            stages.results.pop(f"full_store_{m}", None)
    result["full_store"] = [
        stages.run(f"full_store_{m}", lambda m=m: _full_store(sample_dir, full_dir, skeleton, m))
        for m in MAX_LENS
    ]
    if not args.skip_train:
        setup = _Fold0Setup(full_dir, cache / "runs", strategy)
        result["validation"] = stages.run("validation", lambda: _validation_stage(setup))
        result["train"] = stages.run("train", lambda: _train_stage(setup, args.train_steps))
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(text + "\n")


class _StepTimer:
    """Wall time of every training step (Keras callback)."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(cb, batch, logs=None):
                cb.begin = time.perf_counter()

            def on_train_batch_end(cb, batch, logs=None):
                self.seconds.append(time.perf_counter() - cb.begin)

        self.seconds = []
        self.callback = Callback()


class _Fold0Setup:
    """len80 on fold 0 of the full store, built with the training code's own phases
    (tfislr.training.run): split, batch plan, run dir (run.json), datasets, models.

    Built once (lazily) for the `validation` and `train` stages; each stage is cached on its
    own, so a run killed during the steps keeps the validation pass.
    """

    def __init__(self, full_dir, output_dir, strategy):
        self.full_dir, self.output_dir, self.strategy = full_dir, output_dir, strategy
        self._built = None

    def get(self):
        if self._built is None:
            import keras

            from tfislr.config import load_config
            from tfislr.training import run
            from tfislr.training.batch_plan import plan_batches

            config = load_config("len80")
            data = run._load_and_split(config, self.full_dir, fold=0, full=False)
            plan = plan_batches(config, len(data.train_idx), self.strategy.num_replicas_in_sync)
            shutil.rmtree(self.output_dir, ignore_errors=True)
            chief, _, _ = run._open_run_dir(
                config, self.output_dir, None, data, self.strategy, plan, self.full_dir)
            run_json = json.loads(chief.file("run.json").read_text())
            keras.utils.set_random_seed(config.train.seed)
            with run._precision(config):
                distiller, _ = run._model(config, self.strategy, len(data.signs), plan, None)
            self._built = {
                "config": config, "data": data, "plan": plan, "distiller": distiller,
                "summary": {
                    "config": "len80 (the original's dimensions, precision float32)",
                    "strategy": f"{type(self.strategy).__name__} over "
                                f"{self.strategy.num_replicas_in_sync} logical CPUs",
                    "run_json": {key: run_json[key]
                                 for key in ("fold", "num_train", "num_val", "batch_plan")},
                },
            }
        return self._built


def _validation_stage(setup):
    """One validation pass over the last two batches of fold 0's validation set: the last
    one is partial, exactly as in the full pass (22,358 = 87 × 256 + 86 clips: 10 or 11 clips
    per replica). It runs once through `distiller.evaluate` on the 8 replicas and once
    through the models on one device; the student's loss and the distilled model's accuracy
    must agree (every clip counted once). It runs before the training steps: it needs far less memory, and the
    steps' peak stays resident afterwards."""
    import keras

    from tfislr.data.pipeline import make_eval_dataset

    built = setup.get()
    data, plan, distiller = built["data"], built["plan"], built["distiller"]
    eval_batch = plan.eval_global_batch_size
    remainder = len(data.val_idx) % eval_batch
    tail = data.val_idx[-(eval_batch + remainder):]
    val_ds = make_eval_dataset(data.store, tail, eval_batch, built["config"].data.max_len)
    start = time.perf_counter()
    logs = distiller.evaluate(val_ds, verbose=0, return_dict=True)
    seconds = time.perf_counter() - start
    labels = data.store.labels[tail]
    student, distilled = [], []
    for x, _ in val_ds:
        student.append(keras.ops.convert_to_numpy(distiller.student(x, training=False)))
        distilled.append(keras.ops.convert_to_numpy(distiller.distilled(x, training=False)))
    student, distilled = np.concatenate(student), np.concatenate(distilled)
    # The student's per-clip cross-entropy, as `test_step` averages it: with barely trained
    # weights the accuracies are ~0 on 250 signs, the loss (~ln 250) is what can disagree.
    log_probabilities = student - np.log(np.exp(student - student.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - student.max(-1, keepdims=True)
    one_device_loss = float(-np.mean(log_probabilities[np.arange(len(labels)), labels]))
    return {
        **built["summary"],
        "clips": int(len(tail)),
        "of_fold_0": int(len(data.val_idx)),
        "batches": [eval_batch, int(remainder)],
        "per_replica_last_batch": sorted({remainder // plan.replicas,
                                          -(-remainder // plan.replicas)}),
        "seconds": round(seconds, 1),
        "clips_per_second": round(len(tail) / seconds, 1),
        "student_loss_8_replicas": round(float(logs["loss"]), 6),
        "student_loss_one_device": round(one_device_loss, 6),
        "distilled_accuracy_8_replicas": round(float(logs["distilled_accuracy"]), 6),
        "distilled_accuracy_one_device": round(float(np.mean(distilled.argmax(-1) == labels)), 6),
        "subsampled": "the last 2 of the fold's 88 validation batches (one full, the partial "
                      "last one); the full pass is 22,358 clips",
        "peak_memory": _peak_memory(),
    }


def _train_stage(setup, steps):
    """The augmented input pipeline alone over a few batches, then `steps` optimizer steps at
    the recipe's global batch on the `cpu:8` replicas (the first one traces the step)."""
    from tfislr.training import run

    built = setup.get()
    config, data, plan, distiller = built["config"], built["data"], built["plan"], built["distiller"]
    result = dict(built["summary"])
    with run._precision(config):
        datasets = run._datasets(config, data, plan)
        start = time.perf_counter()
        batches = 3
        for k, _ in enumerate(datasets.train):
            if k + 1 == batches:
                break
        result["input_pipeline"] = {
            "batches": batches, "global_batch": plan.global_batch_size,
            "clips_per_second": round(batches * plan.global_batch_size / (time.perf_counter() - start), 1),
            "note": "3 augmented views a clip, first batch included (tracing)",
        }
        timer = _StepTimer()
        start = time.perf_counter()
        history = distiller.fit(datasets.train, epochs=1, steps_per_epoch=steps, verbose=2,
                                callbacks=[timer.callback], shuffle=False)
        result["train_steps"] = {
            "steps": steps,
            "seconds_per_step": [round(x, 1) for x in timer.seconds],
            "clips_per_second_after_first": round(
                plan.global_batch_size * (steps - 1) / max(sum(timer.seconds[1:]), 1e-9), 2)
            if steps > 1 else None,
            "wall_seconds": round(time.perf_counter() - start, 1),
            "loss": [round(float(x), 4) for x in history.history["loss"]],
        }
    result["peak_memory"] = _peak_memory()
    return result


if __name__ == "__main__":
    main()
