"""The ensemble's members: a Keras classifier with its preprocessing, loaded from a run dir.

`resolve_member` turns what a user names (a config's latest run, a run dir, a
`{config|run, weights}` mapping) into an `EnsembleMember`; `check_members_agree`
makes sure all members predict the same classes in the same order. Messages and the export
report's summary name a member by `member_label` (its name, run dir and weights): two runs
of one config share a name.
"""

import dataclasses
import pathlib
import zipfile

import numpy as np

from tfislr import landmarks as lm
from tfislr.config import MODEL_NAMES
from tfislr.errors import ConfigError, DataError, MissingFileError
from tfislr.training import run_dir as run_dir_lib
from tfislr.training.run_dir import RunDir

WEIGHT_CHOICES = MODEL_NAMES  # the soup models of a run dir


@dataclasses.dataclass
class EnsembleMember:
    """One model of the ensemble with everything its graph needs.

    `model` is a Keras classifier taking `{"landmarks": [B, T, 100, 3],
    "padding_mask": [B, T]}` and returning logits `[B, num_classes]`;
    `preprocess` maps raw frames `[T, 543, 3]` to `[T', 100, 3]` (default:
    `tfislr.preprocessing.Preprocess(max_len)`). A model built under a mixed dtype policy
    is replaced by its float32 rebuild (`tfislr.model.precision.float32_model`).
    """

    name: str
    model: object
    max_len: int
    signs: list = None
    run_dir: str = None
    weights: str = None
    preprocess: object = None
    split: dict = None  # the run's train/validation split (`RunDir.split()`), if recorded

    def __post_init__(self):
        # The exported graph is float32 whatever policy the model trained under.
        from tfislr.model.precision import float32_model

        self.model = float32_model(self.model)
        if self.preprocess is None:
            from tfislr.preprocessing import Preprocess

            self.preprocess = Preprocess(self.max_len)

    @property
    def label(self):
        """`member_label` of this member."""
        return member_label(self.name, self.run_dir, self.weights)


def member_label(name, run_dir=None, weights=None):
    """How messages name a member: `demo (runs/demo/20261130-1605, distilled)`.

    The name alone is ambiguous: two runs of one config (or two weights of one run) share
    it. A member built in memory, without a run dir or weights, is named by its name only.
    """
    where = ", ".join(str(part) for part in (run_dir, weights) if part is not None)
    return f"{name} ({where})" if where else name


def _has_outputs(model):
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def latest_run(config_name, runs_dir="runs", weights="distilled"):
    """The newest finished full-fit `runs/<config_name>/<timestamp>/` holding the wanted
    weights.

    "Finished" is `RunDir.is_finished`, the rule `train --resume` uses too: a newer run
    still training (or interrupted) is skipped, so exporting during training picks the
    last finished run. Only runs trained on all the data (`--full`) are looked up: a fold
    run never becomes the submission unnoticed; it is exported when named as a run dir.
    """
    return run_dir_lib.latest_finished(runs_dir, config_name, weights, full_fit=True).path


def training_data(split):
    """In words, the data a member trained on, from its run's recorded `split`."""
    if split is None:
        return "unknown data (its run recorded no split)"
    if split.get("full"):
        return "all the data (full fit)"
    return (f"all but fold {split.get('fold')} of {split.get('num_folds')} "
            f"({len(split.get('val_participants') or [])} signers held out)")


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


def load_member(run_dir, weights="distilled", name=None):
    """Loads a finished run dir's model (`models/<weights>_soup.keras`), max_len, signs, split.

    Only a finished run (`RunDir.is_finished`) is exported, by name or by lookup: the rule
    `train --resume` uses, so a run that resume would continue is never shipped.
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
    return EnsembleMember(
        name=name or config.name,
        model=model,
        max_len=config.data.max_len,
        signs=signs,
        run_dir=str(run.path),
        weights=str(weights),
        split=run.split(),
    )


def check_weights_match_run(model, config, signs, weights_path, run_path):
    """Refuses weights (`model`, loaded from `weights_path`) trained with another config than
    the run they are exported with (`config`, its `signs`): the export puts the run's
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
    """Raises `DataError` when `path` is a cross-validation dir (`tfislr.training.
    cross_validation`): not a run itself, its runs are its `fold_<k>/` folders."""
    from tfislr.training.cross_validation import fold_dir

    folds = sorted(p for p in pathlib.Path(path).glob(fold_dir("", "*").name)
                   if RunDir(p).is_started)
    if folds:
        raise DataError(f"{path}: is a cross-validation dir, not a run dir: its runs are in "
                        f"its fold_K/ subfolders ({', '.join(p.name for p in folds)}); give "
                        f"one of them, e.g. {folds[0]}")


def resolve_member(spec, runs_dir="runs", default_weights="distilled",
                   role="an ensemble member"):
    """A member from a config name, a run dir, a dict or an `EnsembleMember`.

    Dict form (as in configs/ensemble.yaml): `{config: len80}` (latest run) or
    `{run: runs/len80/20260101-120000}`, optional `weights` and `name`.
    A bare string is a run dir when it is a directory holding config.json,
    otherwise a config name. `role` says in the errors where the run dir was given
    (`tfislr-export single` passes its `--run`).

    Raises:
        ConfigError: a bad spec, or a run path that is a file.
        MissingFileError: the run dir does not exist, or is not a (finished) run.
        DataError: the run dir is a cross-validation dir (its runs are its `fold_K/`).
    """
    if isinstance(spec, EnsembleMember):
        return spec
    if isinstance(spec, (str, pathlib.Path)):
        path = pathlib.Path(spec)
        spec = {"run": str(path)} if RunDir(path).is_started else {"config": str(spec)}
    if not isinstance(spec, dict):
        raise ConfigError(f"an ensemble member must be a name, a run dir or a mapping, got {spec!r}")
    unknown = sorted(set(spec) - {"config", "run", "weights", "name"})
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in ensemble member {spec!r}")
    if ("config" in spec) == ("run" in spec):
        raise ConfigError(f"ensemble member {spec!r} needs exactly one of 'config' or 'run'")
    weights = spec.get("weights", default_weights)
    if "config" in spec:
        run_dir = latest_run(spec["config"], runs_dir=runs_dir, weights=weights)
    else:
        run_dir = pathlib.Path(spec["run"])
        if run_dir.is_file():
            holder = (f"; the run dir holding it is {run_dir.parent}"
                      if RunDir(run_dir.parent).is_started else "")
            raise ConfigError(f"{run_dir}: is a file, not a run dir ({role}){holder}")
        if not run_dir.is_dir():
            raise MissingFileError(f"{run_dir}: run dir not found ({role})")
    return load_member(run_dir, weights=weights, name=spec.get("name"))


def check_members_agree(members):
    """All members must predict the same classes in the same order; returns num_classes.

    Each member is checked on its own, against the first, and named by its `label`: two
    members of one config share a name, never a check.

    Raises:
        ConfigError: no members; members whose models output different numbers of classes;
            a member whose signs.json does not match its model's output; members with
            signs in another order.
    """
    if not members:
        raise ConfigError("an ensemble needs at least one member")
    sizes = [_output_size(m.model) for m in members]
    if len(set(sizes)) != 1:
        raise ConfigError("ensemble members disagree on num_classes: " + ", ".join(
            f"{m.label} outputs {size}" for m, size in zip(members, sizes)))
    with_signs = [m for m in members if m.signs is not None]
    for member in with_signs:
        if len(member.signs) != sizes[0]:
            raise ConfigError(
                f"member '{member.label}': signs.json lists {len(member.signs)} signs "
                f"but the model outputs {sizes[0]} classes"
            )
        if member.signs != with_signs[0].signs:
            diff = next(
                i for i, (a, b) in enumerate(zip(member.signs, with_signs[0].signs)) if a != b
            )
            raise ConfigError(
                f"ensemble members '{with_signs[0].label}' and '{member.label}' disagree on "
                f"the sign order: label {diff} is '{with_signs[0].signs[diff]}' vs "
                f"'{member.signs[diff]}'"
            )
    return sizes[0]


def _output_size(model):
    import keras

    if _has_outputs(model):
        return int(model.outputs[0].shape[-1])
    probe = {
        "landmarks": np.zeros((1, 2, lm.NUM_POINTS, 3), np.float32),
        "padding_mask": np.ones((1, 2), np.float32),
    }
    return int(keras.ops.shape(model(probe, training=False))[-1])
