"""Trace modes: how the layers build their graph, chosen by the caller that traces them.

One mode changes which ops a layer emits, never its math: the TFLite layout
(`tflite_layout()`), entered by the export (`tfislr.export.graph`) while it traces the
serving function: ops whose shapes follow from the inputs' shapes, and no SELECT_V2 (see
`tflite_layout`).

This module sits below the layers, which read the modes; it imports nothing from tfislr.
"""

import contextlib
import contextvars

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
