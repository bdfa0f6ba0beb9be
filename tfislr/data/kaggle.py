"""Reader and validator for the Kaggle `asl-signs` layout.

    <data_dir>/train.csv                           path,participant_id,sequence_id,sign
    <data_dir>/sign_to_prediction_index_map.json   {sign: label}
    <data_dir>/train_landmark_files/<pid>/<sid>.parquet

A landmark file holds one clip, 543 rows a frame in the order face (landmark_index
0..467) · left_hand (0..20) · pose (0..32) · right_hand (0..20), with columns
`frame` (int), `type` (string), `landmark_index` (int), `x`, `y`, `z` (float, null or NaN
where MediaPipe saw nothing). `read_landmark_file` turns it into float32 `[T, 543, 3]`
with NaN kept, after checking:

* the file is a readable parquet file;
* the columns `frame`, `type`, `landmark_index`, `x`, `y`, `z` exist, with the types any
  Arrow writer uses for them: integers of any width (or floats holding whole numbers) for
  `frame` and `landmark_index`; any string kind (string, large_string, string_view) for
  `type`; floats of any width for `x`, `y`, `z`; dictionary encoding of any of these.
  `frame`, `type` and `landmark_index` have no nulls;
* the row count is a multiple of 543 and every block of 543 rows is one frame: one frame
  id, the part order above, the landmark indices above;
* frame ids are unique and increasing (gaps are allowed: MediaPipe may drop frames).

`row_id` is neither read nor checked: it repeats `frame`, `type` and `landmark_index` and is
by far the most expensive column to decode. A file with the right schema and no rows is
valid and gives a `[0, 543, 3]` array (downstream, `Preprocess` defines what a 0-frame clip
becomes). Every problem raises `LandmarkFileError`, whose message names the file and what
is wrong.
"""

import hashlib
import io
import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tfislr import landmarks as lm
from tfislr.errors import DataError, DataWarning, MissingFileError

TRAIN_CSV = "train.csv"
SIGN_MAP_JSON = "sign_to_prediction_index_map.json"
TRAIN_CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
LANDMARK_COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")

_PART_SIZES = tuple(lm.PART_ROWS[p][1] - lm.PART_ROWS[p][0] for p in lm.PART_ORDER)
# The type code (index into PART_ORDER) and landmark_index of each of a frame's 543 rows.
_EXPECTED_TYPE = np.repeat(np.arange(len(lm.PART_ORDER), dtype=np.int8), _PART_SIZES)
_EXPECTED_INDEX = np.concatenate([np.arange(n) for n in _PART_SIZES]).astype(np.int64)
_ORDER_TEXT = ", ".join(f"{p}×{n}" for p, n in zip(lm.PART_ORDER, _PART_SIZES))


class LandmarkFileError(DataError):
    """A landmark parquet file that cannot be used.

    `.path` and `.reason` say which and why; `.kind` is a short category for summaries:
    "missing file", "unreadable", "schema", "row count", "frame ids", "layout" or "nulls".
    """

    def __init__(self, path, reason, kind="invalid"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason, self.kind))


def check_data_dir(data_dir):
    """`data_dir` as a Path if it is a folder holding `train.csv` (the Kaggle layout).

    Raises:
        MissingFileError: the folder or its `train.csv` does not exist.
    """
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise MissingFileError(f"{data_dir}: data folder not found (expected the Kaggle layout)")
    if not (data_dir / TRAIN_CSV).is_file():
        raise MissingFileError(
            f"{data_dir / TRAIN_CSV}: train.csv not found (expected the Kaggle layout)")
    return data_dir


def read_sign_map(data_dir):
    """A data folder's `sign_to_prediction_index_map.json` → `{sign: label}` (`load_sign_map`)."""
    if not pathlib.Path(data_dir).is_dir():
        raise MissingFileError(f"{data_dir}: data folder not found (expected the Kaggle layout)")
    path = pathlib.Path(data_dir) / SIGN_MAP_JSON
    if not path.exists():
        raise MissingFileError(f"{path}: sign map not found (expected the Kaggle layout)")
    return load_sign_map(path)


def load_sign_map(path, names_list=False):
    """A sign-map JSON file at `path` → `{sign: label}`, labels exactly 0..N-1.

    The file holds a JSON object `{sign: label}` (Kaggle's `sign_to_prediction_index_map.json`,
    under any name) or, only with `names_list=True`, a JSON list of distinct sign names in
    label order (a run folder's `signs.json`).

    Raises:
        MissingFileError: there is no file at `path`.
        DataError: the file is not valid JSON or not a sign map; the message names `path`
            and the problem.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")
    try:
        sign_map = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    if names_list and isinstance(sign_map, list) and sign_map:
        if not all(isinstance(name, str) for name in sign_map):
            raise DataError(f"{path}: expected a list of sign names (strings)")
        repeated = sorted({name for name in sign_map if sign_map.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: sign names must be distinct; repeated: {', '.join(repeated)}")
        return {name: label for label, name in enumerate(sign_map)}
    if not isinstance(sign_map, dict) or not sign_map:
        also = " or a list of sign names" if names_list else ""
        raise DataError(f"{path}: expected a non-empty JSON object {{sign: label}}{also}")
    bad = [k for k, v in sign_map.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise DataError(f"{path}: label of sign {bad[0]!r} is not an integer")
    labels = sorted(sign_map.values())
    if labels != list(range(len(labels))):
        raise DataError(f"{path}: labels must be 0..{len(labels) - 1}, each used once")
    return sign_map


def sign_names(sign_map):
    """`{sign: label}` (as `read_sign_map` returns it) → sign names by label."""
    return sorted(sign_map, key=sign_map.get)


# The last table `read_train_csv` parsed, by the sha256 of train.csv's bytes and the sign
# map: train and CV start-up each read train.csv in several places (the store's
# fingerprint, preparation, the folds, every fold's split), and parsing and checking the
# full set's 94,477 rows costs far more than hashing its bytes.
_PARSED = {}


def read_train_csv(data_dir, sign_map=None):
    """`train.csv` → DataFrame (path, participant_id, sequence_id, sign, label), file order.

    Parsed once per content: the same bytes and sign map give a copy of the table parsed
    before (`_PARSED`), so no caller needs to hand the table along.

    Raises `DataError` (a ValueError) naming train.csv: an empty file, a header without
    rows, and, with the offending line, missing columns, empty cells, non-integer ids,
    duplicate sequence ids and signs absent from the sign map; `MissingFileError` (also a
    FileNotFoundError) when a file is missing. Warns (`DataWarning`) when ids differ from
    those of a Kaggle-layout path (`_warn_ids_unlike_paths`).
    """
    data_dir = check_data_dir(data_dir)
    path = data_dir / TRAIN_CSV
    if sign_map is None:
        sign_map = read_sign_map(data_dir)
    data = path.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), json.dumps(sign_map, sort_keys=True))
    if _PARSED.get("key") != key:
        _PARSED.clear()
        _PARSED.update(table=_parse_train_csv(path, data, sign_map), key=key)
    return _PARSED["table"].copy()


def _parse_train_csv(path, data, sign_map):
    """`read_train_csv`'s parsing and checks of the bytes `data` of the file `path`."""
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # 0 bytes, or only blank lines: not even a header
        raise DataError(f"{path}: empty file") from None
    missing = [c for c in TRAIN_CSV_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected {','.join(TRAIN_CSV_COLUMNS)}"
        )
    if table.empty:  # a header alone: nothing to prepare, no signer to make folds of
        raise DataError(f"{path} lists no clips")
    table = table[list(TRAIN_CSV_COLUMNS)].copy()

    def where(row):  # line numbers as an editor shows them (line 1 is the header)
        return f"{path} line {row + 2}"

    for column in TRAIN_CSV_COLUMNS:
        empty = np.flatnonzero(table[column].str.strip().to_numpy() == "")
        if len(empty):
            raise DataError(f"{where(empty[0])}: empty {column}")
    for column in ("participant_id", "sequence_id"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(numbers.isna().to_numpy() | (numbers % 1 != 0).to_numpy())
        if len(bad):
            raise DataError(
                f"{where(bad[0])}: {column} {table[column].iloc[bad[0]]!r} is not an integer"
            )
        table[column] = numbers.astype(np.int64)
    duplicated = np.flatnonzero(table["sequence_id"].duplicated().to_numpy())
    if len(duplicated):
        row = duplicated[0]
        raise DataError(f"{where(row)}: duplicate sequence_id {table['sequence_id'].iloc[row]}")
    unknown = np.flatnonzero(~table["sign"].isin(sign_map.keys()).to_numpy())
    if len(unknown):
        row = unknown[0]
        raise DataError(
            f"{where(row)} (sequence_id {table['sequence_id'].iloc[row]}): sign "
            f"{table['sign'].iloc[row]!r} is not in {SIGN_MAP_JSON} "
            f"({len(unknown)} row(s) with unknown signs)"
        )
    table["label"] = table["sign"].map(sign_map).astype(np.int64)
    _warn_ids_unlike_paths(table, where)
    return table.reset_index(drop=True)


# A `path` in the Kaggle layout, whose folder and file name repeat the row's ids.
_KAGGLE_PATH = r"(?:^|[/\\])train_landmark_files[/\\](\d+)[/\\](\d+)\.parquet$"


def _warn_ids_unlike_paths(table, where):
    """Warns (`DataWarning`) when a row's participant_id or sequence_id differs from the one
    its Kaggle-layout `path` (`train_landmark_files/<pid>/<sid>.parquet`) names.

    A warning, not an error: the row is readable and the tool cannot know which of the two
    is right (a user may have regrouped signers on purpose). But folds group clips by
    `participant_id`, so a wrong id silently puts a signer on both sides of the
    validation split. Paths in another layout are not checked.
    """
    in_path = table["path"].str.extract(_KAGGLE_PATH)
    for k, column in enumerate(("participant_id", "sequence_id")):
        named = pd.to_numeric(in_path[k], errors="coerce").to_numpy()
        differ = np.flatnonzero(~np.isnan(named) & (named != table[column].to_numpy()))
        if len(differ):
            row = differ[0]
            warnings.warn(
                f"{where(row)}: {column} {table[column].iloc[row]} differs from the one in "
                f"its path {table['path'].iloc[row]} ({len(differ)} row(s) like this); "
                f"folds group clips by participant_id, so fix train.csv if the path is right",
                DataWarning, stacklevel=2,
            )


# Which Arrow types each column may have. Writers differ (pandas, Polars, DuckDB, Arrow
# itself): a dictionary-encoded column is judged by its value type; `type` may be any
# string kind (Polars >= 1.38 writes string_view); `frame` and `landmark_index` may be
# floats holding whole numbers (pandas after a NaN-aware concat), checked value by value
# in `_normalize_columns`.
def _value_type(data_type):
    return data_type.value_type if pa.types.is_dictionary(data_type) else data_type


def _is_string_like(data_type):
    data_type = _value_type(data_type)
    return (pa.types.is_string(data_type) or pa.types.is_large_string(data_type)
            or pa.types.is_string_view(data_type))


def _is_number(data_type):
    data_type = _value_type(data_type)
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type)


def _is_float(data_type):
    return pa.types.is_floating(_value_type(data_type))


_TYPE_CHECKS = {
    "frame": (_is_number, "an integer"),
    "landmark_index": (_is_number, "an integer"),
    "type": (_is_string_like, "a string"),
    "x": (_is_float, "a float"),
    "y": (_is_float, "a float"),
    "z": (_is_float, "a float"),
}
_INTEGER_COLUMNS = ("frame", "landmark_index")


def _check_schema(path, schema):
    missing = [c for c in LANDMARK_COLUMNS if c not in schema.names]
    if missing:
        raise LandmarkFileError(
            path,
            f"missing column(s) {', '.join(missing)}; expected {', '.join(LANDMARK_COLUMNS)}",
            "schema",
        )
    for column, (check, expected) in _TYPE_CHECKS.items():
        data_type = schema.field(column).type
        if not check(data_type):
            raise LandmarkFileError(
                path, f"column '{column}' has type {data_type}, expected {expected} type", "schema"
            )


def _decoded(column):
    """A chunked column with any dictionary encoding undone."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _normalize_columns(path, table):
    """The columns of a schema-checked table in one representation, whatever wrote them.

    Returns `{"frame", "landmark_index"}`: int64 arrays; `"type"`: a `pa.DictionaryArray`
    of strings; `{"x", "y", "z"}`: float arrays with NaN for nulls. Raises
    `LandmarkFileError` for nulls in `frame`, `type` or `landmark_index` and for values of
    a float `frame`/`landmark_index` column that are not whole numbers.
    """
    for column in ("frame", "type", "landmark_index"):
        if table.column(column).null_count:
            raise LandmarkFileError(path, f"column '{column}' has null values", "nulls")
    columns = {}
    for column in _INTEGER_COLUMNS:
        values = _decoded(table.column(column)).to_numpy()
        if values.dtype.kind == "f":
            values = values.astype(np.float64, copy=False)
            with np.errstate(invalid="ignore"):
                whole = np.isfinite(values) & (np.abs(values) < 2**53) & (values == np.round(values))
            if not whole.all():
                row = int(np.flatnonzero(~whole)[0])
                raise LandmarkFileError(
                    path, f"column '{column}' holds {values[row].item()!r} at row {row}; its "
                    "values must be whole numbers", "schema",
                )
        columns[column] = values.astype(np.int64, copy=False)
    types = table.column("type").combine_chunks()
    if not pa.types.is_dictionary(types.type):
        types = pc.dictionary_encode(types)
    columns["type"] = types
    for column in "xyz":
        # Nulls come out as NaN, as they would from pandas.
        columns[column] = _decoded(table.column(column)).to_numpy()
    return columns


def _frame_ids(path, frame, num_frames):
    blocks = frame.reshape(num_frames, lm.NUM_RAW_LANDMARKS)
    ids = blocks[:, 0]
    inconsistent = np.flatnonzero((blocks != ids[:, None]).any(axis=1))
    if len(inconsistent):
        values, counts = np.unique(frame, return_counts=True)
        wrong = np.flatnonzero(counts != lm.NUM_RAW_LANDMARKS)
        if len(wrong):
            detail = f"frame {values[wrong[0]]} has {counts[wrong[0]]} rows"
        else:
            detail = f"the rows of frame {ids[inconsistent[0]]} are not contiguous"
        raise LandmarkFileError(
            path, f"every frame must be {lm.NUM_RAW_LANDMARKS} consecutive rows; {detail}",
            "frame ids",
        )
    steps = np.diff(ids)
    if np.any(steps <= 0):
        values, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            raise LandmarkFileError(
                path, f"duplicate frame: frame id {values[np.argmax(counts > 1)]} occurs "
                f"{counts.max()} times", "frame ids",
            )
        at = int(np.flatnonzero(steps <= 0)[0])
        raise LandmarkFileError(
            path, f"frame ids must increase: frame {ids[at + 1]} follows frame {ids[at]}",
            "frame ids",
        )
    return ids


def open_landmark_file(path):
    """The `pq.ParquetFile` of a landmark file whose schema passed the checks (`type` read
    as a dictionary), for reading it whole (`read_landmark_file`) or in batches of frames
    (`landmark_table_frames` on each; `tfislr.stream.sources`).

    Raises `LandmarkFileError`: the file is missing, unreadable or has a wrong schema.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise LandmarkFileError(path, "file not found", "missing file")
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (pa.ArrowException, OSError) as error:
        raise LandmarkFileError(
            path, f"not a readable parquet file ({error})", "unreadable"
        ) from None
    _check_schema(path, schema)
    try:
        # `type` as a dictionary: 4 distinct strings, checked through their codes.
        return pq.ParquetFile(path, read_dictionary=["type"])
    except (pa.ArrowException, OSError) as error:
        raise LandmarkFileError(path, f"corrupt parquet data ({error})", "unreadable") from None


def read_landmark_file(path, return_frame_ids=False):
    """One Kaggle landmark parquet file → float32 `[T, 543, 3]` (NaN where missing).

    With `return_frame_ids=True` also returns the int64 `[T]` frame ids. Raises
    `LandmarkFileError` (a `tfislr.errors.DataError`, so a ValueError) naming the file and
    the problem; see the module docstring for what is checked.
    """
    parquet = open_landmark_file(path)
    try:
        table = parquet.read(columns=list(LANDMARK_COLUMNS), use_threads=False)
    except (pa.ArrowException, OSError) as error:
        raise LandmarkFileError(path, f"corrupt parquet data ({error})", "unreadable") from None
    frames, frame_ids = landmark_table_frames(path, table)
    return (frames, frame_ids) if return_frame_ids else frames


def landmark_table_frames(path, table):
    """A table of whole frames of the landmark file `path` (its `LANDMARK_COLUMNS`) →
    (float32 `[T, 543, 3]`, int64 `[T]` frame ids), checked as the module docstring says.

    Raises `LandmarkFileError` naming `path`.
    """
    num_rows = table.num_rows
    if num_rows % lm.NUM_RAW_LANDMARKS:
        raise LandmarkFileError(
            path,
            f"{num_rows} rows is not a multiple of {lm.NUM_RAW_LANDMARKS} "
            f"(one frame = {lm.NUM_RAW_LANDMARKS} rows: {_ORDER_TEXT})",
            "row count",
        )
    num_frames = num_rows // lm.NUM_RAW_LANDMARKS
    if num_frames == 0:
        return np.zeros((0, lm.NUM_RAW_LANDMARKS, 3), np.float32), np.zeros(0, np.int64)
    columns = _normalize_columns(path, table)
    frame_ids = _frame_ids(path, columns["frame"], num_frames)

    types = columns["type"]
    part_code = {name: code for code, name in enumerate(lm.PART_ORDER)}
    lookup = np.array([part_code.get(v, -1) for v in types.dictionary.to_pylist()], np.int8)
    codes = lookup[types.indices.to_numpy()].reshape(num_frames, lm.NUM_RAW_LANDMARKS)
    bad = np.argwhere(codes != _EXPECTED_TYPE)
    if len(bad):
        f, r = bad[0]
        found = types.dictionary[types.indices[f * lm.NUM_RAW_LANDMARKS + r].as_py()].as_py()
        raise LandmarkFileError(
            path,
            f"frame {frame_ids[f]}, row {r}: type {found!r}, expected "
            f"{lm.PART_ORDER[_EXPECTED_TYPE[r]]!r} (each frame must be {_ORDER_TEXT})",
            "layout",
        )
    index = columns["landmark_index"].reshape(num_frames, lm.NUM_RAW_LANDMARKS)
    bad = np.argwhere(index != _EXPECTED_INDEX)
    if len(bad):
        f, r = bad[0]
        raise LandmarkFileError(
            path,
            f"frame {frame_ids[f]}, row {r} ({lm.PART_ORDER[_EXPECTED_TYPE[r]]}): "
            f"landmark_index {index[f, r]}, expected {_EXPECTED_INDEX[r]}",
            "layout",
        )
    frames = np.empty((num_rows, 3), np.float32)
    with np.errstate(over="ignore"):  # |v| > 3.4e38 becomes ±inf, which Preprocess drops
        for k, column in enumerate("xyz"):
            frames[:, k] = columns[column]  # any float width → float32, like the Kaggle loader
    return frames.reshape(num_frames, lm.NUM_RAW_LANDMARKS, 3), frame_ids


def landmark_path(data_dir, relative_path):
    """Absolute path of a train.csv `path` entry."""
    return pathlib.Path(data_dir) / relative_path
