"""A trained classifier loaded back from a finished run folder.

`load_trained(run_dir, weights)` is what cross-validation predicts with and what the export
wraps into an ensemble member (`tfislr.export.members.load_member`): both read run folders
through here, so neither imports the other.
"""

import dataclasses
import pathlib
import zipfile

from tfislr.config import MODEL_NAMES
from tfislr.errors import DataError, MissingFileError
from tfislr.runs import run_dir as run_dir_lib
from tfislr.runs.cv_dir import fold_dir
from tfislr.runs.run_dir import RunDir

WEIGHT_CHOICES = MODEL_NAMES  # the soup models of a run dir


@dataclasses.dataclass
class TrainedModel:
    """A finished run's Keras classifier (`models/<weights>_soup.keras`, as saved: its dtype
    policy is the run's) with what its run recorded."""

    model: object
    config: object  # the run's `tfislr.config.Config`
    signs: list  # signs.json: the class order, or None
    split: dict  # `RunDir.split()`, or None
    run_dir: pathlib.Path
    weights: str


# What a `.keras` archive holds first (Keras 3 `saving_lib`): the model's config.
KERAS_CONFIG_ENTRY = "config.json"


def check_keras_file(path, what):
    """Refuses `path` unless it is a Keras 3 `.keras` file: a zip archive holding the
    model's config. Keras itself answers anything else with a ValueError (or a KeyError
    inside the archive) and a traceback; this names the file and what was expected.

    `what` says where the path came from, e.g. "weights 'x.csv' of runs/demo/...".

    Raises:
        MissingFileError: `path` does not exist.
        DataError: `path` is a folder, has another suffix, or is not a `.keras` archive.
    """
    path = pathlib.Path(path)
    expected = f"{what}; expected {'|'.join(WEIGHT_CHOICES)} or a .keras path"
    if not path.exists():
        raise MissingFileError(f"{path}: file not found ({expected})")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a .keras model ({expected})")
    if path.suffix != ".keras":
        raise DataError(f"{path}: not a .keras model ({expected})")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .keras model: not a zip archive ({expected})")
    with zipfile.ZipFile(path) as archive:
        if KERAS_CONFIG_ENTRY not in archive.namelist():
            raise DataError(f"{path}: not a .keras model: the archive has no "
                            f"{KERAS_CONFIG_ENTRY} ({expected})")


def load_trained(run_dir, weights="distilled"):
    """Loads a finished run dir's model (`models/<weights>_soup.keras`, or a `.keras` path
    relative to the current directory, checked by `check_weights_match_run`), config, signs,
    split.

    Only a finished run (`RunDir.is_finished`) is loaded: the rule `train --resume` uses, so
    a run that resume would continue is never shipped or scored.

    Raises:
        MissingFileError: `run_dir` is not a run, not finished, or lacks the weights.
        DataError: `run_dir` is a cross-validation dir, the weights are no .keras model, or
            weights given as a path were trained with another config than the run's.
    """
    import keras

    import tfislr.model  # noqa: F401  (registers the layers for load_model)

    run = RunDir(run_dir)
    if not run.is_started:
        _refuse_cv_dir(run.path)
        raise MissingFileError(
            f"{run.file(run_dir_lib.CONFIG)}: file not found ({run.path} is not a run dir)"
        )
    if not run.is_finished:
        raise MissingFileError(
            f"{run.path} is not a finished run (no {run_dir_lib.FINISHED}); finish it with "
            f"`train.py ... --run-dir {run.path}`"
        )
    config = run.read_config()
    model_path = run.weights_path(weights)
    check_keras_file(model_path, f"weights '{weights}' of {run.path}")
    model = keras.saving.load_model(model_path, compile=False)
    signs = run.read_signs()
    if weights not in MODEL_NAMES:  # a run's own soups match it by construction
        check_weights_match_run(model, config, signs, model_path, run.path)
    return TrainedModel(model, config, signs, run.split(), run.path, str(weights))


def check_weights_match_run(model, config, signs, weights_path, run_path):
    """Refuses weights (`model`, loaded from `weights_path`) trained with another config than
    the run they are used with (`config`, its `signs`): the export puts the run's
    preprocessing (`data.max_len` frames) in front of them, which weights of another
    max_len, dims or classes would silently get wrong.

    Compared: the model's own record (`ISLRClassifier.get_config`) of max_len, classes and
    dims (the big or the distilled model's) against the run's config.

    Raises:
        DataError: naming the file, the run and every setting that differs; or the file is
            not a tfislr classifier (it records no max_len).
    """
    recorded = model.get_config() if hasattr(model, "get_config") else {}
    if "max_len" not in recorded:
        raise DataError(f"{weights_path}: not a tfislr classifier (it records no max_len), "
                        f"so it cannot be checked against {run_path}")
    dims = (recorded.get("dense_dim"), recorded.get("transfo_dim"))
    expected = {
        "data.max_len": (recorded["max_len"], config.data.max_len),
        "classes": (recorded.get("num_classes"), len(signs) if signs is not None else
                    recorded.get("num_classes")),
        **{f"model.{key}": (recorded.get(key), getattr(config.model, key))
           for key in ("embed_dim", "transfo_layers", "num_heads")},
    }
    allowed_dims = {(config.model.dense_dim, config.model.transfo_dim),
                    (config.model.distill_dense_dim, config.model.distill_transfo_dim)}
    differs = [f"{key} {got} vs {want}" for key, (got, want) in expected.items() if got != want]
    if dims not in allowed_dims:
        differs.append(f"dense/transfo dims {list(dims)} vs one of "
                       f"{sorted(map(list, allowed_dims))}")
    if differs:
        raise DataError(f"{weights_path}: trained with another config than the run {run_path} "
                        f"it is exported with (weights vs run: {', '.join(differs)}); export "
                        "the run the weights belong to")


def _refuse_cv_dir(path):
    """Raises `DataError` when `path` is a cross-validation dir (`tfislr.runs.cv_dir`): not a run itself, its runs are its `fold_<k>/` folders."""
    folds = sorted(p for p in pathlib.Path(path).glob(fold_dir("", "*").name)
                   if RunDir(p).is_started)
    if folds:
        raise DataError(f"{path}: is a cross-validation dir, not a run dir: its runs are in "
                        f"its fold_K/ subfolders ({', '.join(p.name for p in folds)}); give "
                        f"one of them, e.g. {folds[0]}")
