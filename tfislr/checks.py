"""Argument checks shared across the package: one rule and one wording per kind of value.

Each check returns the value (converted where that is the point, e.g. to `int`) or raises
`ValueError` naming the argument, the allowed values and what it got.
"""

import math
import numbers


def check_int(name, value, minimum=1):
    """`int(value)` for an integer `>= minimum` (bools refused); ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """`value` if it lies in the interval from `low` to `high` (None: unbounded).

    The ends are included unless `low_open` / `high_open`; the message shows the interval
    in the usual notation, e.g. `[0, 1)`. NaN and ±inf are never in range: an unbounded
    end is open (`[0, inf)`), and NaN compares false with every bound.
    """
    # (ints are finite, and math.isfinite overflows on huge ones)
    not_finite = not isinstance(value, numbers.Integral) and not math.isfinite(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not_finite or too_low or too_high:
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value
