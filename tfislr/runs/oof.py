"""Out-of-fold (OOF) predictions: one row per clip, predicted by the fold that held it out.

A cross-validation run (`tfislr.training.cross_validation`) writes them, `tfislr.blend`
averages several. The file is one parquet table, rows sorted by `sequence_id`:

    sequence_id     int64
    participant_id  int64
    fold            int64   the validation fold that predicted the clip
    label           int64   the true sign's index
    probabilities   fixed_size_list<float32>[num_signs]   softmax over all signs, by label

and two schema-metadata entries: `tfislr.signs` (JSON list of sign names, index = label) and
`tfislr.info` (JSON dict: config, model weights, where it came from). pandas reads it as is
(`probabilities` becomes a column of arrays); `read_oof` gives the matrix directly.

This module does not import TensorFlow.
"""

import dataclasses
import json
import pathlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tfislr import atomic
from tfislr.errors import DataError, MissingFileError

ID_COLUMNS = ("sequence_id", "participant_id", "fold", "label")
SIGNS_KEY = b"tfislr.signs"
INFO_KEY = b"tfislr.info"


@dataclasses.dataclass
class OutOfFold:
    """OOF predictions in memory.

    Attributes:
        table: DataFrame with `ID_COLUMNS` (int64), N rows sorted by sequence_id.
        probabilities: float32 `[N, num_signs]`, row i belongs to `table.iloc[i]`.
        signs: sign names, index = label.
        info: free-form provenance (config name, weights, run dirs, ...).
    """

    table: pd.DataFrame
    probabilities: np.ndarray
    signs: list
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        missing = [c for c in ID_COLUMNS if c not in self.table.columns]
        if missing:
            raise ValueError(f"OOF table lacks column(s) {', '.join(missing)}")
        probabilities = np.asarray(self.probabilities, np.float32)
        if probabilities.shape != (len(self.table), len(self.signs)):
            raise ValueError(
                f"OOF probabilities must be [{len(self.table)}, {len(self.signs)}] (clips × "
                f"signs), got {list(probabilities.shape)}"
            )
        if self.table["sequence_id"].duplicated().any():
            duplicate = self.table["sequence_id"][self.table["sequence_id"].duplicated()].iloc[0]
            raise ValueError(f"OOF predictions hold sequence_id {duplicate} more than once")
        order = np.argsort(self.table["sequence_id"].to_numpy(), kind="stable")
        self.table = self.table[list(ID_COLUMNS)].iloc[order].astype(np.int64).reset_index(drop=True)
        self.probabilities = probabilities[order]
        self.signs = list(self.signs)

    def __len__(self):
        return len(self.table)

    @property
    def predictions(self):
        """int64 `[N]`: the top-1 sign of every clip."""
        return np.argmax(self.probabilities, axis=1)

    def scores(self):
        """Accuracy per fold and overall; see `accuracy_by_fold`."""
        return accuracy_by_fold(self.table["label"].to_numpy(), self.predictions,
                                self.table["fold"].to_numpy())


def accuracy_by_fold(labels, predictions, folds):
    """Top-1 accuracy of every fold and of all clips together.

    Returns `{"folds": {fold: {"clips": n, "accuracy": a}}, "clips": N, "accuracy": A}`;
    A is the accuracy over all clips, i.e. the clip-weighted mean of the fold accuracies
    (what the original reports as CV), not the plain mean of the folds.
    """
    labels, predictions, folds = (np.asarray(a) for a in (labels, predictions, folds))
    if not labels.shape == predictions.shape == folds.shape or labels.ndim != 1:
        raise ValueError("labels, predictions and folds must be 1-D arrays of the same length")
    if len(labels) == 0:
        raise ValueError("no clips to score")
    correct = labels == predictions
    per_fold = {
        int(fold): {"clips": int((folds == fold).sum()), "accuracy": float(correct[folds == fold].mean())}
        for fold in np.unique(folds)
    }
    return {"folds": per_fold, "clips": int(len(labels)), "accuracy": float(correct.mean())}


def write_oof(oof, path):
    """Writes `oof` to `path` (parquet, atomically: a killed write leaves no partial file)."""
    path = pathlib.Path(path)
    num_signs = len(oof.signs)
    columns = {name: pa.array(oof.table[name].to_numpy(np.int64)) for name in ID_COLUMNS}
    columns["probabilities"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(oof.probabilities, np.float32).reshape(-1)), num_signs
    )
    table = pa.table(columns).replace_schema_metadata(
        {SIGNS_KEY: json.dumps(oof.signs), INFO_KEY: json.dumps(oof.info)}
    )
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_oof(path):
    """Reads a file written by `write_oof`; a DataError naming the file if it is not one."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: OOF file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path}: not a parquet file ({error})") from None
    metadata = table.schema.metadata or {}
    missing = [c for c in (*ID_COLUMNS, "probabilities") if c not in table.column_names]
    if missing or SIGNS_KEY not in metadata:
        raise DataError(
            f"{path}: not an OOF predictions file (missing "
            f"{', '.join(missing) or 'the sign list in its metadata'})"
        )
    signs = json.loads(metadata[SIGNS_KEY])
    probabilities = table.column("probabilities").combine_chunks().flatten().to_numpy()
    frame = pd.DataFrame({name: table.column(name).to_numpy() for name in ID_COLUMNS})
    try:
        return OutOfFold(
            frame, probabilities.reshape(len(frame), len(signs)), signs,
            json.loads(metadata.get(INFO_KEY, b"{}")),
        )
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None
