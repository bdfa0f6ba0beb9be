"""Where the exported file spends its time: CPU samples per kernel family, per length; JSON.

    python benchmarks/export.py --output-dir /tmp/bench      # writes ensemble_fp16.tflite
    python benchmarks/export_profile.py /tmp/bench/ensemble_fp16.tflite [--lengths 25 80]
                                        [--seconds 10] [--top 15]

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .tflite file (e.g. from benchmarks/export.py)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[25, 80])
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling time per length")
    parser.add_argument("--top", type=int, default=15, help="kernels listed per length")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("needs Linux perf (e.g. apt-get install linux-perf)")
    result = {f"T={length}": profile(args.model, length, args.seconds, args.top)
              for length in args.lengths}
    print(json.dumps({"model": args.model, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
