"""`tfislr-stream`: a continuous recording or a camera → a timeline of signs.

    tfislr-stream MODEL.tflite SOURCE [--top-k 3] [--json] [--csv OUT.csv] [--live]
                  [--min-confidence P] [--refine] [--signs MAP.json] [segmentation options]

SOURCE is a landmark parquet file of any length (Kaggle schema; read in batches), a video
file (.mp4, .mov, ...) or a camera index (0, 1, ...). Videos and cameras go through the
extraction environment (`scripts/extract_env.sh`) in a subprocess that hands each frame's
landmarks over a pipe: nothing is written to disk, and a camera's signs print while you
sign. The stream is cut into candidate sign segments (hands entering and leaving the
signing space, pauses in their motion, a maximum length; `tfislr.stream.segmentation`) and
each segment is classified by the exported model as `tfislr-predict` classifies a clip
(`tfislr.stream.recognizer`). See docs/stream.md for the parameters and how their defaults
were chosen.

Output: one line per sign (frames, seconds, top k signs with probabilities) as a table
at the end, or as each sign is recognized with `--live` (the default for a camera); `--json`
prints a JSON list instead, `--json-out` also writes it to a file (the one convention of
`tfislr.cli.json_output`), and `--csv` writes the timeline as CSV. Sign names come
from the export report next to the model or `--signs`, as in `tfislr-predict`.

A video whose frames stop decoding, or a camera that stops, ends the stream: the signs
recognized so far are printed, and a note says why it stopped (exit code 2 for an unreadable
video, 0 for a camera). Ctrl-C ends it the same way (exit code 130, or 0 for a camera).

TensorFlow is never loaded: the exported model holds its preprocessing, and ai-edge-litert
runs it.
"""

import argparse
import dataclasses
import pathlib
import re
import sys

from tfislr.cli.command import INTERRUPTED, command, non_negative_int, positive_int, report
from tfislr.cli.help import HelpFormatter
from tfislr.cli.json_output import add_json_options, check_json_out, emit
from tfislr.errors import DataError
from tfislr.text import plural


PROG = "tfislr-stream"
DESCRIPTION = "A continuous recording or a camera → a timeline of signs."

# Help of each segmentation parameter (`tfislr.stream.segmentation.SegmentationParams`).
SEGMENTATION_HELP = {
    "signing_space": "a hand lower than this many shoulder widths below the shoulders rests",
    "speed_window": "frames over which the hands' speed is measured",
    "pause_speed": "shoulder widths a frame under which the hands hold still",
    "pause_frames": "still frames in a row that end a sign",
    "min_motion_frames": "moving frames a segment needs before a pause can end it",
    "gap_frames": "frames without a hand in the signing space that end a sign",
    "min_frames": "segments with fewer frames with a hand are dropped",
    "max_frames": "a segment is cut at this many frames",
}


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def parse_args(argv=None):
    from tfislr.stream.recognizer import MERGE_GAP, MIN_CONFIDENCE
    from tfislr.stream.segmentation import SegmentationParams
    from tfislr.stream.windows import STRIDE, WINDOW, WINDOW_CONFIDENCE

    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("model", help="the .tflite file (tfislr-export)")
    parser.add_argument("source", help="a landmark .parquet file, a video file, or a camera "
                                       "index (0, 1, ...)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="signs per line")
    output = parser.add_mutually_exclusive_group()
    add_json_options(parser, "the timeline", flag_group=output)
    output.add_argument("--live", action="store_true",
                        help="print each sign as it is recognized (a camera always does, "
                             "unless --json)")
    parser.add_argument("--csv", help="also write the timeline to this CSV file")
    parser.add_argument("--method", choices=("segments", "windows"), default="segments",
                        help="segments: cut the stream where the hands rest or pause, one "
                             "answer a segment; windows: the baseline, fixed sliding windows "
                             "(--window, --stride), equal answers merged; see docs/stream.md")
    parser.add_argument("--min-confidence", type=_probability, default=None,
                        help="signs whose top probability is lower are not shown (default: "
                             f"{MIN_CONFIDENCE} with segments, {WINDOW_CONFIDENCE} with windows)")
    parser.add_argument("--refine", action="store_true",
                        help="trim each segment's ends to the window the model is most "
                             "confident about (9 model calls a segment instead of 1)")
    parser.add_argument("--signs", help="sign map (sign_to_prediction_index_map.json) or a "
                                        "data dir with one (default: the export report MODEL.json)")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frames a second of a landmark file, for its seconds; a video or "
                             "camera gives each frame's time")
    parser.add_argument("--mirror", action="store_true",
                        help="video or camera: flip each image first (a mirrored recording)")
    parser.add_argument("--threads", type=positive_int, default=1, help="interpreter threads")
    segmentation = parser.add_argument_group("segmentation (docs/stream.md)")
    for field in dataclasses.fields(SegmentationParams):
        segmentation.add_argument(f"--{field.name.replace('_', '-')}", type=field.type,
                                  default=field.default, help=SEGMENTATION_HELP[field.name])
    segmentation.add_argument("--merge-gap", type=non_negative_int, default=MERGE_GAP,
                              help="consecutive segments with the same sign at most this many "
                                   "frames apart are one sign; 0 merges only adjacent ones")
    windows = parser.add_argument_group("--method windows")
    windows.add_argument("--window", type=positive_int, default=WINDOW, help="frames a window")
    windows.add_argument("--stride", type=positive_int, default=STRIDE,
                         help="frames between two windows")
    args = parser.parse_args(argv)
    if not args.fps > 0:
        parser.error(f"argument --fps: expected a positive number, got {args.fps}")
    try:
        args.params = SegmentationParams(**{f.name: getattr(args, f.name)
                                            for f in dataclasses.fields(SegmentationParams)})
    except ValueError as error:  # its field names, said as the options the user typed
        fields = "|".join(f.name for f in dataclasses.fields(SegmentationParams))
        parser.error(re.sub(rf"\b({fields})\b",
                            lambda m: "--" + m.group(1).replace("_", "-"), str(error)))
    return args


def open_source(source, mirror=False):
    """`(frames, kind, handle)`: the iterable of `(frame, seconds)` of SOURCE, its kind
    (`landmarks`, `video` or `camera`) and the `VideoSource` (None for a landmark file).

    Raises:
        MissingFileError: a file SOURCE does not exist.
        DataError: SOURCE is a folder or neither a landmark file nor a video.
    """
    from tfislr.predict import LANDMARKS, clip_kind
    from tfislr.stream.sources import VideoSource, parquet_frames
    from tfislr.video.environment import extraction_python
    from tfislr.video.live import camera_index

    if camera_index(source) is not None and not pathlib.Path(source).exists():
        kind = "camera"
    elif clip_kind(source) == LANDMARKS:
        return parquet_frames(source), "landmarks", None
    else:
        kind = "video"
    extraction_python()  # MissingFileError, saying how to create it, before any frame
    handle = VideoSource(source, mirror)
    return handle, kind, handle


@command(PROG)
def main(argv=None):
    args = parse_args(argv)

    from tfislr.export import TFLiteRunner
    from tfislr.predict import sign_names
    from tfislr.stream import report as timeline
    from tfislr.stream.recognizer import MIN_CONFIDENCE, StreamRecognizer
    from tfislr.stream.windows import WINDOW_CONFIDENCE, SlidingWindowRecognizer

    check_json_out(args)
    if args.csv:
        from tfislr import atomic

        atomic.check_writable_file(args.csv)
    runner = TFLiteRunner(args.model, num_threads=args.threads)
    names = sign_names(pathlib.Path(args.model), args.signs, runner.num_classes)
    frames, kind, handle = open_source(args.source, args.mirror)
    live = (args.live or kind == "camera") and not args.json
    if args.method == "windows":
        recognizer = SlidingWindowRecognizer(
            runner, names, args.window, args.stride, top_k=args.top_k, fps=args.fps,
            min_confidence=(WINDOW_CONFIDENCE if args.min_confidence is None
                            else args.min_confidence))
    else:
        recognizer = StreamRecognizer(runner, names, args.params, top_k=args.top_k,
                                      min_confidence=(MIN_CONFIDENCE if args.min_confidence is None
                                                      else args.min_confidence),
                                      refine=args.refine, fps=args.fps,
                                      merge_gap=args.merge_gap)
    signs, interrupted = [], False
    if live:
        print(timeline.format_table([]), flush=True)
    try:
        for sign in recognizer.run(frames):
            signs.append(sign)
            if live:
                print(timeline.format_line(sign), flush=True)
    except KeyboardInterrupt:  # end cleanly with what was recognized
        interrupted = True
        for sign in recognizer.flush():
            signs.append(sign)
            if live:
                print(timeline.format_line(sign), flush=True)
    except DataError as error:  # a landmark file bad from some frame on: keep the signs so far
        signs += recognizer.flush()
        _output(args, signs, live, timeline, recognizer.top_k)
        raise DataError(f"{error} (the {plural(len(signs), 'sign')} before it are shown)") from None
    _output(args, signs, live, timeline, recognizer.top_k)
    summary = (f"{PROG}: {plural(recognizer.frame_count, 'frame')}, "
               f"{plural(recognizer.segments, 'window' if args.method == 'windows' else 'segment')}, "
               f"{plural(len(signs), 'sign')}")
    if recognizer.dropped:
        summary += f"; {recognizer.dropped} below --min-confidence {recognizer.min_confidence}"
    print(summary, file=sys.stderr)
    code = 0
    if handle is not None and handle.error is not None:
        code = report(PROG, handle.error)
    elif handle is not None and handle.note and kind == "camera":
        print(f"{PROG}: note: {handle.note}", file=sys.stderr)
    elif handle is not None and handle.note:  # a video cut short by an unreadable frame
        code = report(PROG, DataError(handle.note))
    if interrupted:
        print(f"{PROG}: stopped (Ctrl-C) after {plural(recognizer.frame_count, 'frame')}",
              file=sys.stderr)
        return code or (0 if kind == "camera" else INTERRUPTED)
    return code


def _output(args, signs, live, timeline, top_k):
    """The timeline on stdout (unless it went out live) and in the --json-out and --csv
    files."""
    emit(args, timeline.to_records(signs), None if live else lambda: timeline.format_table(signs))
    if args.csv:
        timeline.write_csv(args.csv, signs, top_k)


if __name__ == "__main__":
    sys.exit(main())
