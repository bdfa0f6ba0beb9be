"""The ensemble's members: a Keras classifier with its preprocessing, loaded from a run dir.

`resolve_member` turns what a user names (a config's latest run, a run dir, a
`{config|run, weights}` mapping) into an `EnsembleMember`; `check_members_agree`
makes sure all members predict the same classes in the same order. Messages and the export
report's summary name a member by `member_label` (its name, run dir and weights): two runs
of one config share a name.
"""

import dataclasses
import pathlib

import numpy as np

from tfislr import landmarks as lm
from tfislr.errors import ConfigError, MissingFileError
from tfislr.runs import run_dir as run_dir_lib
from tfislr.runs.members import WEIGHT_CHOICES, check_keras_file, load_trained  # noqa: F401 - re-exported
from tfislr.runs.run_dir import RunDir
from tfislr.text import plural


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
            f"({plural(len(split.get('val_participants') or []), 'signer')} held out)")


def load_member(run_dir, weights="distilled", name=None):
    """The ensemble member of a finished run dir (`tfislr.runs.members.load_trained`): its
    model, max_len, signs and split; named `name`, else by its config."""
    trained = load_trained(run_dir, weights)
    return EnsembleMember(
        name=name or trained.config.name,
        model=trained.model,
        max_len=trained.config.data.max_len,
        signs=trained.signs,
        run_dir=str(trained.run_dir),
        weights=trained.weights,
        split=trained.split,
    )


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
                f"member '{member.label}': signs.json lists {plural(len(member.signs), 'sign')} "
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
