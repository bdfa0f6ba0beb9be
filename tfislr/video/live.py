"""A video file or a camera → landmark frames on stdout, one at a time (`tfislr-stream`'s source).

    python -m tfislr.video.live SOURCE [--mirror]     # in the extraction environment

SOURCE is a video file or a camera index (0, 1, ...; OpenCV's capture). Each decoded frame
goes through MediaPipe Holistic (`tfislr.video.holistic`, video mode, the conventions of
the extracted files) and is written at once, so the reader (`tfislr.stream.sources`, in the
main environment) recognizes signs while the video plays and no landmark file is written:

    MAGIC (8 bytes) · fps (float64; 0 when the source does not say)
    then per frame: frame number (int64) · seconds (float64) · float32 [543, 3] (NaN = missing)

little-endian. Seconds: frame number / fps for a file (30 fps when it does not say), the time
since the first frame for a camera.

The end: a video file ends at its last frame; a frame that cannot be decoded before the
container's frame count ends it early, and so does a camera that stops delivering frames.
Either way the frames so far have been written, and one line `tfislr-live: <what happened>`
on stderr says why it stopped (exit code 0); a source that cannot be opened at all is one
line `tfislr-live: error: ...` and exit code 2. A reader that goes away ends it quietly.

Imports numpy only at the top, so the main environment reads the protocol from here; OpenCV
and MediaPipe are imported in `main`, which runs in the extraction environment.
"""

import argparse
import struct
import sys
import time

import numpy as np

from tfislr import landmarks as lm
from tfislr.text import plural

PROG = "tfislr-live"
MAGIC = b"TFISLRL1"
HEADER = struct.Struct("<d")  # fps
RECORD = struct.Struct("<qd")  # frame number, seconds
FRAME_SHAPE = (lm.NUM_RAW_LANDMARKS, lm.NUM_COORDINATES)
FRAME_BYTES = lm.NUM_RAW_LANDMARKS * lm.NUM_COORDINATES * 4
DEFAULT_FPS = 30.0


def camera_index(source):
    """The camera index of a SOURCE written as a non-negative integer, else None (a file)."""
    text = str(source)
    return int(text) if text.isdigit() else None


def encode_frame(number, seconds, frame):
    """One record: the header and the frame as float32 bytes."""
    values = np.ascontiguousarray(frame, dtype="<f4")
    if values.shape != FRAME_SHAPE:
        raise ValueError(f"a frame must be {list(FRAME_SHAPE)}, got {list(values.shape)}")
    return RECORD.pack(number, seconds) + values.tobytes()


def read_header(stream):
    """The fps of a stream's header (0.0 when unknown); None when the stream ended first.

    Raises:
        ValueError: the stream does not start with `MAGIC`.
    """
    head = stream.read(len(MAGIC) + HEADER.size)
    if len(head) < len(MAGIC) + HEADER.size:
        return None
    if head[: len(MAGIC)] != MAGIC:
        raise ValueError(f"not a {PROG} stream (starts with {head[:len(MAGIC)]!r})")
    return HEADER.unpack(head[len(MAGIC):])[0]


def read_frames(stream):
    """Yields `(frame number, seconds, float32 [543, 3])` from a binary stream after its
    header, until it ends; a record cut short (the writer died mid-frame) ends it too."""
    size = RECORD.size + FRAME_BYTES
    while True:
        record = stream.read(size)
        if len(record) < size:
            return
        number, seconds = RECORD.unpack_from(record)
        frame = np.frombuffer(record, "<f4", offset=RECORD.size).reshape(FRAME_SHAPE)
        yield number, seconds, frame.astype(np.float32)


def _open(source):
    import cv2

    index = camera_index(source)
    capture = cv2.VideoCapture(index if index is not None else str(source))
    if not capture.isOpened():
        what = f"camera {index}" if index is not None else str(source)
        capture.release()
        raise OSError(f"{what}: cannot be opened" + (
            "" if index is not None else " as a video (not a video, or an unsupported format)"))
    return capture, index is not None


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a video file or a camera index (0, 1, ...)")
    parser.add_argument("--mirror", action="store_true",
                        help="flip each frame horizontally first (a mirrored recording)")
    args = parser.parse_args(argv)
    import cv2

    from tfislr.video.holistic import HolisticExtractor

    try:
        capture, is_camera = _open(args.source)
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    expected = 0 if is_camera else int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    count, first = 0, None
    try:
        with HolisticExtractor(mirror=args.mirror) as extractor:
            out.write(MAGIC + HEADER.pack(fps))
            out.flush()
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                now = time.monotonic()
                first = now if first is None else first
                seconds = now - first if is_camera else count / (fps or DEFAULT_FPS)
                frame = extractor.frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                out.write(encode_frame(count, seconds, frame))
                out.flush()
                count += 1
    except (BrokenPipeError, KeyboardInterrupt):  # the reader stopped: nothing to report
        return 0
    finally:
        capture.release()
    if is_camera:
        print(f"{PROG}: camera {args.source} stopped delivering frames after "
              f"{plural(count, 'frame')}", file=sys.stderr)
    elif count == 0:
        print(f"{PROG}: {args.source}: no frame could be decoded (empty or damaged video)",
              file=sys.stderr)
    elif expected and count < expected - 1:  # containers may over-count by one
        print(f"{PROG}: {args.source}: frame {count} of {expected} could not be decoded; "
              f"stopped after {plural(count, 'frame')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
