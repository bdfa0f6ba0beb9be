"""`python export.py ...` = `tfislr-export ...`: see tfislr/cli/export.py."""

import sys

from tfislr.cli.export import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
