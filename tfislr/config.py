"""Typed run configuration: YAML files in `configs/`, `--set key=value` overrides.

A config has four sections (`data`, `model`, `augment`, `train`) plus a `name`.
Unknown keys and wrongly typed values raise `ValueError` naming the key, so a
typo in a YAML file or on the command line never silently falls back to a
default.
"""

import dataclasses
import json
import pathlib
import typing

import yaml

from tfislr.errors import ConfigError

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass
class DataConfig:
    """Where the data lives and how it is batched.

    `batch_size` is per replica (the original: 32 per GPU × 8 GPUs); the global
    batch is `batch_size * num_replicas_in_sync`.
    """

    max_len: int = 80
    batch_size: int = 32
    eval_batch_size: int = 128
    num_folds: int = 4
    fold_seed: int = 42
    shuffle_buffer: int = 16384
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


@dataclasses.dataclass
class AugmentConfig:
    """Augmentation probabilities (seed-spec §8, "what the code ran")."""

    enabled: bool = True
    # Phase 2 (strength 2) starts at this fraction of the epochs.
    phase2_start: float = 0.5
    face_cutmix_p: float = 0.25  # phase 1 only
    hand_fill_p: float = 0.25  # phase 1 only
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


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, mean teacher, distillation, mixup and soup settings (seed-spec §8–§9)."""

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
    mix_proba: float = 0.5
    mix_alpha: float = 0.4
    # Mixup probability reaches 0 at this fraction of the epochs.
    mix_end_fraction: float = 0.9
    ema_decay: float = 0.97
    consistency_weight: float = 5.0
    rampup_prop: float = 0.25
    # From half-way, the distilled model trains with dropout off and frozen BN
    # statistics, as the original's code did (seed-spec §9).
    distilled_inference_mode_second_half: bool = True
    # Uniform soup of the last N epochs' weights (the exported models used 11).
    soup_last_n: int = 11
    # Keras dtype policy of the three models (one of PRECISIONS). mixed_float16 trains with
    # loss scaling; mixed_bfloat16 (A100/H100, TPU) needs none. Variables stay float32, and
    # the export always builds a float32 graph. `mixed_precision: true` is an alias of
    # mixed_float16 (resolved on load, so config.json records `precision`).
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 42


@dataclasses.dataclass
class Config:
    name: str = "custom"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path):
        pathlib.Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
}


def _coerce(value, annotation, key):
    """Checks and converts `value` to the field type; raises ValueError naming `key`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"config key '{key}' expects a number, got {value!r}")
    if annotation is str:
        return str(value)
    raise TypeError(f"unsupported annotation {annotation} for '{key}'")


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _resolve_precision_alias(values):
    """`train.mixed_precision: true|false` (the old boolean) → `train.precision`."""
    if "mixed_precision" not in values:
        return values
    values = dict(values)
    flag = _coerce(values.pop("mixed_precision"), bool, "train.mixed_precision")
    precision = "mixed_float16" if flag else "float32"
    if values.setdefault("precision", precision) != precision:
        raise ValueError(
            f"train.mixed_precision={str(flag).lower()} contradicts train.precision="
            f"{values['precision']}; set only train.precision (one of {', '.join(PRECISIONS)})"
        )
    return values


def _build_section(section_cls, values, section_name):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config section '{section_name}' must be a mapping, got {values!r}")
    if section_cls is TrainConfig:
        values = _resolve_precision_alias(values)
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown key(s) in config section '{section_name}': {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
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
    config = Config(
        name=str(values.get("name", "custom")),
        **{name: _build_section(cls, values.get(name), name) for name, cls in _SECTIONS.items()},
    )
    validate(config)
    return config


def validate(config):
    """Cross-field checks that a single type check cannot express."""
    if config.data.max_len < 2:
        raise ValueError(f"data.max_len must be >= 2, got {config.data.max_len}")
    if config.data.batch_size <= config.train.ousm_k:
        raise ValueError(
            f"data.batch_size ({config.data.batch_size}) must exceed train.ousm_k "
            f"({config.train.ousm_k}): OUSM drops that many samples per replica batch"
        )
    for name in ("transfo_dim", "distill_transfo_dim"):
        width = getattr(config.model, name)
        if width % config.model.num_heads:
            raise ValueError(
                f"model.{name} ({width}) must be divisible by model.num_heads "
                f"({config.model.num_heads})"
            )
    if not 0.0 <= config.train.warmup_prop < 1.0:
        raise ValueError(f"train.warmup_prop must be in [0, 1), got {config.train.warmup_prop}")
    if config.train.epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {config.train.epochs}")
    if config.train.soup_last_n < 1:
        raise ValueError(f"train.soup_last_n must be >= 1, got {config.train.soup_last_n}")
    if config.train.precision not in PRECISIONS:
        raise ValueError(
            f"train.precision must be one of {', '.join(PRECISIONS)}, got "
            f"{config.train.precision!r}"
        )


def apply_overrides(values, overrides):
    """Applies `section.key=value` strings to a nested dict (values parsed as YAML)."""
    values = json.loads(json.dumps(values))  # deep copy
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) == 1 and parts[0] == "name":
            values["name"] = raw
            continue
        if len(parts) != 2 or parts[0] not in _SECTIONS:
            raise ValueError(
                f"override '{item}': the key must be section.key with section one of "
                f"{', '.join(_SECTIONS)}"
            )
        section, key = parts
        values.setdefault(section, {})
        if values[section] is None:
            values[section] = {}
        values[section][key] = yaml.safe_load(raw)
    return values


def resolve_config_path(name_or_path):
    """`len80` → `configs/len80.yaml`; an existing file path is used as is."""
    path = pathlib.Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        return path
    candidate = CONFIGS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    available = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
    raise ConfigError(
        f"no config '{name_or_path}': not a file, and not one of {', '.join(available)}"
    )


def load_config(name_or_path, overrides=None):
    """Loads `configs/<name>.yaml` (or a YAML/JSON path) and applies `--set` overrides.

    Raises `tfislr.errors.ConfigError` (a ValueError) naming the file and the bad value.
    """
    path = resolve_config_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    values.setdefault("name", path.stem)
    try:
        return config_from_dict(apply_overrides(values, overrides))
    except ValueError as error:  # every check of the values, and of the --set syntax
        raise ConfigError(f"{path}: {error}") from error
