"""The command-line entry points that live in no other module: `tfislr-train`, `tfislr-export`.

The other commands keep their `main` next to the code they run (`tfislr.evaluate`,
`tfislr.predict`, `tfislr.data.prepare`, `tfislr.video.extract`). All of them follow the
error contract of `tfislr.errors`; `pyproject.toml` lists them as console scripts.
"""
