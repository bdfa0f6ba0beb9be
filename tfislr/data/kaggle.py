"""Reader and validator for the Kaggle `asl-signs` layout.

    <data_dir>/train.csv                           path,participant_id,sequence_id,sign
    <data_dir>/sign_to_prediction_index_map.json   {sign: label}
    <data_dir>/train_landmark_files/<pid>/<sid>.parquet

A landmark file holds one clip, 543 rows a frame, in the competition's files in the
order face (landmark_index 0..467) · left_hand (0..20) · pose (0..32) · right_hand (0..20),
with columns
`frame` (int), `type` (string), `landmark_index` (int), `x`, `y`, `z` (float, null or NaN
where MediaPipe saw nothing). `read_landmark_file` turns it into float32 `[T, 543, 3]`
with NaN kept, after checking:

* the file is a readable parquet file;
* the columns `frame`, `type`, `landmark_index`, `x`, `y`, `z` exist, with the types any
  Arrow writer uses for them: integers of any width (or floats holding whole numbers) for
  `frame` and `landmark_index`; any string kind (string, large_string, string_view) for
  `type`; floats of any width for `x`, `y`, `z`; dictionary encoding of any of these.
  `frame`, `type` and `landmark_index` have no nulls;
* every row names a known landmark (`type` one of the four parts, `landmark_index` within
  it), and each frame id names each of the 543 landmarks exactly once. Rows are placed by
  what they name, in any order (other extractors write pose, face, hands per frame, or no
  order at all); frames come out by increasing frame id (gaps are allowed: MediaPipe may
  drop frames).

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
from tfislr.text import plural

TRAIN_CSV = "train.csv"
SIGN_MAP_JSON = "sign_to_prediction_index_map.json"
TRAIN_CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
LANDMARK_COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")

_PART_SIZES = tuple(lm.PART_ROWS[p][1] - lm.PART_ROWS[p][0] for p in lm.PART_ORDER)
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
            f"({plural(len(unknown), 'row')} with unknown signs)"
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
                f"its path {table['path'].iloc[row]} ({plural(len(differ), 'row')} like this); "
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


def _normalize_columns(path, table, first_row=0):
    """The columns of a schema-checked table in one representation, whatever wrote them.

    Returns `{"frame", "landmark_index"}`: int64 arrays; `"type"`: a `pa.DictionaryArray`
    of strings; `{"x", "y", "z"}`: float arrays with NaN for nulls. Raises
    `LandmarkFileError` for nulls in `frame`, `type` or `landmark_index` and for values of
    a float `frame`/`landmark_index` column that are not whole numbers (rows numbered from
    `first_row`: the table may be one batch of a file).
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
                    path, f"column '{column}' holds {values[row].item()!r} at row "
                    f"{first_row + row}; its "
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


# Rows read at a time: a clip's memory is its [T, 543, 3] result plus one such batch,
# however long the clip (a 40,000-frame file is 21.7 million rows).
READ_BATCH_ROWS = 543 * 256
_PART_START = np.array([lm.PART_ROWS[p][0] for p in lm.PART_ORDER], np.int64)
_PART_SIZE = np.array(_PART_SIZES, np.int64)


def _frame_id_list(parquet):
    """The sorted unique frame ids of a schema-checked file, read a batch at a time."""
    ids = [np.unique(_decoded(batch.column(0)).to_numpy(zero_copy_only=False))
           for batch in parquet.iter_batches(READ_BATCH_ROWS, columns=["frame"],
                                             use_threads=False)]
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0)


def _slots(path, columns, first_row):
    """Each row's place in its frame (0..542), from the landmark it names: its `type`'s
    rows in a raw frame (`lm.PART_ROWS`) plus its `landmark_index`. Raises
    `LandmarkFileError` (file and row) for an unknown type or an index outside its part."""
    types = columns["type"]
    part_code = {name: code for code, name in enumerate(lm.PART_ORDER)}
    lookup = np.array([part_code.get(v, -1) for v in types.dictionary.to_pylist()], np.int64)
    codes = lookup[types.indices.to_numpy(zero_copy_only=False)]
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        row = int(unknown[0])
        raise LandmarkFileError(
            path, f"row {first_row + row}: unknown type {types[row].as_py()!r} (expected one "
            f"of {', '.join(lm.PART_ORDER)})", "layout")
    index = columns["landmark_index"]
    outside = np.flatnonzero((index < 0) | (index >= _PART_SIZE[codes]))
    if len(outside):
        row = int(outside[0])
        part = lm.PART_ORDER[codes[row]]
        raise LandmarkFileError(
            path, f"row {first_row + row}: landmark_index {index[row]} is not one of {part}'s "
            f"(0..{_PART_SIZE[codes[row]] - 1})", "layout")
    return _PART_START[codes] + index


def _landmark_name(slot):
    """`(part, landmark_index)` of a raw frame's row `slot`."""
    code = int(np.searchsorted(_PART_START, slot, side="right") - 1)
    return lm.PART_ORDER[code], int(slot - _PART_START[code])


def open_landmark_file(path):
    """The `pq.ParquetFile` of a landmark file whose schema passed the checks (`type` read
    as a dictionary), to read whole (`read_landmark_file`) or a batch of frames at a time
    (`landmark_table_frames`; `tfislr.stream.sources`).

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

    Rows are placed by what they name (`frame`, `type`, `landmark_index`), in any order:
    the competition's (face, left hand, pose, right hand per frame) or another extractor's.
    Frames come out by increasing frame id. The file is read `READ_BATCH_ROWS` rows at a
    time, so a long clip needs little memory beyond its result.

    With `return_frame_ids=True` also returns the int64 `[T]` frame ids. Raises
    `LandmarkFileError` (a `tfislr.errors.DataError`, so a ValueError) naming the file and
    the problem, with the row for a landmark named twice or unknown and the frame for one
    that is missing; see the module docstring for what else is checked.
    """
    path = pathlib.Path(path)
    parquet = open_landmark_file(path)
    try:
        if parquet.metadata.num_rows == 0:
            empty = np.zeros((0, lm.NUM_RAW_LANDMARKS, 3), np.float32)
            return (empty, np.zeros(0, np.int64)) if return_frame_ids else empty
        frame_ids = _frame_id_list(parquet)
        batches = parquet.iter_batches(READ_BATCH_ROWS, columns=list(LANDMARK_COLUMNS),
                                       use_threads=False)
        frames = _place_rows(path, batches, frame_ids)
    except (pa.ArrowException, OSError) as error:
        raise LandmarkFileError(path, f"corrupt parquet data ({error})", "unreadable") from None
    return (frames, frame_ids.astype(np.int64)) if return_frame_ids else frames


def landmark_table_frames(path, table):
    """A table of whole frames of the landmark file `path` (its `LANDMARK_COLUMNS`, each
    frame's 543 rows in any order) → (float32 `[T, 543, 3]`, int64 `[T]` frame ids by
    increasing id), checked as `read_landmark_file` checks a whole file.

    Raises `LandmarkFileError` naming `path` (rows counted from the table's first).
    """
    if table.num_rows == 0:
        return np.zeros((0, lm.NUM_RAW_LANDMARKS, 3), np.float32), np.zeros(0, np.int64)
    frame_ids = np.unique(_decoded(table.column("frame")).to_numpy(zero_copy_only=False))
    frames = _place_rows(path, table.to_batches(), frame_ids)
    return frames, frame_ids.astype(np.int64)


def _place_rows(path, batches, frame_ids):
    """float32 `[len(frame_ids), 543, 3]` from record batches of landmark rows: every row put
    where it names, each place once (`LandmarkFileError` otherwise)."""
    num_frames = len(frame_ids)
    frames = np.full((num_frames * lm.NUM_RAW_LANDMARKS, 3), np.nan, np.float32)
    seen = np.zeros(num_frames * lm.NUM_RAW_LANDMARKS, bool)
    first_row = 0
    for batch in batches:
        columns = _normalize_columns(path, pa.Table.from_batches([batch]), first_row)
        flat = (np.searchsorted(frame_ids, columns["frame"]) * lm.NUM_RAW_LANDMARKS
                + _slots(path, columns, first_row))
        # A place named twice: within this batch, or by an earlier one.
        order = np.argsort(flat, kind="stable")
        twice = np.flatnonzero(np.diff(flat[order]) == 0)
        again = np.flatnonzero(seen[flat])
        if len(twice) or len(again):
            rows = [int(order[twice[0] + 1])] if len(twice) else []
            row = min(rows + ([int(again[0])] if len(again) else []))
            part, index = _landmark_name(flat[row] % lm.NUM_RAW_LANDMARKS)
            raise LandmarkFileError(
                path, f"row {first_row + row}: frame {columns['frame'][row]}, {part} "
                f"landmark_index {index} is named twice (duplicate rows)", "layout")
        seen[flat] = True
        with np.errstate(over="ignore"):  # |v| > 3.4e38 becomes ±inf, which Preprocess drops
            for k, column in enumerate("xyz"):
                frames[flat, k] = columns[column]  # any float width → float32, as Kaggle's loader
        first_row += batch.num_rows
    missing = np.flatnonzero(~seen)
    if len(missing):
        frame, slot = divmod(int(missing[0]), lm.NUM_RAW_LANDMARKS)
        part, index = _landmark_name(slot)
        raise LandmarkFileError(
            path, f"frame {frame_ids[frame]} has no row for {part} landmark_index {index} "
            f"({plural(len(missing), 'landmark')} missing; each frame names all "
            f"{lm.NUM_RAW_LANDMARKS}: {_ORDER_TEXT})", "layout")
    return frames.reshape(num_frames, lm.NUM_RAW_LANDMARKS, 3)


def landmark_path(data_dir, relative_path):
    """Absolute path of a train.csv `path` entry."""
    return pathlib.Path(data_dir) / relative_path
