"""Where a stream's frames come from: a landmark parquet file, a video file or a camera.

* `parquet_frames(path)`: a Kaggle-layout landmark file of any length, read in batches of
  frames (each checked as `tfislr.data.kaggle.read_landmark_file` checks a whole file, and
  frame ids increasing across batches), so a long recording is never loaded whole.
* `VideoSource(source)`: a video file or a camera index. The extraction environment runs
  `tfislr.video.live` in a subprocess, which sends each frame's landmarks through a pipe as
  soon as MediaPipe has them; no landmark file is written. When it ends (the video's end,
  an undecodable frame, a camera that stops, Ctrl-C) the frames so far have been yielded
  and `note` / `error` say what happened.

Both yield `(frame float32 [543, 3], seconds or None)`.
"""

import pathlib
import subprocess
import tempfile

import pyarrow as pa

from tfislr import landmarks as lm
from tfislr.data import kaggle
from tfislr.errors import DataError
from tfislr.text import plural

BATCH_FRAMES = 256


def parquet_frames(path, batch_frames=BATCH_FRAMES):
    """Yields `(frame, None)` for each frame of a landmark parquet file, reading
    `batch_frames` frames at a time.

    Raises:
        LandmarkFileError (a DataError): the file is missing, unreadable or malformed
            (raised when the bad part is reached; the frames before it were yielded).
    """
    path = pathlib.Path(path)
    parquet = kaggle.open_landmark_file(path)
    rows = batch_frames * lm.NUM_RAW_LANDMARKS
    pending = None  # rows of a frame cut by a batch boundary
    last_id = None
    try:
        for batch in parquet.iter_batches(batch_size=rows, columns=list(kaggle.LANDMARK_COLUMNS),
                                          use_threads=False):
            table = pa.Table.from_batches([batch])
            if pending is not None:
                table = pa.concat_tables([pending, table]).combine_chunks()
            whole = table.num_rows - table.num_rows % lm.NUM_RAW_LANDMARKS
            pending = table.slice(whole) if whole < table.num_rows else None
            if whole == 0:
                continue
            frames, ids = kaggle.landmark_table_frames(path, table.slice(0, whole))
            if last_id is not None and ids[0] <= last_id:
                raise kaggle.LandmarkFileError(
                    path, f"frame ids must increase: frame {ids[0]} follows frame {last_id}",
                    "frame ids")
            last_id = ids[-1]
            for frame in frames:
                yield frame, None
    except pa.ArrowException as error:
        raise kaggle.LandmarkFileError(path, f"corrupt parquet data ({error})",
                                       "unreadable") from None
    if pending is not None:  # the file's last rows are not a whole frame
        kaggle.landmark_table_frames(path, pending)  # raises the row-count error


class VideoSource:
    """The frames of a video file or a camera, extracted live (see the module docstring).

    Args:
        source: a video file path, or a camera index (int, or a string of digits).
        mirror: flip each image first (a mirrored recording; `tfislr-extract --mirror`).

    Iterate once; afterwards `fps` is the source's frame rate (None if it gave none),
    `frames` the number yielded, `note` the extraction's word on an early end (a camera that
    stopped, an undecodable frame) or None, and `error` a `DataError` when the source could
    not be read at all or the extraction failed, else None. Raises `MissingFileError` when
    there is no extraction environment.
    """

    def __init__(self, source, mirror=False):
        from tfislr.video import live

        self.source = str(source)
        self.mirror = bool(mirror)
        self.fps = None
        self.frames = 0
        self.note = None
        self.error = None
        self._live = live

    def __iter__(self):
        from tfislr.video import environment

        args = [self.source] + (["--mirror"] if self.mirror else [])
        command, env = environment.module_command("tfislr.video.live", args)
        # The child's stderr (MediaPipe's log lines, then its own word) goes to a file: a
        # pipe nobody reads during the stream could fill up and stall it.
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log,
                                       stdin=subprocess.DEVNULL)
            try:
                fps = self._live.read_header(process.stdout)
                if fps is not None:
                    self.fps = fps or None
                    for _, seconds, frame in self._live.read_frames(process.stdout):
                        self.frames += 1
                        yield frame, seconds
            finally:
                if process.poll() is None:  # the consumer stopped early
                    process.terminate()
                process.stdout.close()
                code = process.wait()
                log.seek(0)
                self._report(code, log.read().decode(errors="replace"))

    def _report(self, code, stderr):
        prefix = f"{self._live.PROG}: "
        said = [line[len(prefix):] for line in stderr.splitlines() if line.startswith(prefix)]
        if code == 0:
            self.note = said[-1] if said else None
        elif code == 2 and said:
            self.error = DataError(said[-1].removeprefix("error: "))
        elif code > 0:
            tail = " / ".join(stderr.strip().splitlines()[-3:])
            self.error = DataError(f"{self.source}: the landmark extraction stopped with exit "
                                   f"code {code} after {plural(self.frames, 'frame')}: {tail}")

