"""One Kaggle-ready TFLite file from one or more training runs.

The exported graph is the competition contract (DESIGN.md, "Exported TFLite"):
signature `serving_default`, input `inputs` float32 `[None, 543, 3]` (raw MediaPipe
frames, NaN where nothing was seen), output `outputs` float32 `[num_classes]`, the
average of the members' softmax probabilities. Each member brings its own
`Preprocess(max_len)` — the same TF code that built its training store — and its
(distilled soup) Keras model, so what trained is what ships.

After writing the file `export_ensemble` checks it and fails loudly (`ExportError`):
builtin ops only, size, TF-vs-TFLite parity, finite probabilities on edge inputs,
and it measures 1-thread latency. The report is printed and saved as JSON next to
the `.tflite` file.
"""

import dataclasses
import json
import pathlib
import time

import numpy as np

from tfislr import landmarks

# Kaggle's limit is "40 MB"; we read it as 40 * 10**6 bytes, which is stricter
# than the original notebook's MiB reading (bytes / 1024**2), so a file that
# passes here passes under either reading.
MAX_SIZE_MB = 40.0
BYTES_PER_MB = 1_000_000

QUANTIZATIONS = ("fp16", "fp32", "int8")

# Max |p_tflite - p_tf| over the parity clips, per weight format. Measured (trained
# demo model / full-size random len25+len80 ensemble): fp32 6e-7; fp16 5e-4 / 7e-6;
# int8 1.5e-2. Tolerances leave ~20x (fp16) and ~7x (int8) margin for bigger trained
# models while still catching real breakage (missing weights, wrong preprocessing,
# NaN), which moves probabilities by tenths.
# fp32: same arithmetic up to op reordering and XNNPACK kernels.
# fp16: weights rounded to half precision (relative error 2**-11), computed in fp32.
# int8: dynamic-range weights (per-channel int8) and int8 activations inside the
#   hybrid kernels; loose by nature — `evaluate` reports the accuracy change, which
#   is what matters (demo: identical fold-0 accuracy to fp32).
PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-1}

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "inputs"
OUTPUT_NAME = "outputs"
WEIGHT_CHOICES = ("distilled", "student", "teacher")


class ExportError(RuntimeError):
    """A written file breaks the contract: non-builtin op, too big, parity, NaN."""


# ----------------------------------------------------------------------------- members


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

    def __post_init__(self):
        # The exported graph is float32 whatever policy the model trained under.
        from tfislr.model.precision import float32_model

        self.model = float32_model(self.model)
        if self.preprocess is None:
            from tfislr.preprocessing import Preprocess

            self.preprocess = Preprocess(self.max_len)


def _has_outputs(model):
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def latest_run(config_name, runs_dir="runs", weights="distilled"):
    """The newest `runs/<config_name>/<timestamp>/` that holds the wanted weights.

    Timestamps sort lexically; a newer run still training (no soup file yet) is
    skipped, so exporting during training picks the last finished run.
    """
    root = pathlib.Path(runs_dir) / config_name
    if not root.is_dir():
        raise ValueError(f"no runs for config '{config_name}': {root} does not exist")
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    for run_dir in reversed(runs):
        if _weights_path(run_dir, weights).exists():
            return run_dir
    raise ValueError(
        f"no finished run for config '{config_name}' under {root}: none of "
        f"{[p.name for p in runs]} has {_weights_path(pathlib.Path('<run>'), weights)}"
    )


def _weights_path(run_dir, weights):
    run_dir = pathlib.Path(run_dir)
    if weights in WEIGHT_CHOICES:
        return run_dir / "models" / f"{weights}_soup.keras"
    path = pathlib.Path(weights)
    return path if path.is_absolute() else run_dir / path


def load_member(run_dir, weights="distilled", name=None):
    """Loads a run dir's model (`models/<weights>_soup.keras`), max_len and signs."""
    import keras

    import tfislr.model  # noqa: F401  (registers the layers for load_model)
    from tfislr.config import config_from_dict

    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise ValueError(f"{run_dir} is not a run dir: {config_path} is missing")
    config = config_from_dict(json.loads(config_path.read_text()))
    model_path = _weights_path(run_dir, weights)
    if not model_path.exists():
        raise ValueError(
            f"{run_dir}: weights '{weights}' not found at {model_path} "
            f"(choices: {', '.join(WEIGHT_CHOICES)} or a .keras path)"
        )
    signs_path = run_dir / "signs.json"
    signs = json.loads(signs_path.read_text()) if signs_path.exists() else None
    model = keras.saving.load_model(model_path, compile=False)
    return EnsembleMember(
        name=name or config.name,
        model=model,
        max_len=config.data.max_len,
        signs=signs,
        run_dir=str(run_dir),
        weights=str(weights),
    )


def resolve_member(spec, runs_dir="runs", default_weights="distilled"):
    """A member from a config name, a run dir, a dict or an `EnsembleMember`.

    Dict form (as in configs/ensemble.yaml): `{config: len80}` (latest run) or
    `{run: runs/len80/20260101-120000}`, optional `weights` and `name`.
    A bare string is a run dir when it is a directory holding config.json,
    otherwise a config name.
    """
    if isinstance(spec, EnsembleMember):
        return spec
    if isinstance(spec, (str, pathlib.Path)):
        path = pathlib.Path(spec)
        spec = {"run": str(path)} if (path / "config.json").exists() else {"config": str(spec)}
    if not isinstance(spec, dict):
        raise ValueError(f"an ensemble member must be a name, a run dir or a mapping, got {spec!r}")
    unknown = sorted(set(spec) - {"config", "run", "weights", "name"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in ensemble member {spec!r}")
    if ("config" in spec) == ("run" in spec):
        raise ValueError(f"ensemble member {spec!r} needs exactly one of 'config' or 'run'")
    weights = spec.get("weights", default_weights)
    if "config" in spec:
        run_dir = latest_run(spec["config"], runs_dir=runs_dir, weights=weights)
    else:
        run_dir = pathlib.Path(spec["run"])
        if not run_dir.is_dir():
            raise ValueError(f"ensemble member run dir {run_dir} does not exist")
    return load_member(run_dir, weights=weights, name=spec.get("name"))


def check_members_agree(members):
    """All members must predict the same classes in the same order."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    counts = {m.name: _output_size(m.model) for m in members}
    if len(set(counts.values())) != 1:
        raise ValueError(f"ensemble members disagree on num_classes: {counts}")
    with_signs = [m for m in members if m.signs is not None]
    for member in with_signs:
        if len(member.signs) != counts[member.name]:
            raise ValueError(
                f"member '{member.name}': signs.json lists {len(member.signs)} signs "
                f"but the model outputs {counts[member.name]} classes"
            )
        if member.signs != with_signs[0].signs:
            diff = next(
                i for i, (a, b) in enumerate(zip(member.signs, with_signs[0].signs)) if a != b
            )
            raise ValueError(
                f"ensemble members '{with_signs[0].name}' and '{member.name}' disagree on "
                f"the sign order: label {diff} is '{with_signs[0].signs[diff]}' vs "
                f"'{member.signs[diff]}'"
            )
    return next(iter(counts.values()))


def _output_size(model):
    import keras

    if _has_outputs(model):
        return int(model.outputs[0].shape[-1])
    probe = {
        "landmarks": np.zeros((1, 2, landmarks.NUM_POINTS, 3), np.float32),
        "padding_mask": np.ones((1, 2), np.float32),
    }
    return int(keras.ops.shape(model(probe, training=False))[-1])


# ----------------------------------------------------------------------------- graph


def build_ensemble_module(members):
    """The tf.Module whose `serving_default` is the exported signature."""
    import tensorflow as tf

    num_classes = check_members_agree(members)

    class EnsembleModule(tf.Module):
        """raw frames [T, 543, 3] -> mean of the members' softmax [num_classes]."""

        def __init__(self):
            super().__init__(name="tfislr_ensemble")
            self.num_classes = num_classes
            self.preprocessors = [m.preprocess for m in members]
            self.models = [m.model for m in members]
            # Keras 3 variables are not tf.Module-trackable: without exposing the
            # backing tf.Variables the converter writes an empty, all-NaN model.
            self.weight_values = [v.value for m in self.models for v in m.variables]

        @tf.function(
            input_signature=[tf.TensorSpec([None, landmarks.NUM_RAW_LANDMARKS, 3], tf.float32,
                                           name=INPUT_NAME)]
        )
        def serving_default(self, inputs):
            # inf is no measurement either. Preprocess already treats it as missing;
            # doing it here too keeps the contract for any custom `preprocess` (cheap:
            # one elementwise pass over the raw frames).
            frames = tf.where(tf.math.is_finite(inputs), inputs, tf.constant(np.nan, tf.float32))
            probabilities = []
            for preprocess, model in zip(self.preprocessors, self.models):
                points = preprocess(frames)[tf.newaxis]
                # Shape [1, T'] with the batch dim static: the converter can only lower
                # `mask[:, :, None]` (StridedSlice with new_axis_mask) when at most one
                # dim is unknown; tf.ones(tf.shape(...)) would leave both unknown.
                padding_mask = tf.ones_like(points[:, :, 0, 0])
                logits = model({"landmarks": points, "padding_mask": padding_mask},
                               training=False)
                probabilities.append(tf.nn.softmax(tf.cast(logits[0], tf.float32)))
            outputs = probabilities[0] if len(probabilities) == 1 else (
                tf.add_n(probabilities) / float(len(probabilities)))
            return {OUTPUT_NAME: tf.ensure_shape(outputs, [num_classes])}

    return EnsembleModule()


def _error_scopes(error):
    """Name scopes (e.g. `islr_classifier/embedding/strided_slice`) of the failing ops."""
    scopes = set()
    for data in getattr(error, "errors", None) or ():
        for call in data.location.call:
            scope = call.name.split("@", 1)[0]
            if "@" in call.name and not scope.endswith("PartitionedCall"):
                scopes.add(scope)
                break
    return scopes


def _reraise_conversion_error(error):
    """Turns the converter's wall of MLIR text into one line naming the ops."""
    text = str(error)
    for marker in ("TF Select ops:", "Custom ops:"):
        if marker in text:
            ops = text.split(marker, 1)[1].splitlines()[0].strip()
            # The MLIR locations name the layer that emitted each offending op.
            where = sorted(_error_scopes(error))
            at = f" at {', '.join(where[:6])}{' ...' if len(where) > 6 else ''}" if where else ""
            raise ExportError(
                f"the graph needs non-builtin TFLite ops ({marker[:-1]}: {ops}){at}; only "
                "TFLITE_BUILTINS are allowed in the competition runtime"
            ) from error
    raise ExportError(f"TFLite conversion failed: {text.splitlines()[-1] if text else error}") \
        from error


def convert(module, quantization="fp16", allow_select_tf_ops=False):
    """Converts `module.serving_default` to a TFLite flatbuffer (bytes).

    `allow_select_tf_ops` exists only so tests can produce a Flex model for the
    op guard; exports never set it.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    concrete = module.serving_default.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if allow_select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        # No representative dataset: dynamic-range quantization (int8 weights).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError and friends
        _reraise_conversion_error(error)


def model_ops(model_content):
    """Sorted names of the operators in a TFLite flatbuffer; custom ops by their code."""
    from tensorflow.lite.python import schema_py_generated as schema

    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAs(bytearray(model_content), 0)
    names = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes >= 127 live only in the new field; older ones are mirrored in both.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            names.add("CUSTOM:" + (custom.decode() if custom else "?"))
        else:
            names.add(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


def check_builtin_ops(model_content):
    """Raises ExportError naming any Select-TF (Flex) or custom op; returns the op list."""
    ops = model_ops(model_content)
    bad = [op for op in ops if op.startswith("CUSTOM:")]
    if bad:
        flex = [op.split(":", 1)[1] for op in bad if op.startswith("CUSTOM:Flex")]
        kind = "Select TF (Flex)" if flex else "custom"
        raise ExportError(
            f"the TFLite file contains {kind} op(s) {', '.join(op.split(':', 1)[1] for op in bad)}; "
            "the competition runtime has TFLITE_BUILTINS only"
        )
    return ops


# ----------------------------------------------------------------------------- checks


def probe_sequences(num_sequences=12, seed=0, lengths=None):
    """Raw-format clips `[T, 543, 3]` with the NaN patterns of real MediaPipe output.

    A body-like layout (face, pose, two hands near the body) that moves smoothly,
    with hands missing for spans of frames, frames with no hand at all, and
    lengths from 1 to 300 (the real sample: median 14, max 108 frames).
    """
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = [1, 3, 8, 14, 25, 40, 60, 80, 108, 150, 220, 300]
        lengths = [lengths[i % len(lengths)] for i in range(num_sequences)]
    clips = []
    for length in lengths:
        base = np.empty((landmarks.NUM_RAW_LANDMARKS, 3), np.float32)
        base[:, 0] = rng.uniform(0.3, 0.7, landmarks.NUM_RAW_LANDMARKS)
        base[:, 1] = rng.uniform(0.2, 0.9, landmarks.NUM_RAW_LANDMARKS)
        base[:, 2] = rng.normal(0.0, 0.05, landmarks.NUM_RAW_LANDMARKS)
        drift = np.cumsum(rng.normal(0.0, 0.01, (length, 1, 3)), axis=0)
        clip = (base[None] + drift + rng.normal(0.0, 0.003, (length, 543, 3))).astype(np.float32)
        for part in ("left_hand", "right_hand"):
            start, stop = landmarks.PART_ROWS[part]
            missing = rng.random(length) < rng.choice([0.0, 0.3, 0.8, 1.0])
            clip[missing, start:stop] = np.nan
        if length > 2:  # a span where the face tracker lost the face
            lost = rng.integers(0, length)
            clip[lost:lost + 2, 0:468] = np.nan
        clips.append(clip)
    return clips


def clips_from_data_dir(data_dir, num_sequences=16):
    """Raw clips read from a Kaggle-layout dir (evenly spaced rows of train.csv)."""
    from tfislr.data.kaggle import landmark_path, read_landmark_file, read_train_csv

    table = read_train_csv(data_dir)
    rows = np.unique(np.linspace(0, len(table) - 1, min(num_sequences, len(table))).astype(int))
    return [read_landmark_file(landmark_path(data_dir, table["path"].iloc[i])) for i in rows]


def edge_case_inputs():
    """The inputs the contract says must never crash or return NaN."""
    clips = probe_sequences(lengths=[10_000, 5], seed=123)
    long_clip = clips[0]
    long_clip[:, 468:489] = 0.5  # keep hands so the long clip really is long after filtering
    no_hands = clips[1].copy()
    for part in ("left_hand", "right_hand"):
        start, stop = landmarks.PART_ROWS[part]
        no_hands[:, start:stop] = np.nan
    with_inf = probe_sequences(lengths=[20], seed=7)[0]
    with_inf[3, 470] = np.inf
    with_inf[5, :, 1] = -np.inf
    with_inf[7, 0:100, 0] = np.inf
    return {
        "0_frames": np.zeros((0, 543, 3), np.float32),
        "1_frame": probe_sequences(lengths=[1], seed=3)[0],
        "1_frame_hand_only": _hand_only_frame(),
        "all_nan": np.full((12, 543, 3), np.nan, np.float32),
        "no_hands": no_hands,
        "inf_values": with_inf,
        "all_inf": np.full((4, 543, 3), np.inf, np.float32),
        "10000_frames": long_clip,
    }


def _hand_only_frame():
    frame = np.full((1, 543, 3), np.nan, np.float32)
    frame[0, 522:543] = np.linspace(0.4, 0.6, 63, dtype=np.float32).reshape(21, 3)
    return frame


def _runner(model_path=None, model_content=None, num_threads=1):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_path=None if model_path is None else str(model_path),
        model_content=model_content,
        num_threads=num_threads,
    )
    return interpreter.get_signature_runner(SIGNATURE_KEY)


def check_parity(module, model_path, clips, tolerance):
    """Max |TF - TFLite| of the probabilities over `clips`; ExportError above `tolerance`."""
    import tensorflow as tf

    runner = _runner(model_path)
    worst, agree = 0.0, 0
    for clip in clips:
        expected = module.serving_default(tf.constant(clip))[OUTPUT_NAME].numpy()
        got = runner(**{INPUT_NAME: clip})[OUTPUT_NAME]
        worst = max(worst, float(np.max(np.abs(expected - got))))
        agree += int(np.argmax(expected) == np.argmax(got))
    result = {
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "num_sequences": len(clips),
        "lengths": [int(len(c)) for c in clips],
        "argmax_agreement": agree / len(clips),
    }
    if not worst <= tolerance:
        raise ExportError(
            f"TF-vs-TFLite parity failed for {model_path}: max abs probability diff "
            f"{worst:.3g} > tolerance {tolerance:g}"
        )
    return result


def check_edge_cases(model_path, num_classes):
    """Every edge input must give finite probabilities summing to 1."""
    runner = _runner(model_path)
    results = {}
    for name, clip in edge_case_inputs().items():
        probs = runner(**{INPUT_NAME: clip})[OUTPUT_NAME]
        ok = (probs.shape == (num_classes,) and bool(np.all(np.isfinite(probs)))
              and abs(float(np.sum(probs)) - 1.0) < 1e-3 and bool(np.all(probs >= 0)))
        results[name] = {"ok": ok, "sum": float(np.sum(probs)), "argmax": int(np.argmax(probs))}
        if not ok:
            raise ExportError(
                f"{model_path}: edge input '{name}' (shape {clip.shape}) gave invalid "
                f"probabilities (shape {probs.shape}, sum {np.sum(probs)}, "
                f"finite {bool(np.all(np.isfinite(probs)))})"
            )
    return results


def check_size(model_path, max_size_mb=MAX_SIZE_MB):
    size = pathlib.Path(model_path).stat().st_size
    result = {
        "bytes": size,
        "mb": size / BYTES_PER_MB,
        "mib": size / 2**20,
        "max_mb": max_size_mb,
    }
    if max_size_mb is not None and size > max_size_mb * BYTES_PER_MB:
        raise ExportError(
            f"{model_path} is {size / BYTES_PER_MB:.2f} MB ({size:,} bytes), above the "
            f"{max_size_mb:g} MB limit; try --quantization int8 or smaller members"
        )
    return result


def measure_latency(model_path, clips, repeats=3, num_threads=1):
    """Wall-clock ms per sequence with one signature runner (as Kaggle ran it).

    The interpreter re-plans its memory whenever an input (or an internal tensor)
    grows beyond the largest size seen so far, which costs 100-250 ms for the
    full-size ensemble. That happens a handful of times per process, so the first
    pass over the clips is reported apart ("first_pass") and the median/p95 are
    the steady state of the following `repeats` passes.
    """
    runner = _runner(model_path, num_threads=num_threads)
    first = []
    for clip in clips:
        start = time.perf_counter()
        runner(**{INPUT_NAME: clip})
        first.append((time.perf_counter() - start) * 1000.0)
    times = []
    for _ in range(max(1, repeats)):
        for clip in clips:
            start = time.perf_counter()
            runner(**{INPUT_NAME: clip})
            times.append((time.perf_counter() - start) * 1000.0)
    summary = latency_summary(times, num_threads=num_threads)
    summary["first_pass"] = {"mean_ms": float(np.mean(first)), "max_ms": float(np.max(first))}
    return summary


def latency_summary(times_ms, num_threads=1):
    times = np.asarray(times_ms, np.float64)
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(np.mean(times)),
        "max_ms": float(np.max(times)),
        "num_calls": int(times.size),
        "num_threads": num_threads,
    }


# ----------------------------------------------------------------------------- export


def load_ensemble_config(path):
    """Reads configs/ensemble.yaml-style files: name, members, weights, quantization, output."""
    import yaml

    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"ensemble config {path} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    known = {"name", "members", "weights", "quantization", "output", "runs_dir"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    if not values.get("members"):
        raise ValueError(f"{path}: 'members' must list at least one run")
    values.setdefault("name", path.stem)
    return values


def export_ensemble(
    ensemble,
    output_path=None,
    quantization=None,
    *,
    runs_dir=None,
    weights=None,
    max_size_mb=MAX_SIZE_MB,
    parity_clips=None,
    parity_tolerance=None,
    latency_repeats=3,
    verbose=True,
):
    """Builds, converts, writes and checks the ensemble; returns the report dict.

    Args:
        ensemble: path of an ensemble YAML (configs/ensemble.yaml) or a list of
            members (config names, run dirs, `{config|run, weights}` dicts or
            `EnsembleMember`s).
        output_path: the .tflite to write; default the YAML's `output`, else
            `artifacts/<name>.tflite`. The report goes to `<output>.json`.
        quantization: "fp16" (default; fp16 weights), "fp32" or "int8"
            (dynamic-range int8 weights).
        runs_dir: where `runs/<config>/<timestamp>/` live (default "runs").
        weights: which soup to load when a member does not say (default
            "distilled").
        max_size_mb: size limit in MB (10**6 bytes); None disables the check.
        parity_clips: raw clips for parity and latency (default `probe_sequences()`),
            or a Kaggle-layout data dir whose clips to use (`clips_from_data_dir`).
        parity_tolerance: default `PARITY_TOLERANCE[quantization]`.

    Raises:
        ValueError: bad config or members that disagree on the classes.
        ExportError: a check failed (the file stays on disk for inspection).
    """
    name, config = "ensemble", {}
    if isinstance(ensemble, (str, pathlib.Path)) and pathlib.Path(ensemble).suffix in (
            ".yaml", ".yml"):
        config = load_ensemble_config(ensemble)
        name, specs = config["name"], config["members"]
    elif isinstance(ensemble, (list, tuple)):
        specs = list(ensemble)
    else:
        raise ValueError(
            f"ensemble must be an ensemble YAML path or a list of members, got {ensemble!r}"
        )
    quantization = quantization or config.get("quantization", "fp16")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    runs_dir = runs_dir or config.get("runs_dir", "runs")
    weights = weights or config.get("weights", "distilled")
    output_path = pathlib.Path(output_path or config.get("output") or f"artifacts/{name}.tflite")
    log = print if verbose else (lambda *a, **k: None)

    start = time.perf_counter()
    members = [resolve_member(s, runs_dir=runs_dir, default_weights=weights) for s in specs]
    num_classes = check_members_agree(members)
    module = build_ensemble_module(members)
    log(f"converting {len(members)} member(s) to TFLite ({quantization}) ...")
    content = convert(module, quantization)
    ops = check_builtin_ops(content)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_bytes(content)
    convert_seconds = time.perf_counter() - start

    signs = next((m.signs for m in members if m.signs is not None), None)
    report = {
        "path": str(output_path),
        "name": name,
        "quantization": quantization,
        "signature": SIGNATURE_KEY,
        "input": {"name": INPUT_NAME, "shape": [None, landmarks.NUM_RAW_LANDMARKS, 3]},
        "output": {"name": OUTPUT_NAME, "shape": [num_classes]},
        "num_classes": num_classes,
        "members": [
            {
                "name": m.name,
                "run_dir": m.run_dir,
                "weights": m.weights,
                "max_len": m.max_len,
                "num_params": int(sum(np.prod(v.shape) for v in m.model.weights)),
            }
            for m in members
        ],
        "ops": ops,
        "convert_seconds": round(convert_seconds, 1),
        "signs": signs,
    }
    report_path = output_path.with_suffix(".json")
    try:
        report["size"] = check_size(output_path, max_size_mb)
        if parity_clips is None:
            clips = probe_sequences()
        elif isinstance(parity_clips, (str, pathlib.Path)):
            clips = clips_from_data_dir(parity_clips)
        else:
            clips = list(parity_clips)
        tolerance = PARITY_TOLERANCE[quantization] if parity_tolerance is None else parity_tolerance
        report["parity"] = check_parity(module, output_path, clips, tolerance)
        report["edge_cases"] = check_edge_cases(output_path, num_classes)
        report["latency"] = measure_latency(output_path, clips, repeats=latency_repeats)
    except ExportError as error:
        report["error"] = str(error)
        raise
    finally:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["report_path"] = str(report_path)
    log(format_report(report))
    return report


def format_report(report):
    size, parity, latency = report["size"], report["parity"], report["latency"]
    members = ", ".join(f"{m['name']} (max_len {m['max_len']}, {m['num_params']:,} params)"
                        for m in report["members"])
    lines = [
        f"wrote {report['path']} ({report['quantization']}, {len(report['members'])} member(s): "
        f"{members})",
        f"  size     {size['mb']:.2f} MB = {size['mib']:.2f} MiB ({size['bytes']:,} bytes), "
        f"limit {size['max_mb']} MB",
        f"  ops      {len(report['ops'])} builtin op types, no Select TF / custom ops",
        f"  parity   max |TF - TFLite| = {parity['max_abs_diff']:.2e} "
        f"(tolerance {parity['tolerance']:g}) over {parity['num_sequences']} clips, "
        f"argmax agreement {parity['argmax_agreement']:.0%}",
        f"  edge     finite probabilities summing to 1 for: {', '.join(report['edge_cases'])}",
        f"  latency  median {latency['median_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms per "
        f"sequence ({latency['num_threads']} thread, {latency['num_calls']} calls; first pass "
        f"incl. memory re-planning: mean {latency['first_pass']['mean_ms']:.1f}, "
        f"max {latency['first_pass']['max_ms']:.1f} ms)",
        f"  report   {pathlib.Path(report['path']).with_suffix('.json')}",
    ]
    return "\n".join(lines)
