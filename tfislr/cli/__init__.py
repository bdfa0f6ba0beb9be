"""The command-line entry points that live in no other module: `tfislr-train`, `tfislr-export`,
`tfislr-model`.

The other commands keep their `main` next to the code they run (`tfislr.evaluate`,
`tfislr.predict`, `tfislr.data.prepare`, `tfislr.video.extract`,
`tfislr.training.cross_validation`, `tfislr.blend`). All of them follow the error contract
of `tfislr.errors` and format their `--help` with `tfislr.cli.help`; `pyproject.toml` lists
them as console scripts.
"""
