"""`tfislr-extract`: video files and folders → a data dir in the competition's layout.

    tfislr-extract videos/ --out my_data [--participant-id 7] [--mirror] [--sign NAME]

For every video it writes one landmark file `OUT/train_landmark_files/<participant_id>/
<sequence_id>.parquet` (`tfislr.video.layout`, from `tfislr.video.holistic`). The sign of
a clip comes from its folder: with an input folder `videos/`, `videos/<sign>/<clip>.mp4`
is a clip of `<sign>`; a video directly in an input folder, or given as a file, has no
sign unless `--sign` names one. Signed clips become `train.csv` rows and their signs enter
`sign_to_prediction_index_map.json`, so the folder trains with the usual commands:

    OUT/train.csv                            path,participant_id,sequence_id,sign
    OUT/sign_to_prediction_index_map.json    sign → label
    OUT/train_landmark_files/<pid>/<sid>.parquet
    OUT/extracted.csv                        every extracted clip: video, path, ids, sign, frames
    OUT/skipped.csv                          this run's videos that could not be read, and why
    OUT/extract.log                          MediaPipe's own log lines (kept off the terminal)

* **Merges**: an OUT that already holds a data set (an earlier extraction, another signer's,
  the Kaggle data) keeps its rows and labels; new signs get the next labels, alphabetically.
* **Ids**: `sequence_id` is a hash (12 hex digits) of the participant id and the clip's path
  below its input folder, so it is stable across runs and machines (a video given as a file
  is keyed by its full path); `participant_id` is `--participant-id` (default 0): extract
  each signer with their own id.
* **Resumable**: a clip whose landmark file exists is not extracted again (files are written
  atomically, so an existing file is complete).
* **Bad videos** are reported, listed in `skipped.csv` and skipped; the others go on.
* **Not a video**: a file given directly must have a video suffix (.mp4, .mov, ...; the
  folders' other files are passed over). Another file is refused before any extraction,
  in one line naming it (`tfislr-extract: error: <file>: unsupported video type ...`);
  the other inputs are still extracted and the exit code is then 2, as in `tfislr-predict`.

Runs in the extraction environment (`scripts/extract_env.sh`); started from the main
environment, the command hands itself over to that environment (`tfislr.video.environment`).
"""

import contextlib
import csv
import hashlib
import io
import json
import os
import pathlib
import sys

from tfislr import atomic
from tfislr import landmarks as lm
from tfislr.errors import DataError, MissingFileError
from tfislr.text import plural

PROG = "tfislr-extract"
VIDEO_SUFFIXES = frozenset(
    (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp")
)
TRAIN_CSV = "train.csv"  # the names of tfislr.data.kaggle, which needs pandas (not here)
SIGN_MAP_JSON = "sign_to_prediction_index_map.json"
TRAIN_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
EXTRACTED_CSV = "extracted.csv"
EXTRACTED_COLUMNS = ("video", "path", "participant_id", "sequence_id", "sign", "frames")
SKIPPED_CSV = "skipped.csv"
NATIVE_LOG = "extract.log"


def sequence_id(participant_id, key):
    """A stable int id from the participant and the clip's key (see `find_clips`)."""
    digest = hashlib.sha256(f"{participant_id}/{key}".encode()).hexdigest()
    return int(digest[:12], 16)


def not_a_video(path):
    """The error for a file given as a video whose suffix is not in `VIDEO_SUFFIXES`, or
    None for a video (or a folder, or a missing path: `find_clips` judges those).

    Decided by the list of known suffixes, never as "anything else is a video", the rule
    of `tfislr-predict`: a .csv or a photo would otherwise reach MediaPipe and come back
    as an unreadable video, after the extraction environment has started.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix in VIDEO_SUFFIXES:
        return None
    return DataError(f"{path}: unsupported video type {suffix or '(no suffix)'} (a video: "
                     f"{', '.join(sorted(VIDEO_SUFFIXES))})")


def refuse_non_videos(inputs):
    """`(inputs to extract, [DataError])`: every file input that `not_a_video` refuses is
    taken out with its error; videos and folders stay."""
    kept, refused = [], []
    for given in inputs:
        error = not_a_video(given)
        if error is None:
            kept.append(given)
        else:
            refused.append(error)
    return kept, refused


def find_clips(inputs, sign=None):
    """`[(video path, key, sign or None)]` for files and folders, sorted within each input;
    the key is the path below the input folder, or the full path of a file input.

    In a folder, a video `<folder>/<sign>/.../<clip>` belongs to `<sign>` and a video
    directly in `<folder>` to no sign; `sign` (when given) overrides both. A folder's
    other files are passed over; a file input must be a video.

    Raises:
        MissingFileError: an input does not exist.
        DataError: a file input is not a video (`not_a_video`), or no video at all was
            found.
    """
    clips = []
    for given in inputs:
        root = pathlib.Path(given)
        error = not_a_video(root)
        if error is not None:
            raise error
        if root.is_file():  # keyed by its full path: two files may share a name
            clips.append((root, root.resolve().as_posix(), sign))
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.suffix.lower() not in VIDEO_SUFFIXES:
                    continue
                relative = path.relative_to(root)
                folder_sign = relative.parts[0] if len(relative.parts) > 1 else None
                clips.append((path, relative.as_posix(), sign or folder_sign))
        else:
            raise MissingFileError(f"{root}: video file or folder not found")
    if not clips:
        raise DataError(f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in "
                        f"{', '.join(map(str, inputs))}")
    return clips


def _read_csv(path):
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path, columns, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


def merge_sign_map(out_dir, signs):
    """Adds `signs` to OUT's sign map: existing labels stay, new signs get the next labels
    in alphabetical order. Returns the map."""
    path = out_dir / SIGN_MAP_JSON
    sign_map = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(sign_map, dict):
        raise DataError(f"{path}: expected a JSON object {{sign: label}}")
    for new in sorted(set(signs) - set(sign_map)):
        sign_map[new] = len(sign_map)
    atomic.write_text(path, json.dumps(sign_map, indent=0) + "\n")
    return sign_map


def merge_rows(path, columns, new_rows, key):
    """Rows of the CSV at `path` with `new_rows` added, replacing rows with the same `key`."""
    rows = {row[key]: row for row in _read_csv(path)}
    for row in new_rows:
        rows[str(row[key])] = {c: str(row[c]) for c in columns}
    merged = list(rows.values())
    _write_csv(path, columns, merged)
    return merged


def _check_ids(out_dir, planned):
    """No two clips may share a sequence id: not two videos of this run (the same path below
    two input folders), nor a video and another clip already in train.csv."""
    in_csv = {row["sequence_id"]: row["path"] for row in _read_csv(out_dir / TRAIN_CSV)}
    videos = {}
    for row in planned:
        sid = str(row["sequence_id"])
        other = videos.setdefault(sid, row["video"])
        if other != row["video"]:
            raise DataError(f"{row['video']} and {other} would both be clip {sid} (the same "
                            "path below their input folders): extract them with different "
                            "--participant-id values")
        if in_csv.get(sid, row["path"]) != row["path"]:
            raise DataError(f"{row['video']}: sequence_id {sid} is already used by "
                            f"{in_csv[sid]} in {out_dir / TRAIN_CSV}; pass another "
                            "--participant-id")


def _frames_in(path):
    """Frames of an existing landmark file, from the parquet footer (no data read)."""
    import pyarrow.parquet as pq

    from tfislr import landmarks as lm

    return pq.ParquetFile(path).metadata.num_rows // lm.NUM_RAW_LANDMARKS


@contextlib.contextmanager
def native_log(path):
    """Sends file descriptor 2 (MediaPipe's and FFmpeg's C++ logging, a dozen lines a clip)
    to the file `path`; yields a stream on the real stderr for the progress bar and reports.
    Python's tracebacks reach the terminal again: fd 2 is restored before they print."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        with os.fdopen(os.dup(saved), "w", buffering=1) as terminal:
            yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def extract(inputs, out_dir, participant_id=0, sign=None, mirror=False, progress=True):
    """Extracts every video of `inputs` into `out_dir` (see the module docstring).

    Returns a summary dict: `extracted`, `already_done`, `skipped` (list of
    `{video, reason}`), `without_hands` (the videos extracted now in which MediaPipe found
    no hand: kept, and a note says so), `frames` (extracted now), `rows` (train.csv) and
    `signs`.
    """
    from tqdm import tqdm

    from tfislr.video.holistic import HolisticExtractor
    from tfislr.video.layout import write_landmark_file

    out_dir = pathlib.Path(out_dir)
    clips = find_clips(inputs, sign)
    planned = []
    for video, key, clip_sign in clips:
        sid = sequence_id(participant_id, key)
        planned.append({
            "video": str(video.resolve()),
            "path": f"train_landmark_files/{participant_id}/{sid}.parquet",
            "participant_id": participant_id,
            "sequence_id": sid,
            "sign": clip_sign or "",
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_ids(out_dir, planned)

    done, skipped, handless, extracted, frames_now = [], [], [], 0, 0
    todo = [row for row in planned if not (out_dir / row["path"]).exists()]
    for row in planned:
        if (out_dir / row["path"]).exists():
            done.append({**row, "frames": _frames_in(out_dir / row["path"])})
    if todo:
        with native_log(out_dir / NATIVE_LOG) as terminal, \
                HolisticExtractor(mirror=mirror) as holistic:
            bar = tqdm(total=len(todo), unit="clip", desc=PROG, disable=not progress,
                       file=terminal)
            for row in todo:
                bar.set_postfix_str(pathlib.Path(row["video"]).name, refresh=False)
                try:
                    frames, frame_ids = holistic(row["video"])
                except DataError as error:
                    skipped.append({"video": row["video"], "reason": str(error)})
                    bar.write(f"{PROG}: skipped {error}", file=terminal)
                else:
                    write_landmark_file(out_dir / row["path"], frames, frame_ids)
                    done.append({**row, "frames": len(frames)})
                    missing = lm.missing_hands(len(frames), *lm.detected_frames(frames))
                    if missing:  # kept (as in the competition's data), but said
                        handless.append(row["video"])
                        bar.write(f"{PROG}: note: {row['video']}: {missing}: the model reads "
                                  "only frames with a hand, so it sees nothing of this clip",
                                  file=terminal)
                    extracted += 1
                    frames_now += len(frames)
                bar.update(1)
            bar.close()

    merge_rows(out_dir / EXTRACTED_CSV, EXTRACTED_COLUMNS, done, key="path")
    _write_csv(out_dir / SKIPPED_CSV, ("video", "reason"), skipped)
    labelled = [row for row in done if row["sign"]]
    rows, signs = [], {}
    if labelled or (out_dir / TRAIN_CSV).exists():
        signs = merge_sign_map(out_dir, [row["sign"] for row in labelled])
        rows = merge_rows(out_dir / TRAIN_CSV, TRAIN_COLUMNS, labelled, key="sequence_id")
    return {
        "extracted": extracted,
        "already_done": len(done) - extracted,
        "skipped": skipped,
        "without_hands": handless,
        "frames": frames_now,
        "rows": len(rows),
        "signs": len(signs),
        "clips": done,
    }


def format_summary(summary, out_dir):
    handless = len(summary.get("without_hands", ()))
    text = (f"extracted {plural(summary['extracted'], 'clip')} ({plural(summary['frames'], 'frame')}"
            + (f"; {handless} with no hand in any frame" if handless else "") + "), "
            f"{summary['already_done']:,} already done, {len(summary['skipped']):,} skipped")
    if summary["skipped"]:
        text += f" (reasons in {pathlib.Path(out_dir) / SKIPPED_CSV})"
    if summary["rows"]:
        text += (f"; {pathlib.Path(out_dir) / TRAIN_CSV}: {plural(summary['rows'], 'clip')} of "
                 f"{plural(summary['signs'], 'sign')}")
    return text


def check_environment():
    """Builds Holistic and runs it on a blank picture: the extraction env works offline."""
    import mediapipe
    import numpy as np
    from google import protobuf

    from tfislr.video.holistic import HolisticExtractor, result_to_frame

    with native_log(os.devnull), HolisticExtractor() as extractor:
        frame = result_to_frame(extractor._holistic.process(np.zeros((64, 64, 3), np.uint8)))
    if frame.shape != (543, 3):
        raise RuntimeError(f"Holistic check gave a frame of shape {frame.shape}")
    return f"mediapipe {mediapipe.__version__}, protobuf {protobuf.__version__}"


if __name__ == "__main__":  # `python -m tfislr.video.extract`, the same as the command
    from tfislr.cli.extract import main

    sys.exit(main())
