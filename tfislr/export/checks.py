"""Checks of a written file: size, TF-vs-TFLite parity, edge inputs, and their probe clips.

Each check returns its part of the export report and raises `ExportError` when
the file breaks the contract. `probe_sequences` and `edge_case_inputs` build
raw-format clips with the NaN patterns of real MediaPipe output; every row
number they use comes from `tfislr.landmarks`.
"""

import pathlib

import numpy as np

from tfislr import landmarks as lm
from tfislr.errors import DataError
from tfislr.export.contract import OUTPUT_NAME, ExportError
from tfislr.export.runner import TFLiteRunner
from tfislr.text import plural

# Kaggle's limit is "40 MB"; we read it as 40 * 10**6 bytes, which is stricter
# than the original notebook's MiB reading (bytes / 1024**2), so a file that
# passes here passes under either reading.
MAX_SIZE_MB = 40.0
BYTES_PER_MB = 1_000_000

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

RAW_FRAME = (lm.NUM_RAW_LANDMARKS, lm.NUM_COORDINATES)
# Clips of a data dir that the parity and latency checks run on (`clips_from_data_dir`).
PARITY_SEQUENCES = 16


def _rows(part):
    """The raw-frame rows of a MediaPipe part as a slice."""
    return slice(*lm.PART_ROWS[part])


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
        base = np.empty((lm.NUM_RAW_LANDMARKS, 3), np.float32)
        base[:, 0] = rng.uniform(0.3, 0.7, lm.NUM_RAW_LANDMARKS)
        base[:, 1] = rng.uniform(0.2, 0.9, lm.NUM_RAW_LANDMARKS)
        base[:, 2] = rng.normal(0.0, 0.05, lm.NUM_RAW_LANDMARKS)
        drift = np.cumsum(rng.normal(0.0, 0.01, (length, 1, 3)), axis=0)
        noise = rng.normal(0.0, 0.003, (length, lm.NUM_RAW_LANDMARKS, 3))
        clip = (base[None] + drift + noise).astype(np.float32)
        for part in ("left_hand", "right_hand"):
            start, stop = lm.PART_ROWS[part]
            missing = rng.random(length) < rng.choice([0.0, 0.3, 0.8, 1.0])
            clip[missing, start:stop] = np.nan
        if length > 2:  # a span where the face tracker lost the face
            lost = rng.integers(0, length)
            clip[lost:lost + 2, _rows("face")] = np.nan
        clips.append(clip)
    return clips


def spaced_rows(num_rows, num_sequences):
    """Up to `num_sequences` evenly spaced, distinct positions in `range(num_rows)`."""
    return np.unique(np.linspace(0, num_rows - 1, min(num_sequences, num_rows)).astype(int))


def clips_from_data_dir(data_dir, num_sequences=PARITY_SEQUENCES, with_labels=False,
                        skipped=None):
    """Raw clips read from a Kaggle-layout dir (evenly spaced rows of train.csv).

    With `with_labels`, returns `(clips, labels, signs, participants)`: the train.csv
    labels and signers (`participant_id`) of those clips and the dir's sign names in label
    order.

    A chosen clip that cannot be read (missing, truncated, wrong layout: a
    `LandmarkFileError`) is left out, as `prepare` and `evaluate` leave such files out
    of their work; its message ("<file>: <problem>") is appended to `skipped` when a
    list is given.

    Raises:
        MissingFileError / DataError: no train.csv or sign map, or none of the chosen
            clips can be read.
    """
    from tfislr.data.kaggle import (
        LandmarkFileError,
        landmark_path,
        read_landmark_file,
        read_sign_map,
        read_train_csv,
        sign_names,
    )

    table = read_train_csv(data_dir)
    signs = sign_names(read_sign_map(data_dir)) if with_labels else None
    rows = spaced_rows(len(table), num_sequences)
    clips, kept, problems = [], [], []
    for i in rows:
        try:
            clips.append(read_landmark_file(landmark_path(data_dir, table["path"].iloc[i])))
        except LandmarkFileError as error:
            problems.append(str(error))
            continue
        kept.append(i)
    if skipped is not None:
        skipped.extend(problems)
    if not clips:
        raise DataError(f"{data_dir}: none of the {plural(len(rows), 'clip')} chosen from train.csv can "
                        f"be read ({'; '.join(problems[:3])}"
                        + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "") + ")")
    if not with_labels:
        return clips
    labels = table["label"].to_numpy()[kept].astype(np.int64)
    return clips, labels, signs, table["participant_id"].to_numpy()[kept].astype(np.int64)


# What `training_use` says of labelled clips, by how the members' recorded splits used them.
HELD_OUT, TRAINING, UNKNOWN = "held_out", "training", "unknown"


def training_use(participants, splits):
    """Whether clips of the signers `participants` were in the members' training data.

    By the rule `tfislr.evaluate.resolve_split` applies to the splits the members recorded
    (`RunDir.split()`, None when a member records none): a member that trained on all the
    data saw every signer, one that validated on `val_participants` trained on the others.

    Returns:
        {"data": HELD_OUT (no member trained on any clip's signer), TRAINING (some member
        trained on the signer of `training_clips` of the clips) or UNKNOWN (no clip known to
        be training data, but a member records no split), "training_clips": that count, a
        lower bound when a member records no split}.
    """
    participants = np.asarray(participants)
    trained = np.zeros(len(participants), bool)
    for split in splits:
        if split is not None:
            trained |= True if split.get("full") else ~np.isin(participants,
                                                                 split["val_participants"])
    count = int(trained.sum())
    if count:
        data = TRAINING
    else:
        data = UNKNOWN if any(split is None for split in splits) else HELD_OUT
    return {"data": data, "training_clips": count}


def edge_case_inputs():
    """The inputs the contract says must never crash or return NaN."""
    clips = probe_sequences(lengths=[10_000, 5], seed=123)
    long_clip = clips[0]
    # Keep hands so the long clip really is long after filtering.
    long_clip[:, _rows("left_hand")] = 0.5
    no_hands = clips[1].copy()
    for part in ("left_hand", "right_hand"):
        no_hands[:, _rows(part)] = np.nan
    with_inf = probe_sequences(lengths=[20], seed=7)[0]
    with_inf[3, lm.LEFT_HAND_ROWS[2]] = np.inf
    with_inf[5, :, 1] = -np.inf
    face_start = lm.PART_ROWS["face"][0]
    with_inf[7, face_start:face_start + 100, 0] = np.inf
    return {
        "0_frames": np.zeros((0, *RAW_FRAME), np.float32),
        "1_frame": probe_sequences(lengths=[1], seed=3)[0],
        "1_frame_hand_only": _hand_only_frame(),
        "all_nan": np.full((12, *RAW_FRAME), np.nan, np.float32),
        "no_hands": no_hands,
        "inf_values": with_inf,
        "all_inf": np.full((4, *RAW_FRAME), np.inf, np.float32),
        "10000_frames": long_clip,
    }


def _hand_only_frame():
    frame = np.full((1, *RAW_FRAME), np.nan, np.float32)
    hand = lm.NUM_HAND_LANDMARKS
    frame[0, _rows("right_hand")] = np.linspace(0.4, 0.6, hand * 3,
                                               dtype=np.float32).reshape(hand, 3)
    return frame


def check_parity(module, model_path, clips, tolerance):
    """Max |TF - TFLite| of the probabilities over `clips`; ExportError above `tolerance`.

    TF is `module.reference` when the module has one (the models' training-time graph,
    see `graph.build_ensemble_module`), else `module.serving_default`.
    """
    import tensorflow as tf

    runner = TFLiteRunner(model_path)
    reference = getattr(module, "reference", module.serving_default)
    worst, agree = 0.0, 0
    for clip in clips:
        expected = reference(tf.constant(clip))[OUTPUT_NAME].numpy()
        got = runner(clip)
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
    runner = TFLiteRunner(model_path)
    results = {}
    for name, clip in edge_case_inputs().items():
        probs = runner(clip)
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
    """Size in bytes, MB (10**6 bytes) and MiB; ExportError above `max_size_mb` (None: no limit)."""
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


def check_agreement(reference_content, model_path, clips, labels=None, training=None):
    """How a quantized file's answers differ from the fp32 conversion of the same graph.

    Runs both files on `clips`: top-1 agreement, the max |p_quantized - p_fp32| over
    all clips and classes, and, when `labels` are given, both accuracies and their
    difference (quantized minus fp32), with `training` (`training_use` of the clips: whether
    they are held-out data) merged in. Nothing here fails the export: it is what a user
    needs to choose a weight format knowingly (see `PARITY_TOLERANCE` for the hard check).

    Args:
        reference_content: the fp32 flatbuffer (bytes).
        model_path: the quantized `.tflite` file.
        clips: raw clips `[T, 543, 3]`.
        labels: optional int labels, one per clip.
        training: optional `training_use` of the clips, reported with the accuracy.
    """
    reference = TFLiteRunner(model_content=reference_content)
    runner = TFLiteRunner(model_path)
    expected = np.stack([reference(clip) for clip in clips])
    got = np.stack([runner(clip) for clip in clips])
    result = {
        "reference": "fp32",
        "num_sequences": len(clips),
        "top1_agreement": float(np.mean(np.argmax(expected, 1) == np.argmax(got, 1))),
        "max_prob_diff": float(np.max(np.abs(expected - got))),
        "accuracy": None,
    }
    if labels is not None:
        labels = np.asarray(labels)
        reference_accuracy = float(np.mean(np.argmax(expected, 1) == labels))
        accuracy = float(np.mean(np.argmax(got, 1) == labels))
        result["accuracy"] = {"fp32": reference_accuracy, "quantized": accuracy,
                              "difference": accuracy - reference_accuracy, **(training or {})}
    return result
