"""`tfislr-predict`: an exported `.tflite` + clips (landmark parquet files or videos) → top-k signs.

    tfislr-predict MODEL.tflite CLIP [CLIP ...] [--top-k 5] [--json] [--signs MAP.json]

Each clip is read and run exactly as `tfislr-evaluate` does it: the Kaggle-layout reader
(`tfislr.data.kaggle.read_landmark_file`, raw `[T, 543, 3]` with NaN kept) and the one TFLite
runner (`tfislr.export.TFLiteRunner`, signature `serving_default`, one thread). A video
(a file with a known video suffix: .mp4, .mov, ...) is first turned into a landmark file by
the extraction environment in a subprocess (`tfislr.video.environment`; this process never
imports mediapipe), into a temporary folder or `--landmarks-dir` (kept, and reused on the
next run).

Sign names come from the export report next to the model (`MODEL.json`, written by
`tfislr-export`), or from `--signs` (a `sign_to_prediction_index_map.json` or a data dir
holding one); without either the classes are shown as numbers, and a note on stderr says
why and how to get the names.

Output: a table (clip, frames, then `sign probability` for the top k), or with `--json` a
list of `{"clip", "frames", "frames_with_landmarks", "frames_with_hands", "no_information",
"note", "top_k": [{"sign", "label", "probability"}]}`.

A clip in which no frame has a hand (MediaPipe saw none, or nobody at all) is predicted
but flagged: the model's preprocessing keeps only frames with a hand
(`tfislr.preprocessing.Preprocess`, step 1), so such a clip reaches the model as one
all-zero frame, the same input for every such clip, and its top k is the model's answer to
"nothing": it carries no information about the clip. Its table line says so, a note on
stderr names the clip ("no landmarks in any of its 15 frames" when MediaPipe found no
person, else "no hand in any of its 15 frames"), and in `--json` `no_information` is true
and `note` holds that text (null otherwise). The threshold is exactly "no frame with a
hand", the one case where the input says nothing: a clip with a single hand frame still
informs the model (the competition's own clips go down to one), and the face, lips and
pose, which the model also reads, are only read from frames with a hand. A `--top-k` above
the model's number of signs shows them all, and a note on stderr says so. A clip that cannot
be read is reported as one `tfislr-predict: error: <clip>: <problem>` line; the others are
still predicted, and the exit code is then 2 (`tfislr.errors`).
"""

import pathlib
import sys
import tempfile
import types

import numpy as np

from tfislr import landmarks as lm
from tfislr.errors import DataError, MissingFileError
from tfislr.text import plural


PROG = "tfislr-predict"


def sign_names(model_path, signs=None, num_classes=None, report=None):
    """Names of the model's classes by label.

    From `signs` when given: a data dir (its sign map), a `{sign: label}` JSON file (a sign
    map under any name) or a JSON list of names (a run's `signs.json`); else from the export
    report next to the model (`report`, the dict `tfislr.evaluate.export_report` gives, read
    here when not given); else `"0"`, `"1"`, ...

    Raises:
        MissingFileError / DataError: `signs` is missing or not one of the above.
        DataError: the names do not match the model's number of classes, or `signs`
            disagrees with the report's names (`tfislr.export.pair.check_signs`).
    """
    from tfislr.data import kaggle
    from tfislr.evaluate import export_report
    from tfislr.export.pair import check_signs, report_path

    source = signs
    report = export_report(model_path) if report is None else report
    if signs is None:
        names = report.get("signs")
        source = report_path(model_path)
    else:
        if pathlib.Path(signs).is_dir():
            names = kaggle.sign_names(kaggle.read_sign_map(signs))
        else:
            names = kaggle.sign_names(kaggle.load_sign_map(signs, names_list=True))
        check_signs(model_path, report, names, source)
    if names is None:
        return [str(i) for i in range(num_classes or 0)]
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"{source} lists {plural(len(names), 'sign')} but {model_path} outputs "
                        f"{plural(num_classes, 'class', 'classes')}")
    return list(names)


LANDMARKS, VIDEO = "landmarks", "video"
LANDMARK_SUFFIX = ".parquet"


def numbered_labels_note(model_path, report):
    """The stderr note when the labels print as numbers (no `--signs`), else None: there is
    no export report next to the model (a file exported elsewhere, or copied alone), or it
    lists no sign names. `report` is the one `sign_names` used (checking it again would hash
    the model file again)."""
    from tfislr.export.pair import report_path

    path = report_path(model_path)
    if not path.is_file():
        problem = f"no report {path} next to the model"
    elif report.get("signs") is None:
        problem = f"{path} lists no sign names"
    else:
        return None
    return (f"{PROG}: note: {problem}: labels are numbers; pass --signs (a sign map "
            "sign_to_prediction_index_map.json, or a data dir with one) for sign names")


def top_k_note(top_k, results):
    """The stderr note when `predict` showed fewer than the `top_k` signs asked for (the
    model has fewer: it shows them all), else None."""
    shown = len(results[0]["top_k"]) if results else top_k
    if shown >= top_k:
        return None
    return f"{PROG}: note: asked --top-k {top_k}, the model has {shown} signs: showing {shown}"


def clip_kind(path):
    """`LANDMARKS` for a `.parquet` file, `VIDEO` for a file with a video suffix
    (`tfislr.video.extract.VIDEO_SUFFIXES`, the ones `tfislr-extract` looks for).

    Decided by a list of known suffixes, never as "anything else is a video": a .csv
    (or a folder) would otherwise go to the extraction environment, and without one the
    user is told to install it for a file that is no video at all.

    Raises:
        MissingFileError: `path` does not exist.
        DataError: `path` is a folder, or a file of neither kind.
    """
    from tfislr.video.extract import VIDEO_SUFFIXES

    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass {LANDMARK_SUFFIX} files or videos")
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == LANDMARK_SUFFIX:
        return LANDMARKS
    if suffix in VIDEO_SUFFIXES:
        return VIDEO
    raise DataError(f"{path}: unsupported clip type {suffix or '(no suffix)'} (landmark "
                    f"{LANDMARK_SUFFIX}, or a video: {', '.join(sorted(VIDEO_SUFFIXES))})")


def extract_videos(videos, landmarks_dir):
    """Videos → `{video: landmark file}` via the extraction env, and `{video: reason}` for
    the ones it could not read."""
    from tfislr.video import environment
    from tfislr.video.extract import EXTRACTED_CSV, SKIPPED_CSV

    environment.run_extract([*videos, "--out", landmarks_dir, "--quiet"], capture=True)
    import pandas as pd

    landmarks_dir = pathlib.Path(landmarks_dir)
    extracted = pd.read_csv(landmarks_dir / EXTRACTED_CSV, dtype=str, keep_default_na=False)
    skipped = pd.read_csv(landmarks_dir / SKIPPED_CSV, dtype=str, keep_default_na=False)
    files = {row.video: landmarks_dir / row.path for row in extracted.itertuples()}
    failed = {row.video: row.reason for row in skipped.itertuples()}
    return files, failed


def predict(model_path, clips, top_k=5, signs=None, landmarks_dir=None, num_threads=1,
            report=None):
    """Top-k signs of each clip; returns `(results, errors)`. `report`: see `sign_names`.

    `results`: one dict per readable clip, in the given order: `clip`, `frames`, `top_k`
    (`sign`, `label`, `probability`, best first). `errors`: `DataError`s of the clips that
    could not be read or extracted (their messages name the clip). When the videos cannot be
    extracted at all (no extraction environment), each video is such an error naming why, and
    the landmark files are still predicted.
    """
    from tfislr.data.kaggle import LandmarkFileError, read_landmark_file
    from tfislr.export import TFLiteRunner

    model_path = pathlib.Path(model_path)
    runner = TFLiteRunner(model_path, num_threads=num_threads)  # MissingFileError if absent
    names = sign_names(model_path, signs, runner.num_classes, report)
    top_k = min(top_k, runner.num_classes)  # all the signs at most (`top_k_note` says so)

    clips = [pathlib.Path(c) for c in clips]
    kinds, refused = {}, {}
    for clip in clips:
        try:
            kinds[clip] = clip_kind(clip)
        except DataError as error:
            refused[clip] = error
    videos = [str(c.resolve()) for c, kind in kinds.items() if kind == VIDEO]
    frames, failed = {}, {}
    unextracted = None  # why no video could be extracted (no extraction environment, ...)
    if videos:
        with tempfile.TemporaryDirectory(prefix="tfislr-predict-") as scratch:
            try:
                files, failed = extract_videos(videos, landmarks_dir or scratch)
            except DataError as error:  # the videos are refused, the other clips predicted
                unextracted = error
            else:
                # Read the landmark files before the temporary folder goes.
                frames = {v: read_landmark_file(p) for v, p in files.items()}
    results, errors = [], []
    for clip in clips:
        if clip in refused:
            errors.append(refused[clip])
            continue
        try:
            if kinds[clip] == LANDMARKS:
                clip_frames = read_landmark_file(clip)
            elif unextracted is not None:
                raise DataError(f"{clip}: not predicted: {unextracted}")
            else:
                key = str(clip.resolve())
                if key in failed:
                    raise DataError(failed[key])
                clip_frames = frames[key]
        except (LandmarkFileError, DataError) as error:
            errors.append(DataError(str(error)))
            continue
        try:
            probabilities = np.asarray(runner.check_finite(runner(clip_frames), clip), np.float64)
        except DataError as error:
            errors.append(error)
            continue
        ranked = np.argsort(-probabilities, kind="stable")[:top_k]
        with_landmarks, with_hands = lm.detected_frames(clip_frames)
        note = lm.missing_hands(len(clip_frames), with_landmarks, with_hands)
        if note is not None:
            note += ": the prediction carries no information"
        results.append({
            "clip": str(clip),
            "frames": int(len(clip_frames)),
            "frames_with_landmarks": with_landmarks,
            "frames_with_hands": with_hands,
            "no_information": note is not None,
            "note": note,
            "top_k": [{"sign": names[i], "label": int(i), "probability": float(probabilities[i])}
                      for i in ranked],
        })
    return results, errors


def format_table(results):
    lines = []
    for result in results:
        best = "  ".join(f"{p['sign']} {p['probability']:.3f}" for p in result["top_k"])
        flag = ", no hand: no information" if result["no_information"] else ""
        lines.append(f"{result['clip']}  ({plural(result['frames'], 'frame')}{flag})  {best}")
    return "\n".join(lines)


class _CallableModule(types.ModuleType):
    """This module, callable as `predict`: `tfislr.predict(model, clips)` is the public API's
    name (tfislr/__init__.py), and `tfislr.predict` is this module once it is imported."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":  # `python -m tfislr.predict`, the same as the command
    from tfislr.cli.predict import main

    sys.exit(main())
