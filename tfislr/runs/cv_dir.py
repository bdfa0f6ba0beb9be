"""A cross-validation's folder: its layout, its lookups and its opening.

    <output>/<config>/cv/<timestamp>/
        cv.json                 config, data dir and weights (a resumed CV must match them), and
                                when the CV started (the "latest" CV is the one started last)
        fold_<k>/               an ordinary run directory (`tfislr.runs.run_dir`), validation fold k
        oof_fold_<k>.parquet    fold k's held-out clips predicted by fold k's soup
        oof.parquet             all folds: every prepared clip exactly once (`tfislr.runs.oof`)
        report.json             accuracy per fold and overall; written last: the CV is finished
        report.txt              once report.json exists

What fills it is `tfislr.training.cross_validation`.
"""

import json
import pathlib

from tfislr import atomic
from tfislr.config import comparable_config
from tfislr.errors import ConfigError, MissingFileError
from tfislr.runs.run_dir import (CV_FOLDER, STARTED_AT, by_start_time, check_own_dir, iso_time,
                                 new_timestamped_dir)

CV_FILE = "cv.json"
OOF_FILE = "oof.parquet"
REPORT_FILE = "report.json"
REPORT_TEXT_FILE = "report.txt"


def fold_dir(cv_dir, fold):
    return pathlib.Path(cv_dir) / f"fold_{fold}"


def fold_oof_path(cv_dir, fold):
    return pathlib.Path(cv_dir) / f"oof_fold_{fold}.parquet"


def cv_root(output_dir, config_name):
    return pathlib.Path(output_dir) / config_name / CV_FOLDER


def _cv_dirs(root):
    """The CV dirs (holding cv.json) under `root`, by `run_dir.start_time`, oldest first."""
    return by_start_time((p.parent for p in root.glob(f"*/{CV_FILE}")), CV_FILE)


def latest_unfinished_cv(output_dir, config_name):
    """The CV dir of `config_name` under `output_dir` started last without report.json, or
    None."""
    unfinished = [p for p in _cv_dirs(cv_root(output_dir, config_name))
                  if not (p / REPORT_FILE).exists()]
    return unfinished[-1] if unfinished else None


def latest_finished_cv(output_dir, config_name):
    """The finished CV dir of `config_name` started last (MissingFileError when there is
    none)."""
    root = cv_root(output_dir, config_name)
    finished = [p for p in _cv_dirs(root) if (p / REPORT_FILE).exists()]
    if not finished:
        raise MissingFileError(f"no finished cross-validation of '{config_name}' under {root}")
    return finished[-1]


def _cv_record(config, data_dir, weights):
    """What cv.json records of a CV's settings; a resumed CV must have the same."""
    return {"config": json.loads(json.dumps(config.to_dict())),
            "data_dir": str(pathlib.Path(data_dir).resolve()), "weights": weights}


def _cv_differences(cv_dir, wanted):
    """The keys of `wanted` (`_cv_record`) that the CV in `cv_dir` recorded otherwise (its
    config as `comparable_config`: not the strategy, an older CV's in today's spelling)."""
    saved = json.loads((pathlib.Path(cv_dir) / CV_FILE).read_text())
    if isinstance(saved.get("config"), dict):
        saved["config"] = comparable_config(saved["config"])
    wanted = {**wanted, "config": comparable_config(wanted["config"])}
    return sorted(key for key in wanted if saved.get(key) != wanted[key])


def resumable_cv(output_dir, config, data_dir, weights="distilled"):
    """(the CV `--resume` continues, or None; notes on the CVs it passed over): the last
    started unfinished CV of `config.name` with the same config, data dir and weights. One
    started otherwise is passed over with a note, never blocking `--resume` (as
    `run_dir.resumable_run` for runs)."""
    wanted = _cv_record(config, data_dir, weights)
    notes = []
    for cv_dir in reversed(_cv_dirs(cv_root(output_dir, config.name))):
        if (cv_dir / REPORT_FILE).exists():
            continue
        differs = _cv_differences(cv_dir, wanted)
        if not differs:
            return cv_dir, notes
        notes.append(f"passed over {cv_dir}: it was started with another "
                     f"{' and '.join(differs)}")
    return None, notes


def open_cv_dir(config, data_dir, weights, output_dir, cv_dir, log=print):
    """The CV dir to use (created; cv.json written) after checking a resumed one matches.
    A new one is `<output_dir>/<config>/cv/<timestamp>`, allocated atomically
    (`run_dir.new_timestamped_dir`).

    Raises:
        ConfigError: `cv_dir` holds a finished CV, or one started with another config, data
            dir or weights; or it is not a CV dir (`run_dir.check_own_dir`).
    """
    if cv_dir is None:  # a fresh <output>/<config>/cv/<timestamp>/
        cv_dir = new_timestamped_dir(cv_root(output_dir, config.name))
    cv_dir = pathlib.Path(cv_dir)
    check_own_dir(cv_dir, CV_FILE, "a cross-validation")
    wanted = _cv_record(config, data_dir, weights)
    if (cv_dir / CV_FILE).exists():
        if (cv_dir / REPORT_FILE).exists():
            raise ConfigError(f"{cv_dir} holds a finished cross-validation (report.json "
                             "exists); start a new one")
        differs = _cv_differences(cv_dir, wanted)
        if differs:
            raise ConfigError(
                f"{cv_dir} was started with another {' and '.join(differs)}; resume it with "
                "the same config, overrides, data dir and weights, or start a new CV"
            )
        log(f"resuming {cv_dir}")
    else:
        cv_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_json(cv_dir / CV_FILE, {**wanted, STARTED_AT: iso_time()})
        log(f"cv dir: {cv_dir}")
    return cv_dir
