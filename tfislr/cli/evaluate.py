"""`tfislr-evaluate` (or `python -m tfislr.evaluate`): Kaggle-style scoring of an exported
.tflite on a Kaggle-layout data dir (the library side: `tfislr.evaluate`)."""

import argparse
import sys

from tfislr.cli.command import command, positive_int, start_tensorflow
from tfislr.cli.help import HelpFormatter
from tfislr.cli.json_output import add_json_options, check_json_out, emit

PROG = "tfislr-evaluate"
DESCRIPTION = "Kaggle-style scoring of an exported .tflite on a data dir in the Kaggle layout."


def parser():
    from tfislr.config import DataConfig

    defaults = DataConfig()
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument("--data-dir", required=True, help="Kaggle layout: train.csv, parquet files")
    parser.add_argument("--fold", type=int,
                        help="score only the signers of this fold, held out when the run validated "
                             "on it (default: every sequence)")
    parser.add_argument("--num-folds", type=positive_int,
                        help="rebuild the folds with this many (default: the split recorded "
                             f"with the model, else {defaults.num_folds})")
    parser.add_argument("--fold-seed", type=int,
                        help="rebuild the folds with this seed (default: the split recorded "
                             f"with the model, else {defaults.fold_seed})")
    parser.add_argument("--original-folds", choices=("true", "false"),
                        help="rebuild the folds with (true) or without (false) the original's "
                             "participant->fold map (default: as recorded with the model, "
                             f"else {str(defaults.original_folds).lower()})")
    parser.add_argument("--limit", type=positive_int,
                        help="score only the first N sequences (default: all)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="interpreter threads (default: 1)")
    add_json_options(parser, "the full report (all signs, every prediction)")
    parser.add_argument("--all-signs", action="store_true", help="print every sign's accuracy")
    parser.add_argument("--allow-unreadable", action="store_true",
                        help="exit 0 although some landmark files could not be read (they are "
                             "left out of the accuracy either way)")
    return parser


@command(PROG)
def main(argv=None):
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.num_folds == 1:  # (0 and below are refused by positive_int)
        arguments.error("argument --num-folds: a split needs at least 2 folds, got 1")
    check_json_out(args)  # before the scoring, not after it
    start_tensorflow()
    from tfislr.evaluate import evaluate_tflite, format_report, unreadable_error

    report = evaluate_tflite(
        args.model, args.data_dir, fold=args.fold, num_folds=args.num_folds,
        fold_seed=args.fold_seed, limit=args.limit, num_threads=args.threads, progress=True,
        original_folds=None if args.original_folds is None else args.original_folds == "true",
    )
    emit(args, report, lambda: format_report(report, max_signs=None if args.all_signs else 15))
    if args.json_out:
        print(f"{PROG}: report written to {args.json_out}", file=sys.stderr)
    unreadable = unreadable_error(report)
    if unreadable is not None and not args.allow_unreadable:
        raise unreadable
    return 0


if __name__ == "__main__":
    sys.exit(main())
