"""`python train.py ...` = `tfislr-train ...`: see tfislr/cli/train.py."""

import sys

from tfislr.cli.train import main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
