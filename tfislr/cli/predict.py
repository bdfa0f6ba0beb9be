"""`tfislr-predict`: an exported `.tflite` + clips (landmark parquet files or videos) → top-k
signs (the library side: `tfislr.predict`)."""

import argparse
import pathlib
import sys

from tfislr.cli.command import USER_ERROR, command, positive_int, report, start_tensorflow
from tfislr.cli.help import HelpFormatter
from tfislr.cli.json_output import add_json_options, check_json_out, emit

PROG = "tfislr-predict"
DESCRIPTION = "An exported .tflite + clips (landmark parquet files or videos) → top-k signs."


def parser():
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("model", help="the .tflite file (tfislr-export)")
    parser.add_argument("clips", nargs="+", help="landmark .parquet files or video files")
    parser.add_argument("--top-k", type=positive_int, default=5, help="signs per clip (default: 5)")
    add_json_options(parser, "the predictions")
    parser.add_argument("--signs", help="sign map (sign_to_prediction_index_map.json) or a data "
                                        "dir with one (default: the export report MODEL.json)")
    parser.add_argument("--landmarks-dir",
                        help="keep the videos' landmark files here (default: a temporary folder)")
    parser.add_argument("--threads", type=positive_int, default=1, help="interpreter threads")
    return parser


@command(PROG)
def main(argv=None):
    args = parser().parse_args(argv)
    check_json_out(args)
    start_tensorflow()
    from tfislr.predict import format_table, numbered_labels_note, predict, top_k_note

    exported = None
    if pathlib.Path(args.model).is_file():
        from tfislr.evaluate import export_report

        # Read (and the model hashed against it) once: for the names (or, with --signs,
        # their check against the report's) and for the note.
        exported = export_report(args.model)
    results, errors = predict(args.model, args.clips, top_k=args.top_k, signs=args.signs,
                              landmarks_dir=args.landmarks_dir, num_threads=args.threads,
                              report=exported)
    numbered = args.signs is None and exported is not None and results
    notes = (numbered_labels_note(args.model, exported) if numbered else None,
             top_k_note(args.top_k, results))
    notes += tuple(f"{PROG}: note: {result['clip']}: {result['note']}" for result in results
                   if result["note"])
    for note in filter(None, notes):
        print(note, file=sys.stderr)
    emit(args, results, lambda: format_table(results) if results else None)
    for error in errors:
        report(PROG, error)
    return USER_ERROR if errors else 0


if __name__ == "__main__":
    sys.exit(main())
