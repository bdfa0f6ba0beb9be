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
distilled soup (`tfislr-cv`, tfislr/training/cross_validation.py); there `--run-dir` is the
CV folder and `--resume` continues the newest unfinished CV.
"""

import argparse
import os
import sys

from tfislr import atomic
from tfislr.cli.help import HelpFormatter
from tfislr.errors import INTERRUPTED, command, positive_int

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PROG = "tfislr-train"


def add_run_options(parser):
    """The options `tfislr-train` and `tfislr-cv` share: data, config, strategy, output."""
    parser.add_argument("--config", required=True, help=config_help())
    parser.add_argument("--data-dir", required=True, help="Kaggle layout: train.csv, sign map, train_landmark_files/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--strategy", default="default",
                        help="where to train: default = TF's default strategy, one device, "
                             "the GPU if there is one; mirrored = all local GPUs; multi_worker "
                             "= the cluster in TF_CONFIG; tpu; cpu:N or gpu:N[:MB] = N logical "
                             "devices")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="shortcut for --set train.epochs=N (default: the config's)")
    parser.add_argument("--output", default="runs", help="runs root folder")
    parser.add_argument("--force-prepare", action="store_true",
                        help="rebuild the prepared landmark store of the config's max_len "
                             "first, as tfislr-prepare --force does (default: reuse a store "
                             "that matches the data, rebuild a stale one)")
    parser.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                        help="Keras fit verbosity: 0 = silent, 1 = progress bar, 2 = one line "
                             "per epoch, auto = Keras's choice, which is the progress bar")


def config_help():
    """`--config`'s help: the training configs in configs/ (never the ensemble files)."""
    from tfislr.config import training_config_names

    return (f"training config: one of {', '.join(training_config_names())} (configs/<name>.yaml) "
            "or a YAML path")


def config_and_strategy(args):
    """The config (with `--set` and `--epochs`) and the strategy of parsed `add_run_options`,
    checked as far as they can be without data (`run.check_run_settings`), and the folder
    the run writes (`--run-dir`, `--cv-dir`, else `--output`) checked writable; with
    `--force-prepare`, the store is then rebuilt here, before the run reads it."""
    from tfislr.config import load_config

    # tfislr-train has --run-dir (its CV folder with --cv), tfislr-cv has --cv-dir.
    atomic.check_writable_dir(getattr(args, "run_dir", None) or getattr(args, "cv_dir", None)
                              or args.output)

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config(args.config, overrides)
    # Before anything else touches TF: `cpu:N` / `gpu:N` must split the device first.
    from tfislr.training.strategy import get_strategy

    strategy = get_strategy(args.strategy)
    from tfislr.training.run import check_run_settings

    # tfislr-train --fold K (not --full / --cv) trains fold K; tfislr-cv has no --fold.
    one_fold = not (getattr(args, "full", False) or getattr(args, "cv", False))
    check_run_settings(config, strategy, getattr(args, "fold", None) if one_fold else None)
    if args.force_prepare:
        from tfislr.data.prepare import ensure_store

        ensure_store(args.data_dir, config.data.max_len, config.data.prepared_dir, force=True)
    return config, strategy


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
    config, strategy = config_and_strategy(args)
    if args.cv:
        from tfislr.training.cross_validation import run_command

        return run_command(config, args.data_dir, strategy, args.output, args.run_dir,
                           args.resume, verbose=args.verbose, prog=PROG)

    from tfislr.training.run import train
    from tfislr.training.run_dir import resumable_run

    run_dir = args.run_dir
    if args.resume:
        run, notes = resumable_run(args.output, config)
        for note in notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        run_dir = run and run.path
        print(f"{PROG}: {'resuming ' + str(run_dir) if run_dir else 'no unfinished run; starting a new one'}",
              file=sys.stderr)

    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    try:
        train(
            config,
            args.data_dir,
            output_dir=args.output,
            fold=None if args.full else args.fold,
            full=args.full,
            strategy=strategy,
            run_dir=run_dir,
            verbose=verbose,
        )
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command with --resume (or --run-dir "
              "<the run dir above>) to continue from the last finished epoch",
              file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
