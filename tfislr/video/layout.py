"""`[T, 543, 3]` landmark frames → one parquet file exactly like the competition's.

The reader is `tfislr.data.kaggle.read_landmark_file`; this is its writer for extracted
videos. Checked against the competition's files (the real sample, written by pyarrow 8):

| column           | type    | value                                                   |
| ---------------- | ------- | ------------------------------------------------------- |
| `frame`          | int16   | the video frame number, the same for a frame's 543 rows |
| `row_id`         | string  | `<frame>-<type>-<landmark_index>`, e.g. `19-face-0`      |
| `type`           | string  | `face`, `left_hand`, `pose`, `right_hand`              |
| `landmark_index` | int16   | 0..467, 0..20, 0..32, 0..20 in that part order          |
| `x`, `y`, `z`    | float64 | null where the part was not detected (pandas reads NaN) |

Imports numpy and pyarrow only: it runs in the extraction environment too.
"""

import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tfislr import atomic
from tfislr import landmarks as lm

_SIZES = [lm.PART_ROWS[p][1] - lm.PART_ROWS[p][0] for p in lm.PART_ORDER]
ROW_TYPES = np.repeat(np.array(lm.PART_ORDER), _SIZES)
ROW_INDICES = np.concatenate([np.arange(n) for n in _SIZES])
# What follows `<frame>` in each of a frame's 543 row ids: "-face-0", ..., "-right_hand-20".
_ROW_ID_SUFFIX = np.array([f"-{t}-{i}" for t, i in zip(ROW_TYPES, ROW_INDICES)])


def landmark_table(frames, frame_ids):
    """`[T, 543, 3]` coordinates (NaN = not detected) and `[T]` frame numbers → a pyarrow Table.

    Frame numbers must be non-negative and increasing (gaps are allowed). `frame` is int16
    as in the competition's files, or int32 for a video longer than 32,767 frames.

    Raises:
        ValueError: wrong shapes, or frame numbers that are negative or not increasing.
    """
    frames = np.asarray(frames, np.float64)
    frame_ids = np.asarray(frame_ids, np.int64)
    if frames.ndim != 3 or frames.shape[1:] != (lm.NUM_RAW_LANDMARKS, lm.NUM_COORDINATES):
        raise ValueError(f"frames must be [T, {lm.NUM_RAW_LANDMARKS}, 3], got {frames.shape}")
    if frame_ids.shape != (len(frames),):
        raise ValueError(f"frame_ids must be [{len(frames)}], got {frame_ids.shape}")
    if len(frame_ids) and (frame_ids[0] < 0 or np.any(np.diff(frame_ids) <= 0)):
        raise ValueError("frame_ids must be non-negative and increasing")
    num_frames = len(frames)
    frame_type = pa.int16() if num_frames == 0 or frame_ids[-1] <= np.iinfo(np.int16).max \
        else pa.int32()
    frame_column = np.repeat(frame_ids, lm.NUM_RAW_LANDMARKS)
    row_ids = np.char.add(frame_column.astype(str), np.tile(_ROW_ID_SUFFIX, num_frames))
    flat = frames.reshape(-1, lm.NUM_COORDINATES)
    columns = {
        "frame": pa.array(frame_column, frame_type),
        "row_id": pa.array(row_ids.tolist(), pa.string()),
        "type": pa.array(np.tile(ROW_TYPES, num_frames).tolist(), pa.string()),
        "landmark_index": pa.array(np.tile(ROW_INDICES, num_frames), pa.int16()),
    }
    for k, name in enumerate("xyz"):
        values = flat[:, k]
        columns[name] = pa.array(values, pa.float64(), mask=np.isnan(values))
    return pa.table(columns)


def write_landmark_file(path, frames, frame_ids):
    """Writes one clip's parquet file atomically: a killed run never leaves half a file.

    Written through `tfislr.atomic`, so an existing `path` always means a complete file
    (what makes extraction resumable).
    """
    path = pathlib.Path(path)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(landmark_table(frames, frame_ids), tmp)
    return path
