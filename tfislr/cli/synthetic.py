"""`python -m tfislr.data.synthetic` (also `python -m tfislr.cli.synthetic`): writes a
synthetic data set in the Kaggle asl-signs layout (the library side: `tfislr.data.synthetic`)."""

import argparse
import sys
import time

from tfislr.cli.command import command
from tfislr.text import plural

PROG = "python -m tfislr.data.synthetic"


def parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Write a synthetic data set in the Kaggle asl-signs layout.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--signs", type=int, default=10)
    parser.add_argument("--participants", type=int, default=8)
    parser.add_argument("--sequences-per-sign", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    return parser


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
