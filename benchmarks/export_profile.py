"""Where the exported file spends its time: CPU samples per kernel family, per length; JSON.

    python benchmarks/export.py --output-dir /tmp/bench      # writes ensemble_fp16.tflite
    python benchmarks/export_profile.py /tmp/bench/ensemble_fp16.tflite [--lengths 25 80]
                                        [--seconds 10] [--top 15]
    python benchmarks/export_profile.py FILE --fc-floor [--compare OTHER.tflite] [--repeats 50]
    python benchmarks/export_profile.py FILE --compare OTHER.tflite [--repeats 50]

ai-edge-litert 2.3 has no per-operator profiler in its Python API (the C API's
`LiteRtCompiledModelGetProfiler` has no binding) and its wheel ships no
`benchmark_model` binary, so this samples the process with Linux `perf record` while
one signature runner (1 thread) calls the file in a loop on a raw clip of T frames
whose frames all have a hand. Samples inside `Invoke` are grouped by the kernel that
was running:

* `xnnpack_gemm`: XNNPACK matrix products (FULLY_CONNECTED, BATCH_MATMUL, CONV_2D) and
  the per-call packing of dynamic matmul operands;
* `xnnpack_other`: other delegated ops (elementwise, softmax, transpose, pad, ...);
* `tflite_builtin`: ops XNNPACK does not take, run by TFLite's own kernels (gather,
  select, slice, strided slice, ...) and the interpreter's bookkeeping;
* `memory`: copies, page faults and arena commits of tensors whose size is only known
  at run time.

`--fc-floor` instead splits the file's time at each length into (CPU ms, JSON):

* `fully_connected_only`: a model of only its FULLY_CONNECTED ops (the same M x K x N,
  fp16 weights, static shapes), timed against the file in alternating blocks of 10
  calls: the time no rewrite of the rest of the graph can go below while the Dense
  layers stay float32. `rest_of_graph_ms` is the file minus this.
* `fully_connected_in_cache_ms`, the compute floor: the same products with weights that
  are in cache, i.e. each distinct M x K x N as a one-op model called twice in a row,
  the second call timed (its weights were read by the first), times how often the file
  runs it, less the cost of calling an empty model; sampled after each round of blocks
  (median), so it sees the same load from other jobs as the other figures.
  `weight_streaming_ms` is `fully_connected_only` minus this: the cost of reading the
  float32 weights (XNNPACK unpacks the fp16 weights once, at set-up) from memory on
  every call, as the ensemble's do not fit in cache.
* with `--compare OTHER`, OTHER is timed in the same alternation, and
  `speedup_over_other` gives OTHER / file and OTHER / `fully_connected_only`: the most
  any rewrite of the graph around the Dense layers can gain over OTHER.

The shares are of CPU time, so they hold on a busy machine where wall-clock times do
not. Needs `perf` (linux-tools) and permission to sample (`perf_event_paranoid` <= 2).
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

LOOP = """
import sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from export import clips_with_hands
from tfislr.export.runner import TFLiteRunner
runner = TFLiteRunner({model!r}, num_threads=1)
clip = clips_with_hands({length}, seed={length})
for _ in range(3):
    runner(clip)
calls, start = 0, time.perf_counter()
while time.perf_counter() - start < {seconds}:
    runner(clip)
    calls += 1
print(calls)
"""

FAMILIES = (
    ("xnnpack_gemm", re.compile(r"^xnn_.*(gemm|packw)")),
    ("xnnpack_other", re.compile(r"^(xnn_|pthreadpool)")),
    ("memory", re.compile(r"mem(move|set|cpy)|page|clear_page|memcg|Arena|malloc|free|\[k\]")),
    ("tflite_builtin", re.compile(r"tflite::")),
)


def family(symbol):
    for name, pattern in FAMILIES:
        if pattern.search(symbol):
            return name
    return "other"


def profile(model, length, seconds, top):
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "perf.data"
        script = LOOP.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), model=str(model),
                             length=length, seconds=seconds)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        record = subprocess.run(
            ["perf", "record", "-F", "999", "-g", "-o", str(data), sys.executable, "-c", script],
            capture_output=True, text=True, env=env, check=True)
        calls = int(record.stdout.split()[-1])
        # Only samples below Invoke: loading the file and Python are not the model's time.
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--stdio", "-g", "none",
             "--sort", "symbol", "--parent", "Subgraph::Invoke", "--exclude-other"],
            capture_output=True, text=True, check=True).stdout
    rows = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\[[.k]\])\s+(.*?)\s*$", line)
        if match:
            share, kind, symbol = float(match[1]), match[2], match[3].split("  ")[0].strip()
            rows.append((share, f"{kind} {symbol}" if kind == "[k]" else symbol))
    total = sum(share for share, _ in rows) or 1.0
    families = {}
    for share, symbol in rows:
        families[family(symbol)] = families.get(family(symbol), 0.0) + share / total
    return {
        "calls": calls,
        "ms_per_call_wall": round(seconds * 1000.0 / max(calls, 1), 2),
        "share_of_invoke": {k: round(v, 3) for k, v in sorted(families.items(),
                                                               key=lambda kv: -kv[1])},
        "top_kernels": [{"share": round(share / total, 3), "kernel": symbol[:120]}
                        for share, symbol in rows[:top]],
    }


def fully_connected_shapes(model, length):
    """`(M, K, N)` of every FULLY_CONNECTED the file runs on a T-frame clip (M rows)."""
    from ai_edge_litert.interpreter import Interpreter
    from export import clips_with_hands

    interpreter = Interpreter(model_path=str(model), experimental_preserve_all_tensors=True)
    interpreter.get_signature_runner("serving_default")(inputs=clips_with_hands(length, length))
    shapes = []
    for op in interpreter._get_ops_details():
        if op["op_name"] == "FULLY_CONNECTED":
            rows, depth = interpreter.get_tensor(op["inputs"][0]).shape
            shapes.append((rows, depth, interpreter.get_tensor(op["inputs"][1]).shape[0]))
    return shapes


def alternate(calls, repeats, between=None):
    """CPU-time medians (ms) of `{name: call}`, run in alternating blocks of 10 calls;
    `between()`, if given, runs after each round of blocks (a measurement that should see
    the same load from other jobs)."""
    import time

    import numpy as np

    times = {name: [] for name in calls}
    for _ in range(max(1, repeats // 10)):
        for name, call in calls.items():
            call()  # the other one just ran: its weights are what the cache holds
            for _ in range(10):
                start = time.thread_time()
                call()
                times[name].append((time.thread_time() - start) * 1e3)
        if between is not None:
            between()
    return {name: round(float(np.median(v)), 2) for name, v in times.items()}


def compare(model, other, lengths, repeats):
    """CPU ms per call of two files on the same clips, alternating (A B A B ...)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks/export.py, not ROOT/export.py
    from export import clips_with_hands

    from tfislr.export.runner import TFLiteRunner

    runners = {str(model): TFLiteRunner(model), str(other): TFLiteRunner(other)}
    result = {}
    for length in lengths:
        clip = clips_with_hands(length, seed=length)
        medians = alternate({path: (lambda r=r: r(clip)) for path, r in runners.items()},
                            repeats)
        result[f"T={length}"] = {"cpu_median_ms": medians,
                                 "speedup": round(medians[str(other)] / medians[str(model)], 3)}
    return result


def _fp16_weights_model(function, shape):
    """A TFLite interpreter (1 thread, fp16 weights as the export) of `function` on a
    `[rows, depth]` float32 input, set up with a random input."""
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    concrete = tf.function(function, input_signature=[
        tf.TensorSpec(shape, tf.float32)]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    interpreter = Interpreter(model_content=converter.convert(), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.random.default_rng(0).normal(size=shape).astype(np.float32))
    return interpreter


def _product(weights):
    """`x -> x @ weights`, `weights` closed over: the converter makes it a FULLY_CONNECTED
    as in the file (passed as a default argument it becomes a BATCH_MATMUL, which XNNPACK
    runs ~1.6x slower)."""
    import numpy as np
    import tensorflow as tf

    weights = np.asarray(weights, np.float32)
    return lambda x: tf.matmul(x, weights)


class _InCache:
    """The products `shapes` ((M, K, N) each) with their weights in cache: each distinct
    shape as a one-op model. `sample()` calls every model twice in a row, times the second
    call and appends the CPU ms of all the products (each shape's time times its count,
    less an empty model's call) to `samples_ms`."""

    def __init__(self, shapes):
        import collections

        import numpy as np

        rng = np.random.default_rng(0)
        self.counts = collections.Counter(shapes)
        self.models = {shape: _fp16_weights_model(_product(rng.normal(0, 0.05, shape[1:])),
                                                  shape[:2]) for shape in self.counts}
        self.empty = _fp16_weights_model(lambda x: x * 2.0, (1, 1))
        self.samples_ms = []

    @staticmethod
    def _second_call_ms(interpreter):
        import time

        interpreter.invoke()  # reads its weights into cache
        start = time.thread_time()
        interpreter.invoke()
        return (time.thread_time() - start) * 1e3

    def sample(self):
        empty = self._second_call_ms(self.empty)
        self.samples_ms.append(sum(
            count * max(self._second_call_ms(self.models[shape]) - empty, 0.0)
            for shape, count in self.counts.items()))


def fully_connected_floor(model, lengths, repeats, other=None):
    """The file's CPU ms per call vs. its FULLY_CONNECTED ops alone (same M, K, N, fp16
    weights, static shapes, nothing else; interleaved, with the file `other` if given),
    and those ops' compute floor with the weights in cache (see the module docstring)."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks/export.py, not ROOT/export.py
    from export import clips_with_hands

    from tfislr.export.runner import TFLiteRunner

    runner = TFLiteRunner(model, num_threads=1)
    other_runner = other and TFLiteRunner(other, num_threads=1)
    rng = np.random.default_rng(0)
    result = {}
    for length in lengths:
        shapes = fully_connected_shapes(model, length)
        rows, depth = max(m for m, _, _ in shapes), max(k for _, k, _ in shapes)
        weights = [tf.constant(rng.normal(0, 0.05, (k, n)).astype(np.float32))
                   for _, k, n in shapes]

        def products(x):
            return tf.add_n([tf.matmul(x[:m, :k], w)[0, 0]
                             for (m, k, _), w in zip(shapes, weights)])

        floor = _fp16_weights_model(products, (rows, depth))
        clip = clips_with_hands(length, seed=length)
        calls = {"file": lambda: runner(clip), "fully_connected_only": floor.invoke}
        if other_runner:
            calls["other"] = lambda: other_runner(clip)
        cached = _InCache(shapes)
        medians = alternate(calls, repeats, between=cached.sample)
        in_cache = float(np.median(cached.samples_ms))
        mflop = sum(2 * m * k * n for m, k, n in shapes) / 1e6
        result[f"T={length}"] = {
            "cpu_median_ms": medians,
            "fully_connected_share": round(medians["fully_connected_only"] / medians["file"], 3),
            "rest_of_graph_ms": round(medians["file"] - medians["fully_connected_only"], 2),
            "fully_connected_in_cache_ms": round(in_cache, 2),
            "weight_streaming_ms": round(medians["fully_connected_only"] - in_cache, 2),
            "num_fully_connected": len(shapes),
            "mflop": round(mflop, 1),
            "float32_weight_mb": round(sum(4 * k * n for _, k, n in shapes) / 1e6, 1),
            "gflops": {"fully_connected_only": round(mflop / medians["fully_connected_only"], 1),
                       "in_cache": round(mflop / max(in_cache, 1e-9), 1)},
        }
        if other_runner:
            result[f"T={length}"]["speedup_over_other"] = {
                name: round(medians["other"] / medians[name], 3)
                for name in ("file", "fully_connected_only")}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .tflite file (e.g. from benchmarks/export.py)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[25, 80])
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time per length")
    parser.add_argument("--top", type=int, default=15, help="kernels listed per length")
    parser.add_argument("--fc-floor", action="store_true",
                        help="instead: the file vs its FULLY_CONNECTED ops alone vs those ops' "
                             "compute floor (weights in cache)")
    parser.add_argument("--compare", metavar="OTHER",
                        help="instead: CPU time of the file vs OTHER (.tflite), alternating; "
                             "speedup = OTHER / file (with --fc-floor: OTHER timed alongside)")
    parser.add_argument("--repeats", type=int, default=50,
                        help="calls per length (--fc-floor, --compare)")
    args = parser.parse_args(argv)
    if args.fc_floor or args.compare:
        result = (fully_connected_floor(args.model, args.lengths, args.repeats, args.compare)
                  if args.fc_floor else
                  compare(args.model, args.compare, args.lengths, args.repeats))
        print(json.dumps({"model": args.model, "load_average_1_5_15": os.getloadavg(),
                          **result}, indent=2))
        return 0
    if shutil.which("perf") is None:
        parser.error("needs Linux perf (e.g. apt-get install linux-perf)")
    result = {f"T={length}": profile(args.model, length, args.seconds, args.top)
              for length in args.lengths}
    print(json.dumps({"model": args.model, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
