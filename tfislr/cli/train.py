"""`tfislr-train` (or `python train.py`): the mean-teacher recipe on a Kaggle-layout data folder.

    tfislr-train --config len80 --data-dir DATA [--fold K | --full | --cv] [--set key=value ...]
                 [--strategy default|mirrored|multi_worker|tpu|cpu:N|gpu:N[:MB]] [--epochs N]
                 [--output runs] [--run-dir DIR | --resume]

Errors follow `tfislr.errors`: a bad config, `--set`, strategy, data folder or an output folder
that cannot be written is one line `tfislr-train: error: ...` and exit code 2 (the output is
checked before any work); a non-finite loss stops the run the same way.

The run lands in `<output>/<config>/<timestamp>/` (see tfislr/training/run.py); rerun the
same command with `--resume` (or `--run-dir <that dir>`) to resume an interrupted run.
`--cv` trains every fold one after another and writes the out-of-fold predictions of the
distilled soup (`tfislr-cv`, tfislr/cli/cv.py); there `--run-dir` is the
CV folder and `--resume` continues the newest unfinished CV.
"""

import argparse
import os
import sys

from tfislr.cli.command import INTERRUPTED, command
from tfislr.cli.help import HelpFormatter
from tfislr.cli.run_options import add_run_options, run_request

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PROG = "tfislr-train"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train student, EMA teacher and distilled model (tfislr).",
        formatter_class=HelpFormatter,
    )
    add_run_options(parser)
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--fold", type=int, default=0, help="validation fold")
    split.add_argument("--full", action="store_true", help="train on all data, no validation")
    split.add_argument("--cv", action="store_true",
                       help="cross-validation: every fold, then out-of-fold predictions (tfislr-cv)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--run-dir", default=None,
                       help="exact run folder; an unfinished one is resumed (default: a new "
                            "OUTPUT/<config>/<timestamp>, with --cv OUTPUT/<config>/cv/<timestamp>)")
    where.add_argument("--resume", action="store_true",
                       help="resume the unfinished run of this config under --output started "
                            "last, whatever its folder's name (starts a new run when there is "
                            "none)")
    return parser.parse_args(argv)


@command(PROG)
def main(argv=None):
    args = parse_args(argv)
    request = run_request(args, PROG, cv=args.cv)
    if args.cv:
        from tfislr.cli.cv import run_command

        return run_command(request, verbose=args.verbose, prog=PROG)

    from tfislr.training.run import TrainingRun

    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    try:
        TrainingRun(request, verbose=verbose).run()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command with --resume (or --run-dir "
              "<the run dir above>) to continue from the last finished epoch",
              file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
