"""Latency of tfislr's DisentangledSelfAttention vs keras.layers.MultiHeadAttention.

Same width, heads and sequence length; both layers include their output projection. Each is
timed as a compiled `tf.function` (batch 1 and batch 32, ms per sequence) and as a TFLite
model (builtin ops, fp32, batch 1, ai-edge-litert, 1 thread by default). With `--variants`
the relative-position term alone (c2p + p2c) is also timed for four implementations (the one
the layer uses and three alternatives): TFLite batch 1, and TF forward + backward on a
training batch, to document the choice.

    .venv/bin/python benchmarks/attention.py                      # JSON on stdout
    .venv/bin/python benchmarks/attention.py --variants --output attention.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfislr.model import DisentangledSelfAttention, relative_position_index  # noqa: E402
from tfislr.model.relative_positions import distance_rows, skew  # noqa: E402  (the layer's own helpers)


def median_ms(fn, repeats, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


class _Wrapped(tf.Module):
    """Holds a layer's backing tf.Variables (Keras 3 variables are invisible to tf.Module)."""

    def __init__(self, fn, variables, signature):
        super().__init__()
        self.kept = [v.value for v in variables]
        self.fn = tf.function(fn, input_signature=signature)


def to_tflite(fn, variables, signature):
    module = _Wrapped(fn, variables, signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.fn.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def tflite_ms(blob, inputs, repeats, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob, num_threads=threads)
    details = interpreter.get_input_details()
    for detail, value in zip(details, inputs):
        interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for detail, value in zip(details, inputs):
        interpreter.set_tensor(detail["index"], value)
    return median_ms(interpreter.invoke, repeats)


def build_layers(width, heads, buckets):
    ours = DisentangledSelfAttention(heads, width, buckets)
    table = np.random.default_rng(1).normal(size=(2 * buckets, width)).astype("float32")
    ours(np.zeros((1, 2, width), "float32"), table)
    mha = keras.layers.MultiHeadAttention(heads, width // heads)
    dummy = np.zeros((1, 2, width), "float32")
    mha(dummy, dummy)
    table = tf.constant(table)
    return {
        "deberta": (lambda x: ours(x, table), ours.variables),
        "mha": (lambda x: mha(x, x), mha.variables),
    }


# --- alternative implementations of the c2p + p2c term (TFLite variant study) -------------

def relative_variants(heads, head_dim, buckets):
    rng = np.random.default_rng(0)
    pos_key = tf.constant(rng.normal(size=(2 * buckets, heads, head_dim)).astype("float32"))
    pos_query = tf.constant(rng.normal(size=(2 * buckets, heads, head_dim)).astype("float32"))

    def full_scores(query, key):
        c2p = tf.einsum("bhid,rhd->bhir", query, pos_key)
        p2c = tf.einsum("bhjd,rhd->bhjr", key, pos_query)
        return c2p, p2c

    def gather_batch_dims(query, key):
        length, batch = tf.shape(query)[2], tf.shape(query)[0]
        index = relative_position_index(length, buckets)
        c2p, p2c = full_scores(query, key)
        shape = [batch, heads, length, length]
        a = tf.gather(c2p, tf.broadcast_to(index, shape), batch_dims=3)
        b = tf.gather(p2c, tf.broadcast_to(tf.transpose(index), shape), batch_dims=3)
        return a + tf.transpose(b, [0, 1, 3, 2])

    def one_hot(query, key):
        index = relative_position_index(tf.shape(query)[2], buckets)
        onehot = tf.one_hot(index, 2 * buckets)
        c2p, p2c = full_scores(query, key)
        return tf.einsum("bhir,ijr->bhij", c2p, onehot) + tf.einsum("bhjr,ijr->bhij", p2c, onehot)

    def skew(query, key):  # what DisentangledSelfAttention does
        length = tf.shape(query)[2]
        rows = distance_rows(length, buckets)
        zero = [[0, 0], [0, 0], [0, 1]]  # the zero column `skew` expects
        kr = tf.pad(tf.transpose(tf.gather(pos_key, rows), [1, 2, 0]), zero)
        qr = tf.pad(tf.transpose(tf.gather(pos_query, tf.reverse(rows, [0])), [1, 2, 0]), zero)
        a = skew(tf.matmul(query, kr), length)
        b = skew(tf.matmul(key, qr), length)
        return a + tf.transpose(b, [0, 1, 3, 2])

    def row_gather(query, key):  # score rows laid out as [T * R, B * H], one GATHER
        length, batch = tf.shape(query)[2], tf.shape(query)[0]
        index = relative_position_index(length, buckets)
        low = index[0, length - 1]
        rows = index[length - 1, 0] - low + 1
        kr = tf.transpose(tf.slice(pos_key, [low, 0, 0], [rows, -1, -1]), [1, 2, 0])
        qr = tf.transpose(tf.slice(pos_query, [low, 0, 0], [rows, -1, -1]), [1, 2, 0])

        def as_rows(scores):
            return tf.reshape(tf.transpose(scores, [2, 3, 0, 1]), [length * rows, batch * heads])

        ids = tf.range(length)
        offset = index - low
        a = tf.gather(as_rows(tf.matmul(query, kr)), tf.reshape(ids[:, None] * rows + offset, [-1]))
        b = tf.gather(as_rows(tf.matmul(key, qr)), tf.reshape(ids[None, :] * rows + offset, [-1]))
        return tf.transpose(tf.reshape(a + b, [length, length, batch, heads]), [2, 3, 0, 1])

    return {"skew (ours)": skew, "row_gather": row_gather,
            "gather_batch_dims": gather_batch_dims, "one_hot_matmul": one_hot}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[576, 768])
    parser.add_argument("--lengths", type=int, nargs="+", default=[25, 80])
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="TFLite interpreter threads")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--variants", action="store_true", help="also time relative-term variants")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    results = []
    for width in args.widths:
        for length in args.lengths:
            layers = build_layers(width, args.heads, buckets=length)
            single = rng.normal(size=(1, length, width)).astype("float32")
            batch = rng.normal(size=(args.train_batch, length, width)).astype("float32")
            row = {"width": width, "heads": args.heads, "T": length, "position_buckets": length}
            outputs = {}
            for name, (fn, variables) in layers.items():
                compiled = tf.function(fn)
                row[f"{name}_tf_ms_batch1"] = round(median_ms(lambda: compiled(single), args.repeats), 3)
                row[f"{name}_tf_ms_per_seq_batch{args.train_batch}"] = round(
                    median_ms(lambda: compiled(batch), max(10, args.repeats // 10)) / args.train_batch, 3
                )
                signature = [tf.TensorSpec([1, None, width], tf.float32)]
                blob = to_tflite(fn, variables, signature)
                row[f"{name}_tflite_ms_batch1"] = round(
                    tflite_ms(blob, [single], args.repeats, args.threads), 3
                )
                outputs[name] = compiled(single)
            results.append(row)
            print(json.dumps(row), file=sys.stderr)

    variants = []
    if args.variants:
        for width in args.widths:
            head_dim = width // args.heads
            for length in args.lengths:
                q = rng.normal(size=(1, args.heads, length, head_dim)).astype("float32")
                k = rng.normal(size=(1, args.heads, length, head_dim)).astype("float32")
                funcs = relative_variants(args.heads, head_dim, length)
                reference = funcs["skew (ours)"](q, k).numpy()
                row = {"width": width, "T": length}
                shape = (args.train_batch, args.heads, length, head_dim)
                q_batch = tf.constant(rng.normal(size=shape).astype("float32"))
                k_batch = tf.constant(rng.normal(size=shape).astype("float32"))
                for name, fn in funcs.items():
                    np.testing.assert_allclose(fn(q, k).numpy(), reference, rtol=1e-4, atol=1e-4)
                    spec = tf.TensorSpec([1, args.heads, None, head_dim], tf.float32)
                    blob = to_tflite(fn, [], [spec, spec])
                    row[f"{name}_tflite_ms"] = round(
                        tflite_ms(blob, [q, k], args.repeats, args.threads), 3
                    )

                    @tf.function
                    def forward_backward(query, key, fn=fn):
                        with tf.GradientTape() as tape:
                            tape.watch([query, key])
                            loss = tf.reduce_sum(tf.square(fn(query, key)))
                        return tape.gradient(loss, [query, key])

                    row[f"{name}_tf_train_ms_batch{args.train_batch}"] = round(
                        median_ms(lambda: forward_backward(q_batch, k_batch), 10, warmup=2), 2
                    )
                variants.append(row)
                print(json.dumps(row), file=sys.stderr)

    report = {
        "benchmark": "attention",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "settings": {"tflite_threads": args.threads, "repeats": args.repeats, "fp32": True,
                     "note": "median ms per sequence; both layers include the output projection"},
        "results": results,
        "relative_term_variants_tflite": variants,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
