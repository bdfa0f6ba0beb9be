"""The prepared store: every sequence after `Preprocess(max_len)`, in one compact folder.

Layout of `<prepared_dir>/max_len_<M>/` (written by `tfislr.data.prepare`):

    landmarks.npy     float32 [total_frames, 100, 3]   all sequences back to back
    row_splits.npy    int64   [N + 1]                  sequence i = landmarks[s[i]:s[i+1]]
    manifest.parquet  N rows, train.csv order: sequence_id, participant_id, sign, label,
                      path, n_raw_frames (frames in the file), n_hand_frames (frames with
                      a hand), n_frames (frames stored, >= 1)
    signs.json        sign names, index = label (the full sign map, not only signs present)
    skipped.csv       path, participant_id, sequence_id, sign, kind, reason (bad files)
    summary.json      counts, skip reasons, fingerprint, timings; written last: a store
                      is complete iff this file exists

Values are what the exported model computes before its first layer, so a model trained
on the store sees exactly what it sees on device. For the full competition set (94,477
clips) the store is a few GB at max_len 80; `load_store` memory-maps it by default, so
opening it is instant and costs no RAM until the data is touched.

This module does not import TensorFlow.
"""

import json
import pathlib

import numpy as np
import pandas as pd

from tfislr import landmarks as lm
from tfislr.errors import MissingFileError

STORE_FORMAT_VERSION = 1
LANDMARKS_FILE = "landmarks.npy"
ROW_SPLITS_FILE = "row_splits.npy"
MANIFEST_FILE = "manifest.parquet"
SIGNS_FILE = "signs.json"
SKIPPED_FILE = "skipped.csv"
SUMMARY_FILE = "summary.json"
MANIFEST_COLUMNS = (
    "sequence_id", "participant_id", "sign", "label", "path",
    "n_raw_frames", "n_hand_frames", "n_frames",
)
SKIPPED_COLUMNS = ("path", "participant_id", "sequence_id", "sign", "kind", "reason")


def store_dir(prepared_dir, max_len):
    """Folder of the store for `max_len` under `prepared_dir`."""
    return pathlib.Path(prepared_dir) / f"max_len_{int(max_len)}"


def read_summary(path):
    """summary.json of a store folder, or None when the store is absent or incomplete."""
    summary = pathlib.Path(path) / SUMMARY_FILE
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text())
    except json.JSONDecodeError:
        return None


class PreparedStore:
    """A loaded store. Sequence `i` is `landmarks[row_splits[i]:row_splits[i + 1]]`.

    Attributes:
        path: the store folder.
        landmarks: float32 `[total_frames, 100, 3]` (a read-only memory map by default).
        row_splits: int64 `[N + 1]`.
        manifest: DataFrame, one row per sequence (see the module docstring).
        signs: list of sign names, index = label.
        summary: the dict of summary.json (includes `max_len`).
    """

    def __init__(self, path, landmarks, row_splits, manifest, signs, summary):
        self.path = pathlib.Path(path)
        self.landmarks = landmarks
        self.row_splits = row_splits
        self.manifest = manifest
        self.signs = signs
        self.summary = summary

    @property
    def max_len(self):
        return int(self.summary["max_len"])

    @property
    def num_classes(self):
        return len(self.signs)

    @property
    def labels(self):
        """int32 `[N]`."""
        return self.manifest["label"].to_numpy(np.int32)

    @property
    def lengths(self):
        """int64 `[N]` stored frames per sequence."""
        return np.diff(self.row_splits)

    def sequence(self, i):
        """float32 `[T, 100, 3]` of sequence `i` (0 <= i < len(self))."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence index {i} out of range for a store of {len(self)}")
        i = i % len(self)
        return np.asarray(self.landmarks[self.row_splits[i] : self.row_splits[i + 1]])

    def __len__(self):
        return len(self.row_splits) - 1

    def __repr__(self):
        return (
            f"PreparedStore({str(self.path)!r}, sequences={len(self)}, "
            f"frames={len(self.landmarks)}, max_len={self.max_len}, signs={len(self.signs)})"
        )


def load_store(path, mmap=True):
    """Opens a complete store folder (e.g. `<prepared_dir>/max_len_80`).

    Args:
        path: the store folder.
        mmap: memory-map `landmarks.npy` read-only (instant; pages load on use). False reads
            it into RAM.

    Raises:
        MissingFileError (a FileNotFoundError): no complete store there (summary.json is
            written last).
        ValueError: the files disagree with each other or with the expected format.
    """
    path = pathlib.Path(path)
    summary = read_summary(path)
    if summary is None:
        raise MissingFileError(
            f"{path / SUMMARY_FILE}: file not found (no complete prepared store); run "
            f"`python -m tfislr.data.prepare --data-dir DATA --max-len M --out {path.parent}`"
        )
    if summary.get("format_version") != STORE_FORMAT_VERSION:
        raise ValueError(
            f"{path}: store format {summary.get('format_version')}, this code reads "
            f"{STORE_FORMAT_VERSION}; prepare it again"
        )
    values = np.load(path / LANDMARKS_FILE, mmap_mode="r" if mmap else None)
    row_splits = np.load(path / ROW_SPLITS_FILE)
    manifest = pd.read_parquet(path / MANIFEST_FILE)
    signs = json.loads((path / SIGNS_FILE).read_text())
    if values.dtype != np.float32 or values.shape[1:] != (lm.NUM_POINTS, 3):
        raise ValueError(f"{path}: landmarks must be float32 [F, 100, 3], got {values.dtype} {values.shape}")
    if (
        row_splits.ndim != 1
        or row_splits[0] != 0
        or row_splits[-1] != len(values)
        or np.any(np.diff(row_splits) < 1)
    ):
        raise ValueError(f"{path}: row_splits do not match landmarks.npy")
    if len(manifest) != len(row_splits) - 1 or list(manifest.columns) != list(MANIFEST_COLUMNS):
        raise ValueError(f"{path}: manifest does not match row_splits")
    return PreparedStore(path, values, row_splits.astype(np.int64), manifest, signs, summary)
