"""`tfislr-prepare`: preprocess a Kaggle-layout data set into a prepared store per max_len (the
library side: `tfislr.data.prepare`)."""

import argparse
import pathlib
import sys

from tfislr.checks import check_int
from tfislr.cli.command import command, positive_int, start_tensorflow
from tfislr.cli.help import HelpFormatter
from tfislr.config import MIN_MAX_LEN

PROG = "tfislr-prepare"
# tfislr.data.prepare's shard size, repeated here so that `--help` needs no pandas; a test
# holds the two equal.
DEFAULT_SHARD_SIZE = 256


def max_len_arg(text):
    """argparse `type=` of --max-len: an int >= MIN_MAX_LEN, the bound of a config's
    data.max_len, so every store built can be trained on (else exit code 2)."""
    try:
        return check_int("max_len", int(text), minimum=MIN_MAX_LEN)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int >= {MIN_MAX_LEN} (the smallest data.max_len a config accepts), "
            f"got {text!r}"
        ) from None


def parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Preprocess a Kaggle-layout data set into a prepared store per max_len.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="folder with train.csv")
    parser.add_argument("--max-len", type=max_len_arg, nargs="+", required=True,
                        help="frames kept per clip: the store's max_len, matching a config's "
                             "data.max_len; one store OUT/max_len_<M> each, e.g. 25 80")
    parser.add_argument("--out", default=None, help="stores folder (default: DATA_DIR/prepared)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes (default: all cores)")
    parser.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE,
                        help="clips per shard file")
    parser.add_argument("--force", action="store_true", help="rebuild complete stores too")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@command(PROG)
def main(argv=None):
    args = parser().parse_args(argv)
    start_tensorflow()  # the workers' Preprocess runs TensorFlow
    from tfislr.data import store
    from tfislr.data.prepare import build_stamp, format_summary, prepare_store

    out = args.out if args.out is not None else pathlib.Path(args.data_dir).resolve() / "prepared"
    for max_len in args.max_len:
        before = build_stamp(store.store_dir(out, max_len))
        path = prepare_store(
            args.data_dir, max_len, out, args.workers, args.shard_size,
            force=args.force, progress=not args.quiet,
        )
        reused = before is not None and build_stamp(path) == before
        print(f"{format_summary(store.read_summary(path), reused)}; store: {path}")


if __name__ == "__main__":
    sys.exit(main())
