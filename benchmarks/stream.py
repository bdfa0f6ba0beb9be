"""The stream recognizer on synthetic continuous signing: WER, boundaries, frames/s, delay.

    python benchmarks/stream.py --model demo.tflite [--streams DIR] [--tune] [--json OUT]

The model is trained on the isolated clips of the synthetic signs (the demo data set:
`python -m tfislr.data.synthetic --out D --signs 12 --participants 10 --sequences-per-sign
40 --seed 0`, then `python train.py --config demo --data-dir D --full` and `python export.py
single --run RUN --output demo.tflite`). The streams (`tfislr.data.synthetic_stream`, written
to `--streams` once) are performed by signers the model never saw: signer indices from
`--first-signer` (the data set's number of participants) on, two disjoint groups:

* **tuning** signers (the first `--signers`): where `--tune` chooses the segmentation
  parameters, the confidence threshold and the baseline's window, stride and threshold
  (coordinate descent from the defaults, each parameter over its candidates in turn, twice);
* **test** signers (the next `--signers`): where every reported figure comes from.

Reported, on the test signers:

* WER and boundary error (`tfislr.stream.scoring`) of `StreamRecognizer` (with the library's
  defaults, and with `--refine`), and of the baseline (`SlidingWindowRecognizer`, with the
  library's defaults or `--window/--stride/--window-confidence`): what `--tune` chose is
  printed (and kept in `--json`), and becomes a figure once written into the defaults;
* frames/s: landmark frames through segmentation + classification, the streams in memory,
  one interpreter thread (and segmentation alone);
* delay: from a correctly recognized sign's true last frame to the frame at which its line
  is emitted (frames, and seconds at 30 fps), plus the model's time per segment.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tfislr.data import synthetic_stream  # noqa: E402
from tfislr.data.kaggle import read_landmark_file  # noqa: E402
from tfislr.export import TFLiteRunner  # noqa: E402
from tfislr.predict import sign_names  # noqa: E402
from tfislr.stream.recognizer import MERGE_GAP, MIN_CONFIDENCE, StreamRecognizer  # noqa: E402
from tfislr.stream.scoring import score_streams  # noqa: E402
from tfislr.stream.segmentation import SegmentationParams, Segmenter  # noqa: E402
from tfislr.stream.windows import (STRIDE, WINDOW, WINDOW_CONFIDENCE,  # noqa: E402
                                   SlidingWindowRecognizer)

FPS = 30.0
RECOGNIZER_OPTIONS = ("min_confidence", "refine", "merge_gap")  # the rest: SegmentationParams
# Candidates of coordinate descent (--tune).
SEGMENTATION_GRID = {
    "gap_frames": [2, 4, 6, 8, 10, 12, 15, 20],
    "pause_speed": [0.006, 0.012, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06],
    "pause_frames": [2, 3, 4, 6, 8],
    "min_motion_frames": [0, 4, 8, 10, 12, 16, 20],
    "speed_window": [1, 2, 3, 4, 6],
    "min_frames": [1, 2, 4, 6, 8],
    "max_frames": [48, 64, 96, 128],
    "merge_gap": [0, 5, 10, 15, 20, 30],
    "min_confidence": [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
}
WINDOW_GRID = {
    "window": [12, 16, 20, 24, 32, 48],
    "stride": [2, 4, 8, 12],
    "min_confidence": [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9],
}


class CachedModel:
    """The runner with a cache by clip content (tuning classifies the same segments under
    many settings) and a timer of the calls that reached the model."""

    def __init__(self, runner):
        self.runner = runner
        self.cache = {}
        self.times_ms = []

    def __call__(self, frames):
        key = hashlib.blake2b(np.ascontiguousarray(frames).tobytes(), digest_size=16).digest()
        if key not in self.cache:
            probabilities, ms = self.runner.timed(frames)
            self.cache[key] = np.array(probabilities)
            self.times_ms.append(ms)
        return self.cache[key]


def load_streams(folder):
    streams = synthetic_stream.read_timeline(folder)
    return {name: (read_landmark_file(path), truth) for name, (path, truth) in streams.items()}


def ensure_streams(folder, num_signs, signers, args):
    if not (folder / synthetic_stream.TIMELINE_CSV).is_file():
        synthetic_stream.write_stream_dataset(folder, num_signs, signers, args.streams_per_signer,
                                              args.signs_per_stream, args.seed)
    return folder


def run(make_recognizer, streams):
    """`(pairs for score_streams, signs by stream)` of a fresh recognizer on each stream."""
    pairs, signs = [], {}
    for name, (frames, truth) in streams.items():
        recognized = list(make_recognizer().run(frames))
        signs[name] = recognized
        pairs.append((truth, [(s.sign, s.start_frame, s.end_frame) for s in recognized]))
    return pairs, signs


def evaluate_segmenter(model, names, streams, settings):
    settings = dict(settings)
    options = {k: settings.pop(k) for k in RECOGNIZER_OPTIONS if k in settings}
    params = SegmentationParams(**settings)
    pairs, signs = run(lambda: StreamRecognizer(model, names, params, fps=FPS, **options),
                       streams)
    return score_streams(pairs), signs


def evaluate_windows(model, names, streams, settings):
    pairs, signs = run(lambda: SlidingWindowRecognizer(model, names, fps=FPS, **settings), streams)
    return score_streams(pairs), signs


def coordinate_descent(evaluate, start, grid, passes=2, log=None):
    """Minimizes WER (then boundary error) one parameter at a time over `grid`."""
    best = dict(start)
    best_key = None
    tried = []
    for _ in range(passes):
        for name, values in grid.items():
            for value in values:
                candidate = {**best, name: value}
                try:
                    scores = evaluate(candidate)
                except ValueError:  # an impossible combination (min_frames > max_frames)
                    continue
                key = (round(scores["wer"], 6), scores["boundary_error_frames"] or 1e9)
                tried.append({**candidate, "wer": scores["wer"],
                              "boundary_error_frames": scores["boundary_error_frames"]})
                if best_key is None or key < best_key:
                    best, best_key = candidate, key
                    if log:
                        print(f"  {json.dumps(candidate)}: WER {scores['wer']:.3f}",
                              file=log, flush=True)
    return best, tried


def delays(signs, streams):
    """Frames from each correctly recognized sign's true end to its line."""
    from tfislr.stream.scoring import align

    out = []
    for name, (_, truth) in streams.items():
        recognized = signs[name]
        *_, matches = align([t[0] for t in truth], [s.sign for s in recognized])
        out += [recognized[j].emitted_at - 1 - truth[i][2] for i, j in matches]
    return np.array(out, np.float64)


def frames_per_second(make_recognizer, streams, repeats=3):
    """Median frames/s of fresh recognizers over the streams (in memory)."""
    total = sum(len(frames) for frames, _ in streams.values())
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for frames, _ in streams.values():
            for _ in make_recognizer().run(frames):
                pass
        rates.append(total / (time.perf_counter() - start))
    return float(np.median(rates))


def throughput(runner, names, streams, settings, repeats=3):
    """Frames/s through segmentation + classification (no cache) and segmentation alone."""
    settings = dict(settings)
    options = {k: settings.pop(k) for k in RECOGNIZER_OPTIONS if k in settings}
    params = SegmentationParams(**settings)
    total = sum(len(frames) for frames, _ in streams.values())
    full, alone = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for frames, _ in streams.values():
            for _ in StreamRecognizer(runner, names, params, **options).run(frames):
                pass
        full.append(total / (time.perf_counter() - start))
        start = time.perf_counter()
        for frames, _ in streams.values():
            segmenter = Segmenter(params)
            for frame in frames:
                segmenter.push(frame)
            segmenter.flush()
        alone.append(total / (time.perf_counter() - start))
    return {"frames": total, "frames_per_second": float(np.median(full)),
            "segmentation_frames_per_second": float(np.median(alone))}


def summary(scores):
    keys = ("wer", "substitutions", "deletions", "insertions", "true_signs", "recognized_signs",
            "start_error_frames", "end_error_frames", "boundary_error_frames")
    return {k: scores[k] for k in keys}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the exported .tflite (with its report)")
    parser.add_argument("--streams", default="stream_data", help="folder of the streams "
                        "(written once: tuning/ and test/)")
    parser.add_argument("--seed", type=int, default=0, help="the isolated data set's seed")
    parser.add_argument("--first-signer", type=int, default=10,
                        help="first signer index the model never saw (the data set's "
                             "number of participants)")
    parser.add_argument("--signers", type=int, default=10, help="signers a group")
    parser.add_argument("--streams-per-signer", type=int, default=4)
    parser.add_argument("--signs-per-stream", type=int, default=10)
    parser.add_argument("--tune", action="store_true",
                        help="choose the settings on the tuning signers (else the defaults)")
    parser.add_argument("--window", type=int, default=WINDOW, help="baseline window (no --tune)")
    parser.add_argument("--stride", type=int, default=STRIDE, help="baseline stride (no --tune)")
    parser.add_argument("--window-confidence", type=float, default=WINDOW_CONFIDENCE,
                        help="baseline threshold (no --tune)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    runner = TFLiteRunner(args.model)
    names = sign_names(pathlib.Path(args.model), None, runner.num_classes)
    model = CachedModel(runner)
    root = pathlib.Path(args.streams)
    first = args.first_signer
    groups = {"tuning": range(first, first + args.signers),
              "test": range(first + args.signers, first + 2 * args.signers)}
    data = {group: load_streams(ensure_streams(root / group, runner.num_classes, list(signers),
                                               args))
            for group, signers in groups.items()}

    defaults = {f.name: f.default for f in dataclasses.fields(SegmentationParams)}
    defaults.update(min_confidence=MIN_CONFIDENCE, merge_gap=MERGE_GAP)
    windows = {"window": args.window, "stride": args.stride,
               "min_confidence": args.window_confidence}
    results = {"model": str(args.model), "machine": platform.machine(),
               "signers": {g: list(s) for g, s in groups.items()}}
    if args.tune:
        print("tuning the segmentation on the tuning signers", file=sys.stderr)
        chosen, tried = coordinate_descent(
            lambda s: evaluate_segmenter(model, names, data["tuning"], s)[0], defaults,
            SEGMENTATION_GRID, log=sys.stderr)
        print("tuning the baseline on the tuning signers", file=sys.stderr)
        chosen_windows, tried_windows = coordinate_descent(
            lambda s: evaluate_windows(model, names, data["tuning"], s)[0], windows,
            WINDOW_GRID, log=sys.stderr)
        results["tuning"] = {"segmenter": chosen, "windows": chosen_windows, "tried": tried,
                             "tried_windows": tried_windows}
        results["tuning_scores"] = {
            "segmenter_defaults": summary(evaluate_segmenter(model, names, data["tuning"],
                                                             defaults)[0]),
            "segmenter_chosen": summary(evaluate_segmenter(model, names, data["tuning"],
                                                           chosen)[0]),
            "windows_chosen": summary(evaluate_windows(model, names, data["tuning"],
                                                       chosen_windows)[0]),
        }
        print(json.dumps(results["tuning_scores"], indent=1), file=sys.stderr)

    test = data["test"]
    scores, signs = evaluate_segmenter(model, names, test, defaults)
    refined, _ = evaluate_segmenter(model, names, test, {**defaults, "refine": True})
    baseline, window_signs = evaluate_windows(model, names, test, windows)
    delay = delays(signs, test)
    window_delay = delays(window_signs, test)
    model.times_ms.clear()
    model.cache.clear()
    evaluate_segmenter(model, names, test, defaults)  # the model's time per segment
    results["test"] = {
        "segmenter": {"settings": defaults, **summary(scores)},
        "segmenter_refine": summary(refined),
        "windows": {"settings": windows, **summary(baseline),
                    "delay_frames_median": float(np.median(window_delay)),
                    "delay_frames_p95": float(np.percentile(window_delay, 95)),
                    "frames_per_second": frames_per_second(
                        lambda: SlidingWindowRecognizer(runner, names, fps=FPS, **windows), test)},
        "delay": {"frames_median": float(np.median(delay)),
                  "frames_p95": float(np.percentile(delay, 95)),
                  "seconds_median_at_30fps": float(np.median(delay)) / FPS,
                  "seconds_p95_at_30fps": float(np.percentile(delay, 95)) / FPS,
                  "model_ms_per_segment_median": float(np.median(model.times_ms))},
        "throughput": throughput(runner, names, test, defaults),
    }
    text = json.dumps(results["test"], indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
