"""The one JSON convention of every command with a machine-readable result (predict,
evaluate, blend, stream):

    --json           print the result as JSON on stdout, instead of the table
    --json-out PATH  also write it to PATH, as JSON (the table still prints)

As `gh ... --json`, `kubectl -o json` or `terraform show -json`: the flag changes what
stdout carries (pipe it to `jq`), and a file is named by an option that takes a path. Notes
and progress go to stderr either way, so `--json` output always parses.
"""

import json

from tfislr import atomic


def add_json_options(parser, what, flag_group=None):
    """Adds `--json` and `--json-out PATH` to `parser`; `what` names the result ("the
    predictions", "the full report"). `flag_group`: where `--json` goes instead (a
    mutually exclusive group: stream's --json or --live; a file is written either way)."""
    (flag_group or parser).add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout instead of the table")
    parser.add_argument("--json-out", metavar="PATH",
                        help=f"also write {what} as JSON to PATH")


def check_json_out(args):
    """Refuses (ConfigError) a `--json-out` that cannot be written: call it before the work."""
    if args.json_out:
        atomic.check_writable_file(args.json_out)


def emit(args, result, table):
    """`result` (JSON-serialisable) as JSON on stdout with `--json`, else `table()` (a
    callable returning text, or None for no table); then `--json-out`'s file, if given."""
    if args.json:
        print(json.dumps(result, indent=2))
    elif table is not None:
        text = table()
        if text:
            print(text)
    if args.json_out:
        atomic.write_json(args.json_out, result)
