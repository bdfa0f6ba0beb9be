"""Every tfislr command: `tfislr-train`, `-cv`, `-prepare`, `-export`, `-evaluate`, `-predict`,
`-blend`, `-extract`, `-model` and `python -m tfislr.data.synthetic` (`synthetic.py`).

A command owns its argv: it parses and checks its options, then calls the library, which
never sees argv and never imports this package. `command.py` holds the exit-code contract;
`run_options.py` the options train and cv share; `help.py` the `--help` formatter.
`pyproject.toml` lists the console scripts; `python -m tfislr.evaluate` (and the like) hand
over to the command here.

TensorFlow loads only after the options are parsed and checked (see `command.py`), so
`--help`, a bad option and a bad config or `--set` answer without it
(tests/cli/test_command.py runs them with TensorFlow unimportable).
"""
