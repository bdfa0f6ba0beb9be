"""Kaggle layout reader: valid files, every kind of bad file, train.csv and the sign map."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfislr.data import kaggle, synthetic
from tfislr.data.kaggle import LandmarkFileError
from tfislr.errors import DataWarning


def _frames(num_frames=3, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.uniform(0, 1, (num_frames, 543, 3))
    frames[:, 468:489] = np.nan  # left hand missing
    if num_frames > 1:
        frames[1, :468] = np.nan  # face missing in one frame
    return frames


def _write(path, table):
    pq.write_table(table, path)
    return path


def _replace(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


@pytest.fixture
def valid(tmp_path):
    frames = _frames()
    return _write(tmp_path / "ok.parquet", synthetic.frames_to_table(frames, first_frame=17)), frames


def test_reads_a_valid_file(valid):
    path, frames = valid
    out, ids = kaggle.read_landmark_file(path, return_frame_ids=True)
    assert out.dtype == np.float32 and out.shape == (3, 543, 3)
    np.testing.assert_array_equal(out, frames.astype(np.float32))  # NaN positions included
    np.testing.assert_array_equal(ids, [17, 18, 19])


def test_matches_the_plain_pandas_reshape(valid):
    path, _ = valid
    reference = pd.read_parquet(path)[["x", "y", "z"]].to_numpy().reshape(-1, 543, 3)
    np.testing.assert_array_equal(kaggle.read_landmark_file(path), reference.astype(np.float32))


def _pose_first(t):
    """Each frame as some MediaPipe tools write it: pose, face, left hand, right hand."""
    parts = [(489, 522), (0, 468), (468, 489), (522, 543)]
    order = np.concatenate([np.arange(f * 543 + a, f * 543 + b)
                            for f in range(t.num_rows // 543) for a, b in parts])
    return t.take(pa.array(order))


def _shuffled(t):
    return t.take(pa.array(np.random.default_rng(3).permutation(t.num_rows)))


def _frames_reversed(t):
    order = np.concatenate([np.arange(f * 543, (f + 1) * 543)
                            for f in reversed(range(t.num_rows // 543))])
    return t.take(pa.array(order))


@pytest.mark.parametrize("reorder", [_pose_first, _shuffled, _frames_reversed])
@pytest.mark.parametrize("batch_rows", [None, 100])
def test_rows_are_read_by_what_they_name_in_any_order(tmp_path, valid, reorder, batch_rows,
                                                      monkeypatch):
    """Another extractor's row order (or none) reads as the competition's: each row is put
    where its frame, type and landmark_index say; so too across reading batches."""
    if batch_rows is not None:
        monkeypatch.setattr(kaggle, "READ_BATCH_ROWS", batch_rows)
    path, frames = valid
    other = _write(tmp_path / "other.parquet", reorder(pq.read_table(path)))
    out, ids = kaggle.read_landmark_file(other, return_frame_ids=True)
    np.testing.assert_array_equal(out, frames.astype(np.float32))
    np.testing.assert_array_equal(ids, [17, 18, 19])


def test_a_landmark_named_twice_in_different_batches_is_refused(tmp_path, valid, monkeypatch):
    monkeypatch.setattr(kaggle, "READ_BATCH_ROWS", 543)
    path, _ = valid
    table = pq.read_table(path)
    bad = _write(tmp_path / "bad.parquet", pa.concat_tables([table, table.slice(600, 1)]))
    with pytest.raises(LandmarkFileError, match=r"row 1629: frame 18, face landmark_index 57 "
                                                "is named twice"):
        kaggle.read_landmark_file(bad)


def test_empty_file_with_the_right_schema_gives_zero_frames(tmp_path):
    path = _write(tmp_path / "empty.parquet", synthetic.frames_to_table(np.zeros((0, 543, 3))))
    out = kaggle.read_landmark_file(path)
    assert out.shape == (0, 543, 3) and out.dtype == np.float32


def test_accepts_other_integer_float_and_string_encodings(tmp_path, valid):
    path, frames = valid
    table = pq.read_table(path)
    table = _replace(table, "frame", table.column("frame").cast(pa.int64()))
    table = _replace(table, "landmark_index", table.column("landmark_index").cast(pa.int32()))
    table = _replace(table, "type", table.column("type").cast(pa.large_string()))
    for c in "xyz":
        table = _replace(table, c, table.column(c).cast(pa.float32()))
    table = table.drop_columns(["row_id"])  # row_id is not needed
    out = kaggle.read_landmark_file(_write(tmp_path / "other.parquet", table))
    np.testing.assert_array_equal(out, frames.astype(np.float32))
    # NaN written as a float value (not a null) reads the same.
    table = pq.read_table(path)
    x = table.column("x").to_numpy()  # nulls → NaN
    table = _replace(table, "x", pa.array(x, from_pandas=False))
    assert table.column("x").null_count == 0
    out = kaggle.read_landmark_file(_write(tmp_path / "nan.parquet", table))
    np.testing.assert_array_equal(out, frames.astype(np.float32))


# Every Arrow type another writer may give each column (issue 9.3): pandas, Polars (>= 1.38
# writes string_view), DuckDB, Arrow itself; dictionary encoding of any of them.
_WRITER_TYPES = [
    ("type", pa.string()), ("type", pa.large_string()), ("type", pa.string_view()),
    ("type", pa.dictionary(pa.int8(), pa.string())),
    ("type", pa.dictionary(pa.int32(), pa.large_string())),
    *[("frame", t) for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
                             pa.uint16(), pa.uint32(), pa.uint64(), pa.float16(), pa.float32(),
                             pa.float64())],
    # int8/uint8 cannot hold landmark_index 467 (the face has 468 points).
    *[("landmark_index", t) for t in (pa.int16(), pa.int32(), pa.int64(), pa.uint16(),
                                      pa.uint32(), pa.uint64(), pa.float16(), pa.float32(),
                                      pa.float64())],
    *[("xyz", t) for t in (pa.float16(), pa.float32(), pa.float64())],
]


@pytest.mark.parametrize("column,data_type", _WRITER_TYPES,
                         ids=[f"{c}-{t}" for c, t in _WRITER_TYPES])
def test_accepts_every_type_other_writers_use(tmp_path, valid, column, data_type):
    path, frames = valid
    table = pq.read_table(path)
    for name in ("x", "y", "z") if column == "xyz" else (column,):
        table = _replace(table, name, table.column(name).cast(data_type))
    written = _write(tmp_path / "other.parquet", table)
    stored = pq.ParquetFile(written).schema_arrow.field(column[0] if column == "xyz" else column)
    # What the file holds is the type under test (a dictionary's values read back as string).
    assert stored.type == data_type or (pa.types.is_dictionary(stored.type)
                                        and pa.types.is_dictionary(data_type))
    out, ids = kaggle.read_landmark_file(written, return_frame_ids=True)
    expected = frames.astype(np.float16 if data_type == pa.float16() and column == "xyz"
                             else np.float32)
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    np.testing.assert_array_equal(ids, [17, 18, 19])


def test_normalization_decodes_dictionaries_parquet_cannot_store(valid):
    """Arrow tables (not files) may hold dictionaries of string_view or of integers."""
    path, _ = valid
    table = pq.read_table(path)
    frame = table.column("frame").to_numpy()
    table = _replace(table, "frame", pa.array(frame).dictionary_encode())
    table = _replace(table, "type", pa.DictionaryArray.from_arrays(
        table.column("type").combine_chunks().dictionary_encode().indices,
        pa.array(["face", "left_hand", "pose", "right_hand"], pa.string_view())))
    columns = kaggle._normalize_columns(path, table)
    np.testing.assert_array_equal(columns["frame"], frame)
    assert columns["frame"].dtype == np.int64
    assert columns["type"].dictionary.to_pylist() == ["face", "left_hand", "pose", "right_hand"]


def _bad_tables():
    """(name, function valid Table -> broken Table, expected message fragment)."""

    def drop(column):
        return lambda t: t.drop_columns([column])

    def retype(column, data_type):
        return lambda t: _replace(t, column, t.column(column).cast(data_type))

    def edit(column, fn):
        def apply(t):
            values = t.column(column).to_numpy(zero_copy_only=False).copy()
            fn(values)
            return _replace(t, column, pa.array(values, type=t.schema.field(column).type))

        return apply

    def duplicate_frame(t):
        block = t.slice(543, 543)
        return pa.concat_tables([t.slice(0, 1086), block])

    def split_frame(t):  # frame ids change inside a block: frame 18 loses a row to frame 19
        return edit("frame", lambda v: v.__setitem__(1085, 19))(t)

    def null_in(column):
        def apply(t):
            values = t.column(column).to_pylist()
            values[600] = None
            return _replace(t, column, pa.array(values, type=t.schema.field(column).type))

        return apply

    return [
        ("missing x", drop("x"), "missing column(s) x"),
        ("missing frame", drop("frame"), "missing column(s) frame"),
        ("missing type", drop("type"), "missing column(s) type"),
        ("string coordinates", retype("y", pa.string()), "column 'y' has type string, expected a float"),
        # Floats holding whole numbers are frame ids (see the test above); 17.5 is not.
        ("fractional frame", lambda t: _replace(t, "frame", pa.array(
            np.where(np.arange(t.num_rows) == 600, 17.5, t.column("frame").to_numpy()))),
         "column 'frame' holds 17.5 at row 600; its values must be whole numbers"),
        ("NaN landmark_index", lambda t: _replace(t, "landmark_index", pa.array(
            np.where(np.arange(t.num_rows) == 7, np.nan, t.column("landmark_index").to_numpy()),
            from_pandas=False)),
         "column 'landmark_index' holds nan at row 7; its values must be whole numbers"),
        ("string frame", retype("frame", pa.string()), "column 'frame' has type string, expected an integer"),
        ("integer coordinates", lambda t: _replace(t, "z", pa.array(np.zeros(t.num_rows, np.int64))),
         "column 'z' has type int64, expected a float"),
        ("binary type", retype("type", pa.binary()), "column 'type' has type binary, expected a string"),
        ("int type", lambda t: _replace(t, "type", pa.array(np.zeros(t.num_rows, np.int16))),
         "column 'type' has type int16, expected a string"),
        ("row missing", lambda t: t.slice(0, t.num_rows - 1),
         "frame 19 has no row for right_hand landmark_index 20 (1 landmark missing"),
        ("unknown type", edit("type", lambda v: v.__setitem__(5, "hand")),
         "row 5: unknown type 'hand' (expected one of face, left_hand, pose, right_hand)"),
        ("bad landmark index", edit("landmark_index", lambda v: v.__setitem__(543 + 470, 99)),
         "row 1013: landmark_index 99 is not one of left_hand's (0..20)"),
        ("duplicate frame", duplicate_frame,
         "row 1086: frame 18, face landmark_index 0 is named twice (duplicate rows)"),
        ("incomplete frame", split_frame,
         "row 1628: frame 19, right_hand landmark_index 20 is named twice"),
        ("null frame", null_in("frame"), "column 'frame' has null values"),
        ("null landmark_index", null_in("landmark_index"), "column 'landmark_index' has null values"),
    ]


@pytest.mark.parametrize("name,breaker,message", _bad_tables(), ids=[b[0] for b in _bad_tables()])
def test_bad_files_name_the_file_and_the_problem(tmp_path, valid, name, breaker, message):
    path, _ = valid
    bad = _write(tmp_path / "bad.parquet", breaker(pq.read_table(path)))
    with pytest.raises(LandmarkFileError) as error:
        kaggle.read_landmark_file(bad)
    assert message in str(error.value)
    assert str(bad) in str(error.value) and error.value.path == str(bad)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    "name,content",
    [
        ("zero bytes", b""),
        ("random bytes", np.random.default_rng(0).bytes(5000)),
        ("csv", b"frame,type,landmark_index,x,y,z\n0,face,0,0.1,0.2,0.3\n"),
    ],
)
def test_non_parquet_bytes(tmp_path, name, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(LandmarkFileError, match="not a readable parquet file") as error:
        kaggle.read_landmark_file(path)
    assert str(path) in str(error.value)


def test_truncated_and_corrupted_parquet(tmp_path, valid):
    path, _ = valid
    data = path.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(LandmarkFileError, match="not a readable parquet file"):
        kaggle.read_landmark_file(truncated)
    # Damage the page header of column x but keep the footer: the error comes when reading.
    column = pq.ParquetFile(path).metadata.row_group(0).column(4)
    assert column.path_in_schema == "x"
    damaged = bytearray(data)
    start = column.data_page_offset
    damaged[start : start + 64] = b"\xff" * 64
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(LandmarkFileError, match=str(corrupt)):
        kaggle.read_landmark_file(corrupt)


def test_missing_file(tmp_path):
    with pytest.raises(LandmarkFileError, match="file not found"):
        kaggle.read_landmark_file(tmp_path / "nope.parquet")


def test_infinite_and_huge_values_are_kept_for_preprocessing(tmp_path):
    frames = _frames(2)
    frames[0, 0, 0] = np.inf
    frames[0, 1, 0] = 1e300  # beyond float32
    out = kaggle.read_landmark_file(_write(tmp_path / "inf.parquet", synthetic.frames_to_table(frames)))
    assert out[0, 0, 0] == np.inf and out[0, 1, 0] == np.inf


# --------------------------------------------------------------------------- train.csv + map


@pytest.fixture
def layout(tmp_path, synthetic_data_dir):
    target = tmp_path / "layout"
    target.mkdir()
    for name in ("train.csv", "sign_to_prediction_index_map.json"):
        shutil.copy(synthetic_data_dir / name, target / name)
    return target


def test_read_train_csv(layout):
    table = kaggle.read_train_csv(layout)
    assert list(table.columns) == ["path", "participant_id", "sequence_id", "sign", "label"]
    assert table["participant_id"].dtype == np.int64 and table["label"].dtype == np.int64
    sign_map = kaggle.read_sign_map(layout)
    assert (table["label"] == table["sign"].map(sign_map)).all()
    raw = pd.read_csv(layout / "train.csv")
    assert table["sequence_id"].tolist() == raw["sequence_id"].tolist()  # file order kept


def test_read_train_csv_parses_each_content_once(layout, monkeypatch):
    """The same bytes and sign map are parsed once; each caller gets its own copy, and
    another sign map (or other bytes: tests/training/test_run.py) is parsed again."""
    monkeypatch.setattr(kaggle, "_PARSED", {})
    parsed = []
    parse = kaggle._parse_train_csv
    monkeypatch.setattr(kaggle, "_parse_train_csv", lambda *a: parsed.append(a[0]) or parse(*a))
    first = kaggle.read_train_csv(layout)
    sign = first.loc[0, "sign"]
    first.loc[0, "sign"] = "changed by the caller"
    assert kaggle.read_train_csv(layout).loc[0, "sign"] == sign
    assert parsed == [layout / "train.csv"]
    sign_map = kaggle.read_sign_map(layout)
    flipped = {name: len(sign_map) - 1 - label for name, label in sign_map.items()}
    table = kaggle.read_train_csv(layout, flipped)
    assert (table["label"] == table["sign"].map(flipped)).all() and len(parsed) == 2


def _edit_csv(layout, fn):
    table = pd.read_csv(layout / "train.csv", dtype=str)
    fn(table)
    table.to_csv(layout / "train.csv", index=False)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.drop(columns=["sign"], inplace=True), "missing column(s) sign"),
        (lambda t: t.loc.__setitem__((3, "sign"), "not_a_sign"),
         "line 5 (sequence_id {sid3}): sign 'not_a_sign' is not in sign_to_prediction_index_map.json"),
        (lambda t: t.loc.__setitem__((4, "sequence_id"), t.loc[2, "sequence_id"]), "line 6: duplicate sequence_id"),
        (lambda t: t.loc.__setitem__((1, "participant_id"), "abc"), "line 3: participant_id 'abc' is not an integer"),
        (lambda t: t.loc.__setitem__((0, "path"), ""), "line 2: empty path"),
    ],
)
def test_bad_train_csv_names_the_file_and_line(layout, edit, message):
    sid3 = pd.read_csv(layout / "train.csv")["sequence_id"][3]
    _edit_csv(layout, edit)
    with pytest.raises(ValueError) as error:
        kaggle.read_train_csv(layout)
    assert message.format(sid3=sid3) in str(error.value)
    assert "train.csv" in str(error.value)


def test_ids_unlike_the_kaggle_path_warn_with_file_line_and_count(layout):
    """Folds group by participant_id: one that differs from the path's folder would split
    a signer silently. Paths in another layout are not the tool's to judge."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        kaggle.read_train_csv(layout)  # the synthetic set's ids match its paths
    original = pd.read_csv(layout / "train.csv", dtype=str)
    path3 = original.loc[3, "path"]
    _edit_csv(layout, lambda t: t.loc.__setitem__(([3, 5], "participant_id"), "99999"))
    with pytest.warns(DataWarning) as caught:
        kaggle.read_train_csv(layout)
    (warning,) = caught
    assert str(warning.message).startswith(
        f"{layout / 'train.csv'} line 5: participant_id 99999 differs from the one in its "
        f"path {path3} (2 rows like this)")

    def other_layout(table):
        table.loc[3, "path"] = "clips/any_name.parquet"
        table.loc[5, "path"] = original.loc[5, "path"].replace("train_landmark_files", "mine")

    _edit_csv(layout, other_layout)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        kaggle.read_train_csv(layout)
    _edit_csv(layout, lambda t: t.loc.__setitem__((0, "sequence_id"), "123"))
    with pytest.warns(DataWarning, match=r"line 2: sequence_id 123 differs .* \(1 row"):
        kaggle.read_train_csv(layout)


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"a": 0, "b": 2}', "labels must be 0..1"),
        ('{"a": 0, "b": 0}', "labels must be 0..1"),
        ('{"a": "0"}', "is not an integer"),
        ("[1, 2]", "expected a non-empty JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_sign_map(layout, content, message):
    (layout / "sign_to_prediction_index_map.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        kaggle.read_sign_map(layout)


def test_load_sign_map_names_the_file_and_the_problem(tmp_path):
    """One reader for every sign-map JSON (the data folder's, `tfislr-predict --signs`)."""
    from tfislr.errors import DataError, MissingFileError

    missing = tmp_path / "nope.json"
    with pytest.raises(MissingFileError, match=f"^{missing}: file not found$"):
        kaggle.load_sign_map(missing)
    path = tmp_path / "my_map.json"
    for content, problem in [(b"{not json", "not valid JSON"), (b"\xff\xfe{", "not valid JSON"),
                             (b'["b", "a"]', "expected a non-empty JSON object")]:
        path.write_bytes(content)
        with pytest.raises(DataError, match=f"^{path}: {problem}"):
            kaggle.load_sign_map(path)
    # A list of names in label order (a run's signs.json) only where the caller allows it.
    assert kaggle.load_sign_map(path, names_list=True) == {"b": 0, "a": 1}
    for content, problem in [('["c", "a", "b", "c", "a"]',
                              "sign names must be distinct; repeated: a, c$"),
                             ('["a", 1]', "expected a list of sign names")]:
        path.write_text(content)
        with pytest.raises(DataError, match=f"^{path}: {problem}"):
            kaggle.load_sign_map(path, names_list=True)


def test_missing_layout_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="sign map not found"):
        kaggle.read_sign_map(tmp_path)
    (tmp_path / "sign_to_prediction_index_map.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(FileNotFoundError, match="train.csv not found"):
        kaggle.read_train_csv(tmp_path)


# --------------------------------------------------------------------------- real sample


def test_every_real_file_validates(real_data_dir):
    table = kaggle.read_train_csv(real_data_dir)
    assert len(table) == 120 and set(table["sign"]) == {"hello", "thankyou"}
    assert len(kaggle.read_sign_map(real_data_dir)) == 250
    total = 0
    for k, path in enumerate(table["path"]):
        frames, ids = kaggle.read_landmark_file(real_data_dir / path, return_frame_ids=True)
        total += len(frames)
        np.testing.assert_array_equal(np.diff(ids), 1)  # contiguous in the real data
        if k % 20 == 0:
            reference = pd.read_parquet(real_data_dir / path)[["x", "y", "z"]].to_numpy()
            np.testing.assert_array_equal(frames, reference.reshape(-1, 543, 3).astype(np.float32))
    assert total == 2080


def test_sign_names_are_ordered_by_label(synthetic_data_dir):
    sign_map = kaggle.read_sign_map(synthetic_data_dir)
    names = kaggle.sign_names(sign_map)
    assert [sign_map[name] for name in names] == list(range(len(sign_map)))
    assert kaggle.sign_names({"b": 1, "a": 2, "c": 0}) == ["c", "b", "a"]
