"""`tfislr-blend` (or `python -m tfislr.blend`): blend the out-of-fold predictions of several
configs and compare their CV accuracy (the library side: `tfislr.blend`)."""

import argparse
import sys

from tfislr import atomic
from tfislr.cli.command import command, non_negative_float
from tfislr.cli.help import HelpFormatter
from tfislr.cli.json_output import add_json_options, check_json_out, emit
from tfislr.text import plural

PROG = "tfislr-blend"
DESCRIPTION = "Blend the out-of-fold predictions of several configs and compare their CV accuracy."


def parser():
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("sources", nargs="+",
                        help="OOF files, cross-validation folders or config names")
    parser.add_argument("--weights", type=non_negative_float, nargs="+", default=None,
                        help="one per source (default: equal)")
    parser.add_argument("--runs-dir", default="runs", help="where config names are looked up")
    parser.add_argument("--out", default=None, help="write the blended OOF predictions here")
    add_json_options(parser, "the report")
    return parser


@command(PROG)
def main(argv=None):
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.weights is not None and len(args.weights) != len(args.sources):
        arguments.error(f"argument --weights: give one per source: "
                        f"{plural(len(args.sources), 'source')}, "
                        f"{plural(len(args.weights), 'weight')}")
    if args.weights is not None and not any(args.weights):
        arguments.error("argument --weights: not all 0")
    check_json_out(args)  # before reading the sources
    if args.out:
        atomic.check_writable_file(args.out)
    from tfislr.blend import compare, format_table, resolve_source  # numpy and pandas, no TF
    from tfislr.runs.oof import read_oof, write_oof

    paths = [resolve_source(spec, args.runs_dir) for spec in args.sources]
    named = {}
    for spec, path in zip(args.sources, paths):
        named[spec if spec not in named else str(path)] = read_oof(path)
    report, blended = compare(named, args.weights)
    report["paths"] = [str(p) for p in paths]
    emit(args, report, lambda: format_table(report))
    if args.out:
        write_oof(blended, args.out)
        print(f"{PROG}: blended OOF predictions written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
