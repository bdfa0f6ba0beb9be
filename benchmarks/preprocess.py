"""Latency of `Preprocess` per sequence: TF (tf.function called eagerly) and TFLite.

Prints one JSON object. Example:
    .venv/bin/python benchmarks/preprocess.py --max-len 80 --repeats 200
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a plain script from anywhere: make the repo root importable.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from tfislr import landmarks as lm  # noqa: E402
from tfislr.preprocessing import Preprocess  # noqa: E402


def _frames(rng, n):
    """Landmark-like frames: coordinates in [0, 1], one hand missing in ~40 % of frames."""
    frames = rng.uniform(0.0, 1.0, (n, lm.NUM_RAW_LANDMARKS, 3)).astype(np.float32)
    start, stop = lm.PART_ROWS["left_hand"]
    frames[rng.random(n) < 0.4, start:stop] = np.nan
    start, stop = lm.PART_ROWS["right_hand"]
    frames[rng.random(n) < 0.4, start:stop] = np.nan
    return frames


def _ms_per_call(fn, frames, repeats):
    for _ in range(5):  # warm-up (tracing, delegate setup, allocation)
        fn(frames)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(frames)
    return (time.perf_counter() - start) * 1000.0 / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=80)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 50, 200, 1000])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    pre = Preprocess(args.max_len)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [pre.__call__.get_concrete_function()], pre
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    tflite_model = converter.convert()
    runner = Interpreter(model_content=tflite_model).get_signature_runner("serving_default")

    rng = np.random.default_rng(0)
    results = []
    for n in args.lengths:
        frames = _frames(rng, n)
        tensor = tf.constant(frames)
        results.append(
            {
                "frames": n,
                "tf_function_ms": round(_ms_per_call(pre, tensor, args.repeats), 4),
                "tflite_ms": round(_ms_per_call(lambda x: runner(inputs=x), frames, args.repeats), 4),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "preprocess",
                "max_len": args.max_len,
                "repeats": args.repeats,
                "tflite_bytes": len(tflite_model),
                "tensorflow": tf.__version__,
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
