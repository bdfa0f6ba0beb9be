"""The export on disk: `<name>.tflite` and its report `<name>.json`, which records the file's
sha256, so a report is never read for another export's file.

No file system renames two files at once, so a crash can come between the two renames
that put a new pair in place. The report goes first, then the file:

| a crash leaves                          | a reader (`read_report`) sees                 |
| --------------------------------------- | --------------------------------------------- |
| the new report, the old file            | the sha256 differs: `DataError`               |
| the new report, no file (first export)  | the file is missing (`MissingFileError`)      |
| the new pair (or the old one)           | a consistent pair                             |

The other order would leave, on a first export, a file without a report, which readers
take for a file exported elsewhere (no sign names, the default folds): a quiet wrong
answer instead of an error. Hashing the file (at most the 40 MB Kaggle limit) takes well
under a second.
"""

import hashlib
import json
import os
import pathlib

from tfislr import atomic
from tfislr.errors import DataError
from tfislr.text import plural

SHA256_KEY = "sha256"


def report_path(model_path):
    """`<name>.json` next to `<name>.tflite`."""
    return pathlib.Path(model_path).with_suffix(".json")


def rejected_paths(output_path):
    """`(<name>.rejected.tflite, <name>.rejected.json)`: a failed export of `output_path`."""
    rejected = pathlib.Path(output_path).with_suffix(".rejected.tflite")
    return rejected, report_path(rejected)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_pair(written_path, model_path, report):
    """Moves the file at `written_path` to `model_path` with `report` next to it, report
    first (see the module docstring); adds the file's sha256 to `report`."""
    report[SHA256_KEY] = sha256_of(written_path)
    atomic.write_json(report_path(model_path), report)
    os.replace(written_path, model_path)


def read_report(model_path):
    """The report next to `model_path` (`<name>.json`) as a dict; {} when there is none.

    Raises:
        DataError: the report is not a JSON object, records no sha256 (written before
            reports did) or another file's sha256 (an interrupted export).
    """
    model_path, path = pathlib.Path(model_path), report_path(model_path)
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); it should be {model_path}'s "
                        "export report") from None
    if not isinstance(report, dict):
        raise DataError(f"{path}: expected a JSON object, {model_path}'s export report")
    if SHA256_KEY not in report:
        raise DataError(f"{path}: records no sha256 of {model_path} (an older export?); "
                        f"export again, or remove {path} to use the file without its report")
    if model_path.is_file() and sha256_of(model_path) != report[SHA256_KEY]:
        raise DataError(f"{path}: does not match {model_path} (sha256 differs: an interrupted "
                        "export?); export again")
    return report


def check_signs(model_path, report, signs, source):
    """Refuses sign names (`signs`, by label, read from `source`) that disagree with the
    ones `model_path` was exported with (`report["signs"]`, the export report's).

    The one rule for every command that labels a model's outputs with names (predict,
    evaluate): names in another order (or other names) would silently relabel the classes.
    A report without sign names (a file exported elsewhere) has nothing to disagree with.

    Raises:
        DataError: naming `source`, the model and the first label whose names differ.
    """
    exported = report.get("signs")
    if exported is None or list(exported) == list(signs):
        return
    exported, signs = list(exported), list(signs)
    if len(exported) != len(signs):
        detail = f"{plural(len(signs), 'sign')}, the model's report {len(exported)}"
    else:
        label = next(i for i, (a, b) in enumerate(zip(exported, signs)) if a != b)
        detail = (f"label {label} is {signs[label]!r} there, {exported[label]!r} in the "
                  "model's report")
    raise DataError(f"{source} does not match the signs {model_path} was exported with "
                    f"({detail}, {report_path(model_path)}); its labels would be named wrongly")
