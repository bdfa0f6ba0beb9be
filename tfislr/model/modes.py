"""Trace modes: how the layers build their graph, chosen by the caller that traces them.

Two modes change which ops a layer emits, never its math:

- the TFLite layout (`tflite_layout()`), entered by the export (`tfislr.export.graph`) while it
  traces the serving function: ops whose shapes follow from the inputs' shapes, and no
  SELECT_V2 (see `tflite_layout`);
- XLA islands (`islands()`), entered by the mean-teacher train step while it is traced:
  fixed shapes, so element-wise chains may be compiled (`tfislr.model.xla_fusion`).

This module sits below the layers, which read the modes; it imports nothing from tfislr.
"""

import contextlib
import contextvars
import threading

from keras import ops

_TFLITE_LAYOUT = contextvars.ContextVar("tfislr_tflite_layout", default=False)


@contextlib.contextmanager
def tflite_layout():
    """Layers traced inside this context build their TFLite-export graph: same math, other ops.

    In a TFLite graph whose time axis is only known at run time (the export's kept frames),
    every op whose output shape is computed from a tensor's *values* (RANGE, SLICE with
    computed bounds, RESHAPE to a computed shape) produces a dynamic tensor: it is malloc'ed
    on every call and the interpreter re-plans its memory arena after it. The training-time
    skew of the relative-position terms needs ~10 such ops per layer. Inside this context
    `DisentangledSelfAttention` picks its table rows with a gather instead (see
    `_relative_scores_by_rows`), whose shapes all follow from its inputs' shapes. The export
    (`tfislr.export.graph`) traces its serving function inside it; training never does.
    """
    token = _TFLITE_LAYOUT.set(True)
    try:
        yield
    finally:
        _TFLITE_LAYOUT.reset(token)


def select_by_mask(mask, if_one, if_zero):
    """`where(mask > 0, if_one, if_zero)` for a 0/1 float `mask` (broadcasting).

    Inside `tflite_layout()` the same values come from `if_one * mask + if_zero * (1 - mask)`
    (finite operands): TFLite runs SELECT_V2 in its reference kernel, outside XNNPACK.
    """
    if tflite_layout_active():
        return if_one * mask + if_zero * (1.0 - mask)
    return ops.where(mask > 0, if_one, if_zero)



def tflite_layout_active():
    """True while tracing inside `tflite_layout()`."""
    return _TFLITE_LAYOUT.get()



# How many threads are inside `islands()`: a count, not a context variable, because
# MirroredStrategy traces each replica's step in a thread of its own.
_ISLAND_DEPTH = 0
_ISLAND_LOCK = threading.Lock()


@contextlib.contextmanager
def islands():
    """Functions traced inside may compile their element-wise chains (`xla_fusion.compiled`).

    For train steps, whose shapes are fixed (one batch size, one padded length).
    """
    global _ISLAND_DEPTH
    with _ISLAND_LOCK:
        _ISLAND_DEPTH += 1
    try:
        yield
    finally:
        with _ISLAND_LOCK:
            _ISLAND_DEPTH -= 1


def islands_active():
    """True while some thread is inside `islands()`."""
    return _ISLAND_DEPTH > 0
