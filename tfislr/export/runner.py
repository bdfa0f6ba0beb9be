"""The one TFLite runner: an exported file called the way the competition called it.

`TFLiteRunner` opens a `.tflite` (path or bytes) with ai-edge-litert, one
signature runner (`serving_default`, one thread by default), and maps a raw clip
`[T, 543, 3]` to the probabilities `[num_classes]`; `timed` also returns the
wall-clock milliseconds of the call. `latency_summary` is the one way latency is
reported (export, evaluate, predict, benchmarks): `median_ms`, `p95_ms`,
`mean_ms`, `max_ms`, `num_calls`, `num_threads`.
"""

import pathlib
import time

import numpy as np

from tfislr.errors import DataError, MissingFileError
from tfislr.export.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY
from tfislr.runtime import filtered_stderr

# What LiteRT says, once per interpreter, when it applies its default CPU delegate.
XNNPACK_NOTICE = "Created TensorFlow Lite XNNPACK delegate"


def check_model_file(path):
    """Raises `MissingFileError` when `path` does not exist and `DataError` when it is a
    folder (a run dir given for its .tflite, say): an existing folder is not "not found"."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a .tflite model")
    if not path.is_file():
        raise MissingFileError(f"{path}: file not found")


def check_contract(signature_runner, name):
    """The number of classes of a signature runner that keeps the export contract
    (`tfislr.export.contract`): input `inputs` float32 `[None, 543, 3]`, output `outputs`
    float32 `[num_classes]`.

    Raises:
        DataError: one line naming the file (`name`) and what it lacks: a valid .tflite
            that is not a tfislr export fails here, not with a KeyError mid-prediction.
    """
    from tfislr.landmarks import NUM_RAW_LANDMARKS as NUM_POINTS

    inputs, outputs = signature_runner.get_input_details(), signature_runner.get_output_details()
    problems = []
    spec = inputs.get(INPUT_NAME)
    if spec is None:
        problems.append(f"no input '{INPUT_NAME}' (inputs: {sorted(inputs)})")
    elif (spec["dtype"] != np.float32 or len(spec["shape_signature"]) != 3
          or list(spec["shape_signature"][1:]) != [NUM_POINTS, 3]):
        problems.append(f"input '{INPUT_NAME}' as {np.dtype(spec['dtype']).name} "
                        f"{spec['shape_signature'].tolist()}, not float32 [-1, {NUM_POINTS}, 3]")
    spec = outputs.get(OUTPUT_NAME)
    if spec is None:
        problems.append(f"no output '{OUTPUT_NAME}' (outputs: {sorted(outputs)})")
    elif spec["dtype"] != np.float32 or len(spec["shape"]) != 1 or spec["shape"][0] < 1:
        problems.append(f"output '{OUTPUT_NAME}' as {np.dtype(spec['dtype']).name} "
                        f"{spec['shape'].tolist()}, not float32 [num_classes]")
    if problems:
        raise DataError(f"{name}: not a tfislr export: its '{SIGNATURE_KEY}' signature has "
                        + " and ".join(problems))
    return int(spec["shape"][0])


class TFLiteRunner:
    """Raw clip `[T, 543, 3]` float32 -> probabilities `[num_classes]` float32.

    Args:
        model_path: the `.tflite` file (or None with `model_content`).
        model_content: the flatbuffer bytes (or None with `model_path`).
        num_threads: interpreter threads; Kaggle ran one.

    Raises:
        ValueError: neither or both of `model_path` / `model_content`.
        MissingFileError: `model_path` does not exist.
        DataError: `model_path` is a folder, the file or bytes are not a TFLite model,
            or it breaks the contract (`check_contract`).
    """

    def __init__(self, model_path=None, model_content=None, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        if (model_path is None) == (model_content is None):
            raise ValueError("TFLiteRunner needs exactly one of model_path or model_content")
        self.model_path = None if model_path is None else str(model_path)
        self.num_threads = num_threads
        name = self.model_path or "the model bytes"
        if self.model_path is not None:
            check_model_file(self.model_path)
        try:
            # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++
            # (its own logger: no environment variable or option turns it off) when the
            # default delegate is applied, at the first allocation: done here, with that one
            # line dropped from file descriptor 2 (anything else it prints is kept).
            with filtered_stderr(lambda line: XNNPACK_NOTICE not in line):
                self.interpreter = Interpreter(model_path=self.model_path,
                                               model_content=model_content,
                                               num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except ValueError as error:  # LiteRT's word for "not a flatbuffer model"
            raise DataError(f"{name}: not a TFLite model ({error})") from None
        signatures = self.interpreter.get_signature_list()
        if SIGNATURE_KEY not in signatures:
            raise DataError(f"{self.model_path or 'the model'}: not a tfislr export: it has "
                            f"no '{SIGNATURE_KEY}' signature (found {sorted(signatures)})")
        self._runner = self.interpreter.get_signature_runner(SIGNATURE_KEY)
        self.num_classes = check_contract(self._runner, self.model_path or "the model")

    def __call__(self, clip):
        return self._runner(**{INPUT_NAME: clip})[OUTPUT_NAME]

    def check_finite(self, probabilities, clip_name):
        """`probabilities` (this model's, for the clip `clip_name`), refused when not finite:
        a model that returns NaN (or inf) is reported as such, never ranked or scored as if
        its numbers were probabilities.

        Raises:
            DataError: naming the model and `clip_name`.
        """
        if not np.all(np.isfinite(probabilities)):
            raise DataError(f"{self.model_path or 'the model'} returned non-finite "
                            f"probabilities (NaN or inf) for {clip_name}: the model is broken")
        return probabilities

    def timed(self, clip):
        """(probabilities, milliseconds of the runner call)."""
        start = time.perf_counter()
        probabilities = self(clip)
        return probabilities, (time.perf_counter() - start) * 1000.0


def latency_summary(times_ms, num_threads=1):
    """Median, p95, mean and max of per-call milliseconds (all 0 for no calls)."""
    times = np.asarray(times_ms, np.float64)
    if times.size == 0:
        times = np.zeros(1)
        num_calls = 0
    else:
        num_calls = int(times.size)
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(np.mean(times)),
        "max_ms": float(np.max(times)),
        "num_calls": num_calls,
        "num_threads": num_threads,
    }


def measure_latency(model_path, clips, repeats=3, num_threads=1):
    """Wall-clock ms per sequence with one signature runner (as Kaggle ran it).

    The interpreter re-plans its memory whenever an input (or an internal tensor)
    grows beyond the largest size seen so far, which costs many clips' worth of
    time for the full-size ensemble. That happens a handful of times per process, so the first
    pass over the clips is reported apart ("first_pass") and the median/p95 are
    the steady state of the following `repeats` passes.
    """
    runner = TFLiteRunner(model_path, num_threads=num_threads)
    first = [runner.timed(clip)[1] for clip in clips]
    times = [runner.timed(clip)[1] for _ in range(max(1, repeats)) for clip in clips]
    summary = latency_summary(times, num_threads=num_threads)
    summary["first_pass"] = {"mean_ms": float(np.mean(first)), "max_ms": float(np.max(first))}
    return summary
