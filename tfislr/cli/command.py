"""The exit-code wrapper of every tfislr command: the error contract of `tfislr.errors`, applied.

Every command's `main` is wrapped by `command(prog)`, which gives one rule:

| outcome                                | stderr                                   | exit code |
| -------------------------------------- | ---------------------------------------- | --------- |
| success                                | (the command's own output)               | 0         |
| `TfislrError`, or a bad option         | `<prog>: error: <message>` (one line)    | 2         |
| any other exception (a bug, the system)| the traceback, then `<prog>: error: ...` | 1         |
| Ctrl-C                                 | `<prog>: interrupted`                    | 130       |

A `DataWarning` (input tfislr can use but that is probably not what the user meant) is
printed as one line, `<prog>: warning: <message>`, and the command goes on.

Exit code 2 is also what argparse uses for a bad option, so "2" always means "change
the input and run again" and "1" always means "this is a bug or an environment fault:
read the traceback".

`positive_int`, `positive_float`, `non_negative_int` and `non_negative_float` are the
`type=` of numeric options, so a bad value is
argparse's own usage error (exit 2).

Where TensorFlow loads: never in this wrapper. A command parses its options and checks what
it can without TensorFlow (`--help`, a bad option, a bad config or `--set`), then calls
`start_tensorflow()` (tfislr.runtime: quiet start-up logs) and only then imports the library
modules that need TensorFlow, inside its `main`. tests/cli/test_command.py runs every console
script's `--help` with TensorFlow unimportable.
"""

import argparse
import functools
import math
import sys
import traceback
import warnings

from tfislr.errors import DataWarning, TfislrError
from tfislr.runtime import start_tensorflow  # noqa: F401 - re-exported for the commands

USER_ERROR = 2
UNEXPECTED_ERROR = 1
INTERRUPTED = 130


def _show_warning(prog, show):
    """`warnings.showwarning` for a command: a `DataWarning` as one line, the rest as `show`."""

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr if file is None else file)
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning


def report(prog, error):
    """Prints the one-line report of `error` for the command `prog` and returns its exit code."""
    if isinstance(error, TfislrError):
        one_line = " / ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"{prog}: error: {one_line}", file=sys.stderr)
        return USER_ERROR
    traceback.print_exception(error)
    print(f"{prog}: error: unexpected {type(error).__name__}: {error} "
          "(a bug or an environment fault; the traceback above shows where)", file=sys.stderr)
    return UNEXPECTED_ERROR


def command(prog):
    """Decorator for a command's `main(argv=None)`: applies the contract above.

    The wrapped `main` returns the exit code (0 when the command returns None) instead of
    raising, so it can be called from tests and from `sys.exit(main())` alike. argparse's
    own `SystemExit` (for `--help` or a bad option) passes through unchanged.
    """

    def decorate(main):
        @functools.wraps(main)
        def wrapped(argv=None):
            try:
                with warnings.catch_warnings():  # restores showwarning afterwards
                    warnings.showwarning = _show_warning(prog, warnings.showwarning)
                    code = main(argv)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return INTERRUPTED
            except Exception as error:  # noqa: BLE001 - the contract reports every exception
                return report(prog, error)
            return 0 if code is None else code

        wrapped.prog = prog
        return wrapped

    return decorate


def _int_at_least(low, expected, doc):
    """An argparse `type=` taking an int >= `low`; anything else is a usage error (exit 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__doc__ = doc
    return parse


positive_int = _int_at_least(
    1, "a positive integer", "argparse `type=`: an int >= 1; anything else exits 2.")
non_negative_int = _int_at_least(
    0, "a whole number >= 0", "argparse `type=`: an int >= 0 (a seed, a gap in frames).")


def non_negative_float(text):
    """argparse `type=`: a finite float >= 0 (a weight); NaN, inf and negatives exit 2."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive_float(text):
    """argparse `type=`: a finite float > 0; NaN, inf and the rest are a usage error (exit 2).

    `float()` alone accepts "nan" and "inf", which pass every `<`/`>` check (a size limit
    of nan would never fail).
    """
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value
