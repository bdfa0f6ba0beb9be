"""`python -m tfislr.data.synthetic` (also `python -m tfislr.cli.synthetic`): writes a
synthetic data set in the Kaggle asl-signs layout (the library side: `tfislr.data.synthetic`)."""

import argparse
import sys
import time

from tfislr.cli.command import command, non_negative_int, positive_int
from tfislr.cli.help import HelpFormatter
from tfislr.text import plural

PROG = "python -m tfislr.data.synthetic"


def parser():
    from tfislr.data.synthetic import MAX_SIGNS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Write a synthetic data set in the Kaggle asl-signs layout.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", required=True,
                        help="output folder (train.csv, sign map, train_landmark_files/)")
    parser.add_argument("--signs", type=_sign_count(MAX_SIGNS), default=10,
                        help=f"distinct signs, 1 to {MAX_SIGNS}")
    parser.add_argument("--participants", type=positive_int, default=8,
                        help="signers; each sign's clips are spread evenly over them")
    parser.add_argument("--sequences-per-sign", type=positive_int, default=24,
                        help="clips per sign (total = signs × sequences per sign)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="the data set is a pure function of the seed and the sizes")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="processes writing clips (default: all cores)")
    return parser


def _sign_count(maximum):
    """argparse `type=` of --signs: an int in [1, maximum]."""

    def sign_count(text):
        value = positive_int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum} signs, got {text!r}")
        return value

    return sign_count


@command(PROG)
def main(argv=None):
    arguments = parser()
    args = arguments.parse_args(argv)
    from tfislr.data.synthetic import write_synthetic_dataset  # numpy and pyarrow, no TF

    start = time.perf_counter()
    try:
        out = write_synthetic_dataset(
            args.out, args.signs, args.participants, args.sequences_per_sign, args.seed,
            num_workers=args.workers, progress=True,
        )
    except ValueError as error:
        arguments.error(str(error))
    total = args.signs * args.sequences_per_sign
    print(
        f"wrote {plural(total, 'sequence')} ({plural(args.signs, 'sign')}, "
        f"{plural(args.participants, 'participant')}) "
        f"to {out} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
