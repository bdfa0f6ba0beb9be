"""`tfislr-cv` (or `python -m tfislr.training.cross_validation`, or `tfislr-train --cv`): every
fold of a config, one after another, and its out-of-fold predictions.

    tfislr-cv --config len80 --data-dir D [--set KEY=VALUE ...] [--epochs N] [--strategy S]
        [--output runs] [--resume | --cv-dir DIR] [--weights distilled|student|teacher]
        [--verbose 0|1|2]

The library side and the CV folder's layout: `tfislr.training.cross_validation`,
`tfislr.runs.cv_dir`.
"""

import argparse
import sys

from tfislr.cli.command import INTERRUPTED, command
from tfislr.cli.help import HelpFormatter
from tfislr.cli.run_options import add_run_options, run_request
from tfislr.config import MODEL_NAMES

PROG = "tfislr-cv"
WEIGHT_CHOICES = MODEL_NAMES  # which soup predicts: student, teacher or distilled


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train every fold of a config and write its out-of-fold predictions.",
        formatter_class=HelpFormatter,
    )
    add_run_options(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cv-dir", default=None,
                       help="exact CV folder; an unfinished one is resumed "
                            "(default: a new OUTPUT/<config>/cv/<timestamp>)")
    where.add_argument("--resume", action="store_true",
                       help="resume the newest unfinished CV of this config under --output "
                            "(starts a new one when there is none)")
    parser.add_argument("--weights", default="distilled", choices=WEIGHT_CHOICES,
                        help="which soup predicts the held-out clips")
    return parser.parse_args(argv)


def run_command(request, weights="distilled", verbose="auto", prog=PROG):
    """What `tfislr-cv` and `tfislr-train --cv` run once their request is validated."""
    from tfislr.training.cross_validation import CrossValidation

    try:
        CrossValidation(request, weights=weights,
                        verbose=verbose if verbose == "auto" else int(verbose)).run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command with --resume to continue with "
              "the unfinished fold (finished folds are kept)", file=sys.stderr)
        return INTERRUPTED
    return 0


@command(PROG)
def main(argv=None):
    args = parse_args(argv)
    return run_command(run_request(args, PROG, cv=True), args.weights, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
