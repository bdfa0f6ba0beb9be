"""Writes the command-line reference (docs/cli.md) from the commands' own parsers.

    python scripts/cli_reference.py > docs/cli.md

Every console script of pyproject.toml (and each of its sub-commands) gets a section with
its `--help`, as `tfislr.cli.help.HelpFormatter` prints it at a fixed width of 100 columns,
so the page does not depend on the terminal. tests/cli/test_reference.py checks that the
committed page equals this output.

A command builds its parser inside `main` (some have no `parser()` function), so the parser
is caught where `main` hands it `--help`: `ArgumentParser.parse_known_args` raises it back
(a BaseException, which the commands' error contract lets through) before anything runs.
No TensorFlow is imported: commands parse their options first (tfislr/cli/command.py).
"""

import argparse
import contextlib
import importlib
import os
import pathlib
import sys
import tomllib
from unittest import mock

REPO = pathlib.Path(__file__).resolve().parents[1]
WIDTH = 100
REGENERATE = "python scripts/cli_reference.py > docs/cli.md"


class _Parser(BaseException):
    """Carries the parser a command built out of its `main`."""

    def __init__(self, parser):
        super().__init__(parser.prog)
        self.parser = parser


def console_scripts(pyproject=REPO / "pyproject.toml"):
    """{script name: "module:function"} of pyproject.toml's [project.scripts], in file order."""
    return tomllib.loads(pathlib.Path(pyproject).read_text())["project"]["scripts"]


def command_parser(target):
    """The ArgumentParser that the command `target` ("module:function") parses its options with."""
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)

    def catch(parser, *args, **kwargs):
        raise _Parser(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", catch):
        try:
            main(["--help"])
        except _Parser as caught:
            return caught.parser
    raise RuntimeError(f"{target} returned without parsing its options")


def sub_parsers(parser):
    """[(name, parser)] of the parser's sub-commands, in the order they were added."""
    found = []
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


@contextlib.contextmanager
def _columns(width):
    """argparse wraps to $COLUMNS (shutil.get_terminal_size): fix it while formatting."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def _section(level, title, parser):
    return [f"{'#' * level} `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]


def render(scripts=None):
    """The Markdown page: an introduction, then one section per command and sub-command."""
    scripts = console_scripts() if scripts is None else scripts
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from the commands' parsers; do not edit. Regenerate with",
        f"     {REGENERATE}",
        "     (tests/cli/test_reference.py checks that this page is current). -->",
        "",
        "Each command's `--help`. Every command exits with 0 on success, 2 on a bad input or",
        "option (one line on stderr naming the file or option and the problem), 1 on an",
        "unexpected error (with its traceback) and 130 when interrupted (tfislr/cli/command.py).",
        "",
    ]
    lines += [f"- [`{name}`](#{name})" for name in scripts] + [""]
    with _columns(WIDTH):
        for name, target in scripts.items():
            parser = command_parser(target)
            lines += _section(2, name, parser)
            for sub_name, sub in sub_parsers(parser):
                lines += _section(3, f"{name} {sub_name}", sub)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # this checkout's tfislr, as `python scripts/...` puts scripts/ first
    sys.stdout.write(render())
