"""TensorFlow start-up for every entry point: log level and a quiet GPU probe.

`TF_CPP_MIN_LOG_LEVEL` (default 2: errors only) is the one knob, set here and nowhere else.
Two kinds of start-up output ignore it: lines logged before absl is initialised (printed
whatever the level), and, on machines without an NVIDIA GPU, the CUDA probe's
`E... failed call to cuInit` — an error only in name: TF then runs on the CPU, as intended.
`start_tensorflow` imports TensorFlow and runs the GPU probe with the process's stderr (file
descriptor 2, where TF's C++ logs go) captured, then writes back every line except those:
INFO/WARNING lines below the level, and the cuInit failure when the machine has no NVIDIA
driver. Everything else, real errors included, reaches stderr unchanged.
"""

import contextlib
import importlib.util
import os
import pathlib
import re
import sys
import tempfile

DEFAULT_LOG_LEVEL = "2"
# absl's prefix: severity letter, MMDD, then a time ("I0000 00:00:...", "E1130 01:02:...").
_SEVERITY = re.compile(r"^([IWEF])\d{4} ")
_PRE_INIT_NOTICE = "All log messages before absl::InitializeLog() is called are written to STDERR"
_NO_GPU_PROBE = ("failed call to cuInit", "Could not find cuda drivers")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
_started = False


def has_nvidia_driver():
    """True when an NVIDIA kernel driver is loaded (its device or proc entries exist)."""
    return pathlib.Path("/proc/driver/nvidia").exists() or any(pathlib.Path("/dev").glob("nvidia*"))


def keep_line(line, min_level, gpu_driver):
    """Whether a start-up stderr line is worth showing (see the module docstring)."""
    if _PRE_INIT_NOTICE in line:
        return False
    match = _SEVERITY.match(line)
    if match and _LEVELS[match.group(1)] < min_level:
        return False
    return gpu_driver or not any(text in line for text in _NO_GPU_PROBE)


@contextlib.contextmanager
def filtered_stderr(keep):
    """Captures file descriptor 2 (C++ and Python alike); replays the lines `keep` accepts."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if keep(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start_tensorflow():
    """Sets the log level, imports TensorFlow and probes the GPUs quietly; returns `tf`.

    Call it first in an entry point (before anything imports TensorFlow). The probe does not
    initialise TensorFlow's runtime, so logical devices (`--strategy cpu:N`) can still be
    configured afterwards. Later calls only return the module; without TensorFlow installed
    (the video-extraction environment) it returns None.
    """
    global _started
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    if importlib.util.find_spec("tensorflow") is None:  # e.g. the video-extraction env
        return None
    if _started:
        import tensorflow as tf

        return tf
    try:
        min_level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        min_level = int(DEFAULT_LOG_LEVEL)
    gpu_driver = has_nvidia_driver()
    with filtered_stderr(lambda line: keep_line(line, min_level, gpu_driver)):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    _started = True
    return tf
