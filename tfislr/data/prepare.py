"""Prepare step: Kaggle layout → prepared store (see `tfislr.data.store` for the format).

    tfislr-prepare --data-dir D --max-len 80 [25 ...] --out P [--workers N]

runs `Preprocess(max_len)` over every sequence of `D/train.csv` and writes `P/max_len_<M>/`.

* **Parallel**: the sequences are cut into shards of `shard_size` (train.csv order); a pool
  of worker processes (one per core by default, `spawn`ed so a caller that already runs
  TensorFlow is safe) each build one `Preprocess` on the CPU and handle whole shards. A tqdm
  bar counts sequences.
* **Resumable**: each finished shard is written atomically to `P/max_len_<M>.partial/`;
  a killed run started again does only the missing shards. Shards from another data set
  or another code version are discarded (see the fingerprint below).
* **Idempotent**: a complete store whose fingerprint matches is reused (a line on stderr
  says so). The fingerprint hashes train.csv, the sign map, max_len, the store format, the
  source of `tfislr/preprocessing.py` and `tfislr/landmarks.py` (what the stored values
  depend on), and the size and modification time (ns) of every landmark file train.csv
  lists, or that it is missing. Reading the parquet bytes would mean ~50 GB; their stat costs
  about a second for the full set's 94,477 files (benchmarks/README.md) and notices a file
  replaced or restored, e.g. after fixing the files `skipped.csv` lists: the store is then rebuilt.
  Copying the data set without keeping times (`cp` without `-p`) rebuilds it too.
  `force=True` / `--force` (`tfislr-train` / `tfislr-cv --force-prepare`, or deleting the
  store folder) rebuilds in any case; processes forcing the same store together (the workers
  of a multi-worker run) rebuild it once.
* **Bad files do not stop the run**: a file the reader rejects (`LandmarkFileError`:
  missing, unreadable, wrong schema or layout) is listed in `skipped.csv` with the reason
  and left out of the store; the run ends with a summary (prepared, skipped, why), also
  saved as `summary.json`. A bad train.csv or sign map is an error (nothing to prepare).
* A clip that has no hand at all (or 0 frames) is kept: `Preprocess` turns it into one
  all-zero frame, which is what the exported model would see.
* Two processes preparing the same store wait for each other (a file lock), so two
  training runs started together prepare it once.
"""

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np
import pandas as pd

from tfislr import atomic
from tfislr import landmarks as lm
from tfislr.checks import check_int
from tfislr.config import MIN_MAX_LEN
from tfislr.data import kaggle, store
from tfislr.text import plural

DEFAULT_SHARD_SIZE = 256
_FINGERPRINT_FILE = "fingerprint.json"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _module_source(name):
    spec = importlib.util.find_spec(name)
    return pathlib.Path(spec.origin).read_bytes()


def _landmark_files_stat(data_dir, paths):
    """Hash of (size, mtime_ns) of each listed file in train.csv order, (-1, -1) for one
    that is missing; the paths themselves are in train.csv's hash."""
    stats = np.full((len(paths), 2), -1, np.int64)
    folder = str(data_dir)
    for row, relative in enumerate(paths):
        try:
            info = os.stat(os.path.join(folder, relative))
        except OSError:
            continue
        stats[row] = info.st_size, info.st_mtime_ns
    return _sha256(stats.tobytes())


def data_fingerprint(data_dir, max_len, table=None):
    """Hash of everything the stored values depend on: the parquet files by size and mtime,
    not by their bytes (see the module docstring). `table` is `read_train_csv`'s, read here
    when not given (raising its `DataError` for a bad train.csv)."""
    data_dir = pathlib.Path(data_dir)
    if table is None:
        table = kaggle.read_train_csv(data_dir)
    parts = {
        "format_version": store.STORE_FORMAT_VERSION,
        "max_len": int(max_len),
        "train_csv": _sha256((data_dir / kaggle.TRAIN_CSV).read_bytes()),
        "sign_map": _sha256((data_dir / kaggle.SIGN_MAP_JSON).read_bytes()),
        "preprocessing": _sha256(_module_source("tfislr.preprocessing")),
        "landmarks": _sha256(_module_source("tfislr.landmarks")),
        "landmark_files": _landmark_files_stat(data_dir, table["path"]),
    }
    return _sha256(json.dumps(parts, sort_keys=True).encode())


def default_num_workers():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------
# Workers.

_WORKER = {}


def _init_worker(max_len, in_main_process=False):
    """Builds one `Preprocess` for this process (TensorFlow imported here, not at import)."""
    if _WORKER.get("max_len") == max_len:  # already traced in this process
        return
    if not in_main_process:
        # Workers stay off the GPUs (each would grab one) and use one thread each: the
        # parallelism is across processes.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from tfislr.runtime import start_tensorflow

    tf = start_tensorflow()

    if not in_main_process:
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    from tfislr.preprocessing import Preprocess

    _WORKER["tf"] = tf
    _WORKER["preprocess"] = Preprocess(max_len)
    _WORKER["max_len"] = max_len


def _shard_file(partial_dir, shard):
    return partial_dir / f"shard_{shard:06d}.npz"


def _run_shard(task):
    """Preprocesses one shard and writes it atomically; returns (shard, n_ok, n_skipped)."""
    data_dir, partial_dir, shard, paths = task
    tf, preprocess = _WORKER["tf"], _WORKER["preprocess"]
    values, lengths, raw, hands, kinds, reasons = [], [], [], [], [], []
    for relative in paths:
        try:
            frames = kaggle.read_landmark_file(pathlib.Path(data_dir) / relative)
        except kaggle.LandmarkFileError as error:
            lengths.append(0)
            raw.append(0)
            hands.append(0)
            kinds.append(error.kind)
            reasons.append(error.reason)
            continue
        with tf.device("/cpu:0"):
            out = preprocess(tf.constant(frames)).numpy()
        values.append(out)
        lengths.append(len(out))
        raw.append(len(frames))
        hands.append(int(np.any(np.isfinite(frames[:, lm.HAND_ROWS, 0]), axis=1).sum()))
        kinds.append("")
        reasons.append("")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        values=np.concatenate(values) if values else np.zeros((0, lm.NUM_POINTS, 3), np.float32),
        lengths=np.array(lengths, np.int64),
        n_raw_frames=np.array(raw, np.int64),
        n_hand_frames=np.array(hands, np.int64),
        kinds=np.array(kinds, dtype=str),
        reasons=np.array(reasons, dtype=str),
    )
    atomic.write_bytes(_shard_file(pathlib.Path(partial_dir), shard), buffer.getvalue())
    skipped = sum(1 for k in kinds if k)
    return shard, len(paths) - skipped, skipped


# ---------------------------------------------------------------------------------------
# Driver.


@contextlib.contextmanager
def _lock(path):
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock, nothing else changes
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_partial(partial_dir, fingerprint, shard_size):
    """The folder of finished shards, emptied if they belong to another data set/code/sharding."""
    marker = partial_dir / _FINGERPRINT_FILE
    expected = {"fingerprint": fingerprint, "shard_size": shard_size}
    if partial_dir.exists():
        try:
            current = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            current = None
        if current != expected:
            shutil.rmtree(partial_dir)
    partial_dir.mkdir(parents=True, exist_ok=True)
    atomic.remove_stale_temps(partial_dir)  # writes interrupted by a kill
    if not marker.exists():
        atomic.write_bytes(marker, json.dumps(expected).encode())


def _assemble(table, signs, partial_dir, target, num_shards, summary):
    """Joins the shards into the final store files, written to `target` (a fresh folder)."""
    shards = [np.load(_shard_file(partial_dir, k)) for k in range(num_shards)]
    lengths = np.concatenate([s["lengths"] for s in shards]) if shards else np.zeros(0, np.int64)
    kinds = np.concatenate([s["kinds"] for s in shards]) if shards else np.zeros(0, str)
    reasons = np.concatenate([s["reasons"] for s in shards]) if shards else np.zeros(0, str)
    ok = kinds == ""
    total_frames = int(lengths[ok].sum())
    values = np.lib.format.open_memmap(
        target / store.LANDMARKS_FILE, mode="w+", dtype=np.float32,
        shape=(total_frames, lm.NUM_POINTS, 3),
    )
    offset = 0
    for shard in shards:  # stream shard by shard: never the whole store in RAM twice
        chunk = shard["values"]
        values[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
    values.flush()
    del values
    np.save(target / store.ROW_SPLITS_FILE, np.concatenate([[0], np.cumsum(lengths[ok])]).astype(np.int64))

    manifest = table.loc[ok, ["sequence_id", "participant_id", "sign", "label", "path"]].copy()
    for column in ("n_raw_frames", "n_hand_frames"):
        manifest[column] = np.concatenate([s[column] for s in shards])[ok] if shards else []
    manifest["n_frames"] = lengths[ok]
    manifest = manifest.astype(
        {"sequence_id": np.int64, "participant_id": np.int64, "label": np.int64,
         "n_raw_frames": np.int64, "n_hand_frames": np.int64, "n_frames": np.int64}
    )
    manifest.reset_index(drop=True).to_parquet(target / store.MANIFEST_FILE, index=False)
    skipped = table.loc[~ok, ["path", "participant_id", "sequence_id", "sign"]].copy()
    skipped["kind"] = kinds[~ok]
    skipped["reason"] = reasons[~ok]
    skipped.to_csv(target / store.SKIPPED_FILE, index=False)
    (target / store.SIGNS_FILE).write_text(json.dumps(signs))
    kinds_count = pd.Series(kinds[~ok]).value_counts()
    summary.update(
        num_sequences=len(table),
        prepared=int(ok.sum()),
        skipped=int((~ok).sum()),
        skipped_by_kind={str(k): int(v) for k, v in kinds_count.items()},
        total_frames=total_frames,
        frames_per_sequence={
            "mean": float(lengths[ok].mean()) if ok.any() else 0.0,
            "max": int(lengths[ok].max()) if ok.any() else 0,
        },
        sequences_without_hands=int((manifest["n_hand_frames"] == 0).sum()),
        landmarks_bytes=int(total_frames * lm.NUM_POINTS * 3 * 4),
    )
    # Written last: its presence marks the store complete.
    (target / store.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def format_summary(summary, reused=False):
    """One human-readable paragraph for a summary dict; `reused`: of a store this call
    found complete and up to date, not one it prepared."""
    done = "reused the store prepared before," if reused else "prepared"
    text = (
        f"max_len {summary['max_len']}: {done} {summary['prepared']:,} of "
        f"{plural(summary['num_sequences'], 'sequence')} "
        f"({plural(summary['total_frames'], 'frame')}, "
        f"{summary['landmarks_bytes'] / 2**20:,.1f} MiB), skipped {summary['skipped']:,}"
    )
    if summary["skipped"]:
        text += " (" + ", ".join(f"{k}: {v}" for k, v in summary["skipped_by_kind"].items())
        text += f"; see {store.SKIPPED_FILE})"
    if summary.get("sequences_without_hands"):
        text += f"; {summary['sequences_without_hands']} without any hand (one zero frame)"
    return text


def prepare_store(
    data_dir,
    max_len,
    out_dir=None,
    num_workers=None,
    shard_size=DEFAULT_SHARD_SIZE,
    force=False,
    progress=True,
):
    """Builds (or finishes, or reuses) the store of `data_dir` for `max_len`.

    Args:
        data_dir: a Kaggle-layout folder (train.csv, sign map, train_landmark_files/).
        max_len: the `Preprocess` sequence length.
        out_dir: parent folder of the stores (default `<data_dir>/prepared`); the store is
            `<out_dir>/max_len_<max_len>`.
        num_workers: worker processes (default: all available cores). 1 runs in this
            process (no start-up cost; TensorFlow is imported here).
        shard_size: sequences per resumable unit of work.
        force: rebuild even if a complete store with the same fingerprint exists.
        progress: show a progress bar and print the summary (stderr).

    Returns:
        pathlib.Path of the complete store folder.
    """
    max_len = check_int("max_len", max_len, minimum=MIN_MAX_LEN)
    check_int("shard_size", shard_size)
    data_dir = pathlib.Path(data_dir).resolve()
    out_dir = pathlib.Path(out_dir) if out_dir is not None else data_dir / "prepared"
    atomic.check_writable_dir(out_dir, "pass another prepared-store folder (out_dir / "
                                       "prepared_dir / --out)")
    sign_map = kaggle.read_sign_map(data_dir)
    table = kaggle.read_train_csv(data_dir, sign_map)
    signs = kaggle.sign_names(sign_map)
    fingerprint = data_fingerprint(data_dir, max_len, table)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = store.store_dir(out_dir, max_len)
    partial_dir = target.with_name(target.name + ".partial")
    staging = target.with_name(target.name + ".assembling")

    seen = build_stamp(target)
    with _lock(target.with_name(f".{target.name}.lock")):
        if force and build_stamp(target) != seen and is_up_to_date(target, fingerprint):
            # Rebuilt by another process while this one waited for the lock (the workers
            # of a multi-worker run all force it): that is the fresh store; rebuilding it
            # again would delete it under the process now reading it.
            force = False
        if not force and is_up_to_date(target, fingerprint):
            for leftover in (partial_dir, staging):  # from a run killed after its last rename
                if leftover.exists():
                    shutil.rmtree(leftover)
            if progress:
                _say_reused(target)
            return target
        if force and partial_dir.exists():
            shutil.rmtree(partial_dir)
        _build(data_dir, max_len, table, signs, fingerprint, target, shard_size, num_workers,
               progress)
    return target


def _build(data_dir, max_len, table, signs, fingerprint, target, shard_size, num_workers,
           progress):
    """`prepare_store`'s work under its lock: the missing shards into `<target>.partial/`,
    assembled in `<target>.assembling/`, which then replaces `target` in one rename."""
    partial_dir = target.with_name(target.name + ".partial")
    staging = target.with_name(target.name + ".assembling")
    start = time.perf_counter()
    _open_partial(partial_dir, fingerprint, shard_size)
    paths = table["path"].tolist()
    num_shards = -(-len(paths) // shard_size)
    tasks = [
        (str(data_dir), str(partial_dir), k, paths[k * shard_size : (k + 1) * shard_size])
        for k in range(num_shards)
        if not _shard_file(partial_dir, k).exists()
    ]
    done = len(paths) - sum(len(t[3]) for t in tasks)
    workers = max(1, min(num_workers or default_num_workers(), len(tasks) or 1))
    if tasks:
        _run_tasks(tasks, max_len, workers, len(paths), done, progress)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    summary = {
        "format_version": store.STORE_FORMAT_VERSION,
        "max_len": max_len,
        "fingerprint": fingerprint,
        "data_dir": str(data_dir),
        "num_workers": workers,
        "shard_size": shard_size,
        "resumed_sequences": done,
    }
    _assemble(table, signs, partial_dir, staging, num_shards, summary)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    (staging / store.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    shutil.rmtree(partial_dir)


def build_stamp(path):
    """Identifies one build of the store at `path` (summary.json's inode and mtime), or
    None when there is no complete store."""
    try:
        info = os.stat(pathlib.Path(path) / store.SUMMARY_FILE)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _say_reused(path):
    skipped = store.read_summary(path)["skipped"]
    lacks = (f"; it lacks the {plural(skipped, 'clip')} skipped when it was prepared (listed in "
             f"{pathlib.Path(path) / store.SKIPPED_FILE})" if skipped else "")
    print(f"reusing the prepared store {path}: train.csv, the sign map, the landmark files' "
          "sizes and times and the preprocessing code are unchanged (to rebuild it: "
          f"tfislr-prepare --force, tfislr-train --force-prepare, or delete the folder){lacks}",
          file=sys.stderr, flush=True)


def is_up_to_date(path, fingerprint):
    """True iff `path` holds a complete store with this fingerprint."""
    summary = store.read_summary(path)
    return summary is not None and summary.get("fingerprint") == fingerprint


def _run_tasks(tasks, max_len, workers, total, done, progress):
    from tqdm import tqdm

    bar = tqdm(
        total=total, initial=done, unit="seq", desc=f"prepare max_len={max_len}",
        disable=not progress, file=sys.stderr, smoothing=0.1,
    )
    try:
        if workers == 1:
            _init_worker(max_len, in_main_process=True)
            for task in tasks:
                _, ok, skipped = _run_shard(task)
                bar.update(ok + skipped)
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker, initargs=(max_len,)) as pool:
                for _, ok, skipped in pool.imap_unordered(_run_shard, tasks):
                    bar.update(ok + skipped)
    finally:
        bar.close()


def ensure_store(data_dir, max_len, prepared_dir=None, num_workers=None, progress=True,
                 force=False):
    """The store folder for (`data_dir`, `max_len`), preparing it first if it is missing,
    incomplete or stale, or with `force` in any case (`prepare_store`'s); then, with
    `progress`, the summary goes to stderr. `prepared_dir` defaults to `<data_dir>/prepared`."""
    data_dir = pathlib.Path(data_dir)
    prepared_dir = pathlib.Path(prepared_dir) if prepared_dir is not None else data_dir / "prepared"
    target = store.store_dir(prepared_dir, max_len)
    if not force and (data_dir / kaggle.TRAIN_CSV).exists() \
            and (data_dir / kaggle.SIGN_MAP_JSON).exists():
        if is_up_to_date(target, data_fingerprint(data_dir, max_len)):
            if progress:
                _say_reused(target)
            return target
    path = prepare_store(
        data_dir, max_len, out_dir=prepared_dir, num_workers=num_workers, force=force,
        progress=progress,
    )
    if progress:
        print(f"{format_summary(store.read_summary(path))}; store: {path}", file=sys.stderr)
    return path


if __name__ == "__main__":  # `python -m tfislr.data.prepare`, the same as the command
    from tfislr.cli.prepare import main

    sys.exit(main())
