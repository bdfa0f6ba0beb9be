"""Typed run configuration: YAML files (shipped in `tfislr/configs/`, or a user's own), `--set key=value` overrides.

A config has five sections (`data`, `model`, `augment`, `train`, `runtime`) plus a `name`.
Unknown keys and wrongly typed values raise `ValueError` naming the key, so a
typo in a YAML file or on the command line never silently falls back to a
default.
"""

import dataclasses
import importlib.resources
import json
import math
import pathlib
import typing

import numpy as np
import yaml

from tfislr import atomic
from tfislr.checks import check_range
from tfislr.errors import ConfigError

# The shipped configs are package data (tfislr/configs/, pyproject package-data), found through
# importlib.resources so a wheel install finds them too; tfislr is installed unzipped, so the
# resource folder is a real directory.
CONFIGS_DIR = pathlib.Path(str(importlib.resources.files("tfislr") / "configs"))

# The three models the mean-teacher recipe trains, in this order everywhere: the data
# views, the logits, the metrics, the checkpoints and the soup files (`<name>_soup.keras`).
MODEL_NAMES = ("student", "teacher", "distilled")

# The smallest data.max_len (also of a prepared store, tfislr.data.prepare): the stride of
# `tfislr.preprocessing.Preprocess` keeps at most max_len - 1 frames of a longer clip.
MIN_MAX_LEN = 2


@dataclasses.dataclass
class DataConfig:
    """Where the data lives, how it is split and how it is batched.

    Batch sizes are GLOBAL: clips per optimizer step summed over all replicas (the
    original: 32 on each of 8 GPUs = 256). Each replica gets `global / replicas`
    (`tfislr.training.batch_plan`), so the recipe is the same on any device count.
    """

    max_len: int = 80
    global_batch_size: int = 256
    eval_global_batch_size: int = 256
    num_folds: int = 4
    fold_seed: int = 42
    # The original's own participant -> fold map when the data's signers are the
    # competition's and num_folds is 4 (tfislr.data.folds); else grouped stratified folds.
    original_folds: bool = True
    # Prepared stores live here (one sub-folder per max_len); default: <data_dir>/prepared.
    prepared_dir: typing.Optional[str] = None


@dataclasses.dataclass
class ModelConfig:
    """Dimensions of the big (student/teacher) and the distilled (exported) model."""

    embed_dim: int = 16
    dense_dim: int = 256
    transfo_dim: int = 1024
    distill_dense_dim: int = 192
    distill_transfo_dim: int = 576
    transfo_layers: int = 3
    num_heads: int = 16
    drop_rate: float = 0.05
    # Where the position convolutions' sequence ends (one of POS_CONV_PADDINGS,
    # docs/recipe.md §20): "max_len" = the original's training, on batches padded to
    # exactly max_len frames; "extended" = past every clip's last frame.
    pos_conv_padding: str = "max_len"


@dataclasses.dataclass
class AugmentConfig:
    """Augmentation probabilities (docs/recipe.md §9, what the code ran)."""

    enabled: bool = True
    # Phase 2 (strength 2) starts at this fraction of the epochs.
    phase2_start: float = 0.5
    face_cutmix_p: float = 0.25  # phase 1 only
    # The CutMix partner is any clip of the same sign (the clip itself and its own signer
    # included), as the original's code drew it; true: only other signers' clips, as its
    # README describes (a clip whose sign no other signer has still draws from its own).
    face_cutmix_other_signer: bool = False
    hand_fill_p: float = 0.25  # phase 1 only
    # What the missing-hand fill does when it fires (one of HAND_FILLS, docs/recipe.md §9,
    # §20): "original" = as the original's code ran it (stale type ids): the left hand is
    # overwritten by the mirrored right hand in every frame, the right hand by the mirrored
    # left one only in frames without arms; "missing_frames" = as its README describes it:
    # only a hand absent in a frame is filled, from the present one.
    hand_fill: str = "original"
    interpolate_p: float = 0.5
    flip_p: float = 0.5
    rotate_p: float = 0.5
    max_rotation_degrees: float = 30.0
    crop_p: float = 0.5
    crop_p_phase2: float = 0.25
    crop_min_len: int = 20
    crop_max_fraction: float = 0.2
    scale_p: float = 0.25
    scale_min: float = 0.7
    scale_max: float = 1.3
    distortion_p: float = 0.25
    # Where the augmentation runs (one of AUGMENT_DEVICES): "host" = in the tf.data
    # pipeline; "accelerator" = batched in the train step on each replica's device, the
    # host only reading, padding and drawing the parameters (tfislr/augment_batch.py).
    device: str = "host"


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, mean teacher, distillation, mixup, soup (docs/recipe.md §10–§15)."""

    epochs: int = 100
    learning_rate: float = 3e-4
    warmup_prop: float = 0.25
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.4
    max_grad_norm: float = 10.0
    label_smoothing: float = 0.3
    ousm_k: int = 3
    # OUSM drops the ousm_k largest losses within each group of this many clips, and mixup
    # pairs clips within such a group: the original's per-GPU batch (32), kept on any
    # device count. A replica's batch must be a whole number of groups.
    batch_group_size: int = 32
    mix_proba: float = 0.5
    mix_alpha: float = 0.4
    # Mixup probability reaches 0 at this fraction of the epochs.
    mix_end_fraction: float = 0.9
    ema_decay: float = 0.97
    consistency_weight: float = 5.0
    rampup_prop: float = 0.25
    # From half-way, the distilled model trains with dropout off and frozen BN
    # statistics, as the original's code did (docs/recipe.md §12).
    distilled_inference_mode_second_half: bool = True
    # Uniform soup of the last N epochs' weights (the exported models used 11).
    soup_last_n: int = 11
    seed: int = 42


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how a run computes (as tensorflow/models' `RuntimeConfig`), not what it learns.

    Older configs and runs spell `precision` and `jit_compile` in the `train` section, and
    `train.mixed_precision: true|false`; `resolve_runtime_aliases` moves them here on load.
    """

    # Where to train, one of STRATEGY_NAMES (`tfislr.training.strategy.get_strategy`);
    # `--strategy NAME` is the command line's spelling of it. Batch sizes are global, so
    # the recipe is the same on any strategy, and a run may resume on another one.
    strategy: str = "default"
    # Keras dtype policy of the three models (one of PRECISIONS). mixed_float16 trains with
    # loss scaling; mixed_bfloat16 (A100/H100, TPU) needs none. Variables stay float32, and
    # the export always builds a float32 graph.
    precision: str = "float32"
    # XLA-compile the train step (`tfislr.training.mean_teacher`).
    jit_compile: bool = False


@dataclasses.dataclass
class Config:
    name: str = "custom"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path):
        """Writes the config as JSON atomically (a killed write leaves the old file or none)."""
        atomic.write_json(path, self.to_dict())


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
    "runtime": RuntimeConfig,
}


def empty_value_error(key):
    """The error for `key` left empty (`key:` or `key: null` in YAML) where a value is needed.

    Said as such: a null would otherwise reach a type check as "None" (or, for a string,
    become the text "None").
    """
    return ConfigError(f"config key '{key}' is empty (null); give it a value, or delete the key "
                       "to use its default")


def _coerce(value, annotation, key):
    """Checks and converts `value` to the field type; raises ValueError naming `key`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if value is None:
        raise empty_value_error(key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"config key '{key}' expects true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"config key '{key}' expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"config key '{key}' expects an integer, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        # NaN and inf pass no range check and only fail later, mid-run.
        if number is not None and math.isfinite(number):
            return number
        raise ValueError(f"config key '{key}' expects a finite number, got {value!r}")
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"config key '{key}' expects a text, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation} for '{key}'")


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
HAND_FILLS = ("original", "missing_frames")
POS_CONV_PADDINGS = ("max_len", "extended")
# Where the training augmentation runs (`augment.device`, docs/training.md).
AUGMENT_DEVICES = ("host", "accelerator")
# Keys that take one of a few names, each with its names (checked by `_check_keys`).
_CHOICES = {
    "model.pos_conv_padding": POS_CONV_PADDINGS,
    "augment.hand_fill": HAND_FILLS,
    "augment.device": AUGMENT_DEVICES,
    "runtime.precision": PRECISIONS,
}


def _yaml_text(value):
    """`value` as a YAML file or `--set` spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def resolve_runtime_aliases(values):
    """A config mapping with the old spellings of the runtime keys moved into `runtime`:
    `train.precision`, `train.jit_compile`, and the old boolean `train.mixed_precision:
    true|false` (= mixed_float16 | float32), as older YAML, `--set` and the config.json of
    older runs hold them. Returns a new mapping (`values` itself when it holds none).

    Raises:
        ValueError: two spellings of one key disagree, or `runtime` is not a mapping.
    """
    train = values.get("train")
    if not isinstance(train, dict) or not {"precision", "jit_compile", "mixed_precision"} & set(train):
        return values
    runtime = values.get("runtime") or {}
    if not isinstance(runtime, dict):
        raise ValueError(f"config section 'runtime' must be a mapping, got {runtime!r}")
    hints = typing.get_type_hints(RuntimeConfig)
    values, train, runtime = dict(values), dict(train), dict(runtime)
    source = {key: f"runtime.{key}" for key in runtime}  # where each runtime value came from
    for old, key in (("precision", "precision"), ("jit_compile", "jit_compile"),
                     ("mixed_precision", "precision")):
        if old not in train:
            continue
        given = _coerce(train.pop(old), bool if old == "mixed_precision" else hints[key],
                        f"train.{old}")
        value = ("mixed_float16" if given else "float32") if old == "mixed_precision" else given
        if key in runtime:
            earlier = _coerce(runtime[key], hints[key], source[key])
            if earlier != value:
                choices = f" (one of {', '.join(PRECISIONS)})" if key == "precision" else ""
                raise ValueError(f"train.{old}={_yaml_text(given)} contradicts {source[key]}="
                                 f"{_yaml_text(earlier)}; set only runtime.{key}{choices}")
        runtime[key], source[key] = value, f"train.{old}"
    values["runtime"] = runtime
    if train:
        values["train"] = train
    else:  # an override's section, emptied: no section rather than an empty one
        del values["train"]
    return values


# Keys added with a default other than what tfislr did before them: a recorded config (a
# run's config.json, a CV's cv.json) written before the key existed ran with this value (and
# a saved model without the argument: `ISLRClassifier.from_config`).
VALUE_BEFORE_KEY = {
    ("augment", "hand_fill"): "missing_frames",
    ("model", "pos_conv_padding"): "extended",
}


def recorded_config(values):
    """A config mapping as a run or a CV recorded it (config.json, cv.json), in today's
    terms: old spellings resolved (`resolve_runtime_aliases`), and each key added since with
    a new default filled with the value that run trained with (`VALUE_BEFORE_KEY`), so an
    older run is resumed, compared and exported as it was trained."""
    values = resolve_runtime_aliases(values)
    missing = [(section, key) for (section, key) in VALUE_BEFORE_KEY
               if isinstance(values.get(section), dict) and key not in values[section]]
    if not missing:
        return values
    values = dict(values)
    for section, key in missing:
        values[section] = {**values[section], key: VALUE_BEFORE_KEY[section, key]}
    return values


def comparable_config(values):
    """What of a recorded config mapping (`recorded_config`) a resumed run or CV must match:
    all of it except `runtime.strategy`: batch sizes are global, so a run may resume on other
    devices (and older runs recorded no strategy)."""
    values = recorded_config(values)
    runtime = {k: v for k, v in (values.get("runtime") or {}).items() if k != "strategy"}
    return {**values, "runtime": runtime}


STRATEGY_NAMES = ("default", "mirrored", "multi_worker", "tpu", "cpu:N", "gpu:N[:MB]")


def parse_strategy(name):
    """A strategy's name (`runtime.strategy`, `--strategy`; case and surrounding spaces do
    not matter, multi-worker and multiworker mean multi_worker) → (kind, count, memory_mb):
    ("default" | "mirrored" | "multi_worker" | "tpu", None, None), or for cpu:N / gpu:N[:MB]
    ("CPU" | "GPU", N, MB or None). Checks the name only; whether the machine has the
    devices is `tfislr.training.strategy.get_strategy`'s to find.

    Raises:
        ConfigError: not a strategy's name, or a device split out of form.
    """
    name = str(name).strip().lower()
    if name in ("default", "mirrored", "tpu"):
        return name, None, None
    if name in ("multi_worker", "multi-worker", "multiworker"):
        return "multi_worker", None, None
    if not name.startswith(("cpu:", "gpu:")):
        raise ConfigError(f"unknown strategy '{name}'; expected one of {', '.join(STRATEGY_NAMES)}")
    kind, _, rest = name.partition(":")
    forms = ("cpu:N with N >= 1, e.g. cpu:2" if kind == "cpu"
             else "gpu:N or gpu:N:MB with N and MB >= 1, e.g. gpu:8 or gpu:8:3500")
    try:
        numbers = [int(part) for part in rest.split(":")]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= (2 if kind == "gpu" else 1):
        problem = "not a valid form"
    elif numbers[0] < 1:
        problem = f"the device count must be >= 1, got {numbers[0]}"
    elif len(numbers) == 2 and numbers[1] < 1:
        problem = f"the MB per device must be >= 1, got {numbers[1]}"
    else:
        return kind.upper(), numbers[0], (numbers[1] if len(numbers) == 2 else None)
    raise ConfigError(f"strategy '{name}': {problem}; valid: {forms}")


def strategy_name(name):
    """The standard spelling of a strategy's name, as the docs write it and config.json and
    run.json record it: " Mirrored" -> "mirrored", "Multi-Worker" -> "multi_worker",
    "CPU:02" -> "cpu:2", "gpu:8:3500" as is.

    Raises:
        ConfigError: not a strategy's name (`parse_strategy`).
    """
    kind, count, memory_mb = parse_strategy(name)
    if count is None:
        return kind
    return ":".join(str(part) for part in (kind.lower(), count, memory_mb) if part is not None)


# Keys that older configs (and the config.json of older runs) may still hold.
_RENAMED = {
    "data.batch_size": "now data.global_batch_size, the batch of all replicas together "
                       "(the recipe: 256 = the old 32 per replica × 8 GPUs)",
    "data.eval_batch_size": "now data.eval_global_batch_size, all replicas together",
    "data.shuffle_buffer": "removed (every epoch is a full permutation); delete the key",
}


def _build_section(section_cls, values, section_name):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config section '{section_name}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        renamed = [f"{section_name}.{k}: {_RENAMED[f'{section_name}.{k}']}" for k in unknown
                   if f"{section_name}.{k}" in _RENAMED]
        raise ValueError(
            f"unknown key(s) in config section '{section_name}': {', '.join(unknown)}; "
            + (f"{'; '.join(renamed)}; " if renamed else "")
            + f"known keys: {', '.join(sorted(known))}"
        )
    kwargs = {
        k: _coerce(v, hints[k], f"{section_name}.{k}") for k, v in values.items()
    }
    return section_cls(**kwargs)


def config_from_dict(values):
    """Builds a validated `Config` from a nested dict (as in YAML or config.json)."""
    if not isinstance(values, dict):
        raise ValueError(f"a config must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_SECTIONS) - {"name"})
    if unknown:
        raise ValueError(
            f"unknown config section(s): {', '.join(unknown)}; "
            f"expected name, {', '.join(_SECTIONS)}"
        )
    values = resolve_runtime_aliases(values)
    config = Config(
        name=_coerce(values.get("name", "custom"), str, "name"),
        **{name: _build_section(cls, values.get(name), name) for name, cls in _SECTIONS.items()},
    )
    validate(config)
    # One spelling of the strategy in everything the run records (validate checked the name).
    return dataclasses.replace(config, runtime=dataclasses.replace(
        config.runtime, strategy=strategy_name(config.runtime.strategy)))


# Allowed values of single keys: key -> (low, high, low_open, high_open); None = unbounded.
# Every range the code relies on is checked here, when the config is built, so a bad
# `--set` fails at once instead of after the store was prepared.
_PROBABILITY = (0.0, 1.0, False, False)
_RANGES = {
    "data.max_len": (MIN_MAX_LEN, None, False, False),
    "data.global_batch_size": (1, None, False, False),
    "data.eval_global_batch_size": (1, None, False, False),
    "data.num_folds": (2, None, False, False),
    **{
        f"model.{key}": (1, None, False, False)
        for key in ("embed_dim", "dense_dim", "transfo_dim", "distill_dense_dim",
                    "distill_transfo_dim", "transfo_layers", "num_heads")
    },
    "model.drop_rate": (0.0, 1.0, False, True),
    **{
        f"augment.{key}": _PROBABILITY
        for key in ("face_cutmix_p", "hand_fill_p", "interpolate_p", "flip_p", "rotate_p",
                    "crop_p", "crop_p_phase2", "scale_p", "distortion_p",
                    "crop_max_fraction", "phase2_start")
    },
    "augment.max_rotation_degrees": (0.0, None, False, False),
    "augment.crop_min_len": (0, None, False, False),
    "augment.scale_min": (0.0, None, True, False),
    "train.epochs": (1, None, False, False),
    "train.learning_rate": (0.0, None, True, False),
    "train.warmup_prop": (0.0, 1.0, False, True),
    "train.beta_1": (0.0, 1.0, False, True),
    "train.beta_2": (0.0, 1.0, False, True),
    "train.epsilon": (0.0, None, True, False),
    "train.weight_decay": (0.0, None, False, False),
    "train.max_grad_norm": (0.0, None, False, False),  # 0: no clipping
    "train.label_smoothing": (0.0, 1.0, False, True),
    "train.ousm_k": (0, None, False, False),
    "train.batch_group_size": (1, None, False, False),
    "train.mix_proba": _PROBABILITY,
    "train.mix_alpha": (0.0, None, True, False),
    "train.ema_decay": _PROBABILITY,
    "train.consistency_weight": (0.0, None, False, False),
    "train.rampup_prop": _PROBABILITY,
    "train.soup_last_n": (1, None, False, False),
}


# TF indexes tensors, and TFLite stores shapes, with int32: no count or size may pass this.
INT32_MAX = 2**31 - 1
# Seeds feed numpy's generators (and keras.utils.set_random_seed), which take [0, 2**32).
_SEEDS = {"data.fold_seed", "train.seed"}


# Every float key becomes a float32 in a tensor: a larger magnitude is ±inf there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smaller magnitudes lose their precision


def _int_bounds(dotted):
    """(low, high) every integer key has beyond `_RANGES`: seeds numpy's, the rest int32's."""
    return (0, 2**32 - 1) if dotted in _SEEDS else (None, INT32_MAX)


def _check_keys(name, section, keys=None):
    """Checks the range (`_RANGES`; for every integer key also `_int_bounds`) of `keys`
    (default: all) of one section, and the names of choices (`_CHOICES`, the strategy):
    the checks of single values, without the rules between keys."""
    for dotted, (low, high, low_open, high_open) in _RANGES.items():
        prefix, key = dotted.split(".")
        if prefix == name and (keys is None or key in keys):
            check_range(dotted, getattr(section, key), low, high, low_open, high_open)
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if (isinstance(value, int) and not isinstance(value, bool)
                and (keys is None or field.name in keys)):
            check_range(f"{name}.{field.name}", value, *_int_bounds(f"{name}.{field.name}"))
        elif isinstance(value, float) and (keys is None or field.name in keys):
            check_range(f"{name}.{field.name}", value, -FLOAT32_MAX, FLOAT32_MAX)
            if 0 < abs(value) < FLOAT32_TINY:
                raise ValueError(f"{name}.{field.name} must be 0 or at least {FLOAT32_TINY:.3g} "
                                 f"in magnitude (a float32 rounds {value!r} to 0), got {value!r}")
    for dotted, choices in _CHOICES.items():
        prefix, key = dotted.split(".")
        if prefix == name and getattr(section, key) not in choices:
            raise ValueError(f"{dotted} must be one of {', '.join(choices)}, got "
                             f"{getattr(section, key)!r}")
    if name == "runtime":
        try:
            parse_strategy(section.strategy)
        except ConfigError as error:
            raise ValueError(f"runtime.strategy: {error}") from None


def validate_section(name, section):
    """Checks the keys of one section (e.g. an `AugmentConfig` built in code) and its own rules."""
    _check_keys(name, section)
    if name == "augment" and section.scale_min > section.scale_max:
        raise ValueError(
            f"augment.scale_min ({section.scale_min}) must be <= augment.scale_max "
            f"({section.scale_max})"
        )
    if name == "train" and section.batch_group_size <= section.ousm_k:
        raise ValueError(
            f"train.batch_group_size ({section.batch_group_size}) must exceed train.ousm_k "
            f"({section.ousm_k}): OUSM drops that many clips in each group"
        )
    if name == "model":
        for key in ("transfo_dim", "distill_transfo_dim"):
            width = getattr(section, key)
            if width % section.num_heads:
                raise ValueError(
                    f"model.{key} ({width}) must be divisible by model.num_heads "
                    f"({section.num_heads})"
                )


def check_name(name):
    """`name` if it can name a folder under the output root: one non-empty path component.

    The run folder is `<output>/<name>/<timestamp>`, so a `/`, `..` or an empty name would
    put runs outside their place (e.g. `name=../../tmp/x` writes to /tmp/x).
    """
    if (not isinstance(name, str) or name in ("", ".", "..")
            or any(c in name for c in ("/", "\\", "\0"))):
        raise ValueError(
            f"name must be one folder name (not empty, '.' or '..', no '/' or '\\'), "
            f"got {name!r}"
        )
    return name


def check_tensor_sizes(config):
    """Refuses sizes whose largest tensors the code cannot hold: each must have at most
    `INT32_MAX` elements (TF's int32 indexing, TFLite's int32 shapes; a larger one fails
    mid-run with an overflow, and needs ≥ 8 GB anyway). Counted at the configured global
    batch (a replica gets a part of it, but a single device gets all of it):

    - the attention scores `[batch, num_heads, max_len, max_len]` of every DeBERTa layer;
    - the relative-position table `[2 max_len, width]` (its buckets are max_len);
    - the activations `[batch, max_len, width]` and `[batch, max_len, 100, embed_dim]`;
    - a layer's weights `[width, width]`;

    with `width` the widest of the model's dims.

    Raises:
        ConfigError: naming the tensor, its shape from the keys, and the keys to lower.
    """
    from tfislr.landmarks import NUM_POINTS

    data, model = config.data, config.model
    batch = max(data.global_batch_size, data.eval_global_batch_size)
    length = data.max_len
    width = max(model.dense_dim, model.transfo_dim, model.distill_dense_dim,
                model.distill_transfo_dim)
    tensors = (
        ("the attention scores [batch, model.num_heads, data.max_len, data.max_len]",
         (batch, model.num_heads, length, length)),
        ("the relative-position table [2 data.max_len, width]", (2 * length, width)),
        ("the activations [batch, data.max_len, width]", (batch, length, width)),
        ("the point embeddings [batch, data.max_len, points, model.embed_dim]",
         (batch, length, NUM_POINTS, model.embed_dim)),
        ("a layer's weights [width, width]", (width, width)),
    )
    for what, shape in tensors:
        if math.prod(shape) > INT32_MAX:
            raise ConfigError(
                f"{what} would be {list(shape)} = {math.prod(shape):.3g} elements, above the "
                f"{INT32_MAX} that TF and TFLite index (batch: the larger of "
                f"data.global_batch_size and data.eval_global_batch_size; width: the widest "
                f"model dim); lower data.max_len, the batch or the model's dims")


def validate(config):
    """Checks the name, every key's range (`_RANGES`), the rules that tie keys together and
    the tensor sizes they make (`check_tensor_sizes`)."""
    check_name(config.name)
    for name in _SECTIONS:
        validate_section(name, getattr(config, name))
    check_tensor_sizes(config)
    if config.data.global_batch_size % config.train.batch_group_size:
        raise ValueError(
            f"data.global_batch_size ({config.data.global_batch_size}) must be a multiple of "
            f"train.batch_group_size ({config.train.batch_group_size}): OUSM and mixup work "
            "on whole groups"
        )


def apply_overrides(values, overrides):
    """Applies `section.key=value` strings to a nested dict (values parsed as YAML).

    The overrides are gathered first and their old spellings resolved together
    (`resolve_runtime_aliases`), then laid over `values` (resolved on its own): so
    `--set train.precision=X` overrides a file's `runtime.precision` as `--set
    runtime.precision=X` does, and two overrides that spell one key differently must agree.

    Raises:
        ValueError: an override is not `section.key=value` with a known section, its
            value is not valid YAML, or two overrides contradict.
    """
    values = resolve_runtime_aliases(json.loads(json.dumps(values)))  # a deep copy
    changes = {}
    for item in overrides or ():
        if "=" not in item:
            raise ValueError("expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) == 1 and parts[0] == "name":
            changes["name"] = raw
            continue
        if len(parts) != 2 or parts[0] not in _SECTIONS:
            raise ValueError(
                f"the key '{dotted}' must be section.key with section one of {', '.join(_SECTIONS)}"
            )
        section, key = parts
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ValueError(f"the value of '{dotted}' is not valid YAML ({problem})") from None
        changes.setdefault(section, {})[key] = value
    for section, change in resolve_runtime_aliases(changes).items():
        if section == "name":
            values["name"] = change
            continue
        if values.get(section) is None:
            values[section] = {}
        values[section].update(change)
    return values


def check_override_value(item):
    """Checks one `section.key=value` override on its own: the key, the value's type and
    range, as the config checks them (a `name=` override: the folder name).

    Every override is checked so, also one that a later override of the same key (or a
    command option such as `--epochs`, which the CLI appends as one) replaces: a typo is
    an error wherever it stands. Rules between keys are left to the final config, so an
    order of overrides that passes through an invalid combination stays fine.

    Raises:
        ValueError: the override is not valid on its own.
    """
    parsed = apply_overrides({}, [item])
    if "name" in parsed:
        check_name(parsed["name"])
        return
    ((section, values),) = parsed.items()
    built = _build_section(_SECTIONS[section], values, section)
    _check_keys(section, built, set(values))


def _failure(values, overrides):
    """The message of the check that `values` with `overrides` fails, or None."""
    try:
        config_from_dict(apply_overrides(values, overrides))
    except ValueError as error:
        return str(error)
    return None


def _blamed_overrides(values, overrides, message):
    """The `--set` options a failed check (`message`) is about, as the user typed them.

    The file alone is valid, so some overrides cause the failure: each one is left out in
    turn and stays out when the rest still fail with `message`. What is left is one
    override (a bad key or value) or the few that break a rule between keys together.
    """
    blamed = list(overrides)
    for i in reversed(range(len(blamed))):
        rest = blamed[:i] + blamed[i + 1:]
        if rest and _failure(values, rest) == message:
            blamed = rest
    shown = " ".join(f"--set {item}" for item in blamed)
    return shown if len(blamed) == 1 else f"{shown} together"


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def check_yaml_file_kind(path, what, alternative=""):
    """Refuses an existing `path` that is not a .yaml/.yml/.json file, saying it is not `what`
    (a .csv or a folder given by mistake is not "not found"); a missing path passes, for the
    caller to look elsewhere or say "not found". `alternative` is added to the expected kinds.

    Raises:
        ConfigError: `path` is a folder, or an existing file of another kind.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not {what}")
    if path.exists() and not (path.suffix in CONFIG_SUFFIXES and path.is_file()):
        raise ConfigError(f"{path}: not {what} (expected {', '.join(CONFIG_SUFFIXES)}"
                          f"{alternative})")


def shipped_config_path(name_or_path):
    """The shipped YAML (tfislr/configs/) that `name_or_path` names, or None.

    A bare name (`len80`, `ensemble`) names `tfislr/configs/<name>.yaml`. So does the path
    `configs/<name>.yaml` when no such file exists: the place the configs had in a checkout
    before they were shipped inside the package, which older commands and notes still give.
    """
    path = pathlib.Path(name_or_path)
    if len(path.parts) == 1 and path.suffix not in CONFIG_SUFFIXES:
        name = path.name
    elif path.parts[:-1] == ("configs",) and path.suffix == ".yaml" and not path.exists():
        name = path.stem
    else:
        return None
    candidate = CONFIGS_DIR / f"{name}.yaml"
    return candidate if candidate.is_file() else None


def resolve_config_path(name_or_path):
    """`len80` → `tfislr/configs/len80.yaml` (`shipped_config_path`); an existing
    .yaml/.yml/.json file is used as is.

    Raises:
        ConfigError: no such config; or the path exists but is a folder or a file of
            another kind (`check_yaml_file_kind`).
    """
    path = pathlib.Path(name_or_path)
    if path.suffix in CONFIG_SUFFIXES and path.is_file():
        return path
    candidate = shipped_config_path(name_or_path)
    if candidate is not None:
        return candidate
    check_yaml_file_kind(path, "a YAML config file", ", or a config name")
    if path.suffix in CONFIG_SUFFIXES or len(path.parts) > 1:  # meant as a file
        raise ConfigError(f"{path}: file not found")
    raise ConfigError(
        f"no config '{name_or_path}': not a file, and not one of "
        f"{', '.join(training_config_names())}"
    )


def _is_ensemble_file(values):
    """An ensemble file (configs/ensemble.yaml: `tfislr-export`'s input) lists `members`."""
    return isinstance(values, dict) and "members" in values


def training_config_names():
    """Names of the shipped training configs (tfislr/configs/; the ensemble files left out)."""
    return sorted(
        p.stem for p in CONFIGS_DIR.glob("*.yaml")
        if not _is_ensemble_file(yaml.safe_load(p.read_text()))
    )


def read_yaml_mapping(path):
    """A YAML (or JSON) file's top-level mapping.

    Raises:
        ConfigError: the file is not valid YAML, is empty (or only comments: a config that
            silently meant "all defaults" would fail much later, far from its cause), or
            holds something else than a mapping.
    """
    try:
        values = yaml.safe_load(pathlib.Path(path).read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if values is None:
        raise ConfigError(f"{path}: empty config")
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got a {type(values).__name__}")
    return values


def load_config(name_or_path, overrides=None):
    """Loads a shipped config by name (or a YAML/JSON path) and applies `--set` overrides.

    Raises `tfislr.errors.ConfigError` (a ValueError) naming the file and the bad value.
    """
    path = resolve_config_path(name_or_path)
    values = read_yaml_mapping(path)
    if _is_ensemble_file(values):
        raise ConfigError(
            f"{path}: an ensemble file (for `tfislr-export ensemble`), not a training config; "
            f"training configs: {', '.join(training_config_names())}"
        )
    values.setdefault("name", path.stem)
    try:
        config = config_from_dict(values)
    except ValueError as error:  # every check of the values
        raise ConfigError(f"{path}: {error}") from error
    if not overrides:
        return config
    for item in overrides:
        try:
            check_override_value(item)
        except ValueError as error:
            raise ConfigError(f"--set {item} (on {path.name}): {error}") from error
    try:
        return config_from_dict(apply_overrides(values, overrides))
    except ValueError as error:  # the file is valid: the --set values or their syntax are not
        blamed = _blamed_overrides(values, overrides, str(error))
        raise ConfigError(f"{blamed} (on {path.name}): {error}") from error
