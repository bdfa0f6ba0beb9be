"""Size and 1-thread latency of the full-size exported ensemble; prints JSON.

    .venv/bin/python benchmarks/export.py [--quantization fp16] [--repeats 50]
                                         [--json benchmarks/results/export.json]

Builds the distilled models of the len25 and len80 configs (tfislr/configs/) at their
real dimensions with random weights and 250 classes, exports the ensemble (each
member with its own Preprocess, softmax average) through `export_ensemble`
(which fails above 40 MB or on a parity/edge-input error), then times the file
with one ai-edge-litert thread on raw clips whose frames all have a hand:

* T = 25 and T = 80: the members' full lengths (len25 keeps 25 frames at T = 25,
  len80 keeps 80 at T = 80);
* typical raw lengths 15, 40, 100, 300 (the real sample: median 14, max 108).

Each length reports wall-clock median/p95/min and `cpu_median_ms`, the CPU time of the
calling thread (the 1-thread interpreter runs on it), which other jobs on a shared
machine inflate far less than wall time. `benchmarks/export_profile.py` shows where the
time goes.

With `--members`, each member is also exported alone and timed at its full length,
for comparison with the original's per-model figures.

Reference figures (docs/recipe.md §17 and benchmarks/README.md, "Export"):
the writeup's 38 ms/clip for the original TFLite ensemble (Kaggle CPU), and the
original PyTorch models measured on this 2-core machine, 1 thread, traced + frozen,
fp32, full-length input: len25 8.9 ms, len80 17.2 ms, ensemble 29.2 ms.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REFERENCE_MS = {
    "writeup_tflite_ensemble_kaggle_cpu": 38.0,
    "original_traced_len25_T25": 8.9,
    "original_traced_len80_T80": 17.2,
    "original_traced_ensemble_full_length": 29.2,
}
FULL_LENGTHS = (25, 80)
TYPICAL_LENGTHS = (15, 40, 100, 300)
NUM_CLASSES = 250


def clips_with_hands(length, seed):
    """Raw clips where every frame has at least one hand (so no frame is dropped)."""
    from tfislr import landmarks as lm
    from tfislr.export.checks import probe_sequences

    clip = probe_sequences(lengths=[length], seed=seed)[0]
    start, stop = lm.PART_ROWS["right_hand"]
    right = clip[:, start:stop]
    missing = np.isnan(right).all(axis=(1, 2))
    clip[missing, start:stop] = 0.5 + 0.01 * np.random.default_rng(seed).normal(
        size=(int(missing.sum()), stop - start, 3))
    return clip


def time_lengths(model_path, lengths, repeats):
    from tfislr.export.runner import TFLiteRunner, latency_summary

    runner = TFLiteRunner(model_path, num_threads=1)
    results = {}
    for length in lengths:
        clip = clips_with_hands(length, seed=length)
        for _ in range(3):
            runner(clip)
        times, cpu = [], []
        for _ in range(repeats):
            start = time.thread_time()
            times.append(runner.timed(clip)[1])
            cpu.append((time.thread_time() - start) * 1000.0)
        summary = latency_summary(times)
        results[f"T={length}"] = {"median_ms": round(summary["median_ms"], 3),
                                  "p95_ms": round(summary["p95_ms"], 3),
                                  "min_ms": round(float(np.min(times)), 3),
                                  "cpu_median_ms": round(float(np.median(cpu)), 3)}
    return results


def build_members():
    import keras

    from tfislr import landmarks as lm
    from tfislr.config import load_config
    from tfislr.export import EnsembleMember
    from tfislr.model import build_classifier

    members = []
    for seed, name in enumerate(("len25", "len80")):
        config = load_config(name)
        keras.utils.set_random_seed(seed)
        model = build_classifier(config.model, NUM_CLASSES, config.data.max_len, distilled=True)
        length = config.data.max_len
        model({"landmarks": np.zeros((1, length, lm.NUM_POINTS, 3), np.float32),
               "padding_mask": np.ones((1, length), np.float32)})
        members.append(EnsembleMember(name, model, config.data.max_len))
    return members


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quantization", default="fp16", choices=("fp16", "fp32", "int8"))
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per length")
    parser.add_argument("--members", action="store_true",
                        help="also export and time each member alone at its full length")
    parser.add_argument("--output-dir", help="keep the .tflite files here (default: a temp dir)")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args(argv)

    from tfislr.export import export_ensemble

    members = build_members()
    out_dir = pathlib.Path(args.output_dir or tempfile.mkdtemp(prefix="tfislr_bench_"))
    # fp32 of the full ensemble is ~2x the fp16 size: only fp16/int8 are held to 40 MB.
    max_size = None if args.quantization == "fp32" else 40.0
    report = export_ensemble(members, out_dir / f"ensemble_{args.quantization}.tflite",
                             args.quantization, max_size_mb=max_size, verbose=False)
    result = {
        # Other processes share these cores: the load average says how noisy the timings are.
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]},
        "quantization": args.quantization,
        "num_classes": NUM_CLASSES,
        "members": report["members"],
        "size": report["size"],
        "parity": {k: report["parity"][k] for k in ("max_abs_diff", "tolerance", "num_sequences")},
        "convert_seconds": report["convert_seconds"],
        "ensemble_latency_ms_1_thread": time_lengths(
            report["path"], FULL_LENGTHS + TYPICAL_LENGTHS, args.repeats),
        "ensemble_latency_probe_mix": report["latency"],
        # int8 only: top-1 agreement and max probability difference with the fp32 graph.
        "agreement_with_fp32": report.get("agreement"),
        "reference_ms": REFERENCE_MS,
    }
    if args.members:
        singles = {}
        for member in members:
            single = export_ensemble([member], out_dir / f"{member.name}_{args.quantization}.tflite",
                                     args.quantization, max_size_mb=max_size, verbose=False)
            singles[member.name] = {
                "size_mb": round(single["size"]["mb"], 2),
                **time_lengths(single["path"], (member.max_len,), args.repeats),
            }
        result["member_latency_ms_1_thread"] = singles
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
