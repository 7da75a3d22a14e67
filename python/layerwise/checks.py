"""layerwise.checks -- argument validation shared by the training functions.

Every check raises ValueError (or TypeError for a wrong kind of object) whose message
starts with the argument's name, so a user sees at once which argument to fix.
"""
from __future__ import annotations

import math

import numpy as np

from .nn import array_module

__all__ = ["integer", "number", "unit_interval", "finite_array", "choice"]


def integer(name, v, *, low=0):
    """``v`` as an int >= low. bool and floats (even 3.0) are rejected: an epoch count of
    2.7 or True is a bug in the caller, not something to round."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    if v < low:
        raise ValueError(f"{name}: must be >= {low}, got {v}")
    return int(v)


def number(name, v, *, low=None, high=None, low_open=False, high_open=False):
    """``v`` as a finite float within the given bounds (open or closed)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {v}")
    return v


def unit_interval(name, v):
    """A momentum-like coefficient in [0, 1): 1 would never forget a gradient."""
    return number(name, v, low=0.0, high=1.0, high_open=True)


def finite_array(name, a):
    """ValueError naming ``name`` when ``a`` holds NaN or infinity (one pass, on a's device)."""
    xp = array_module(a)
    if a.dtype.kind == "f" and a.size and not bool(xp.isfinite(a).all()):
        bad = int(a.size - int(xp.count_nonzero(xp.isfinite(a))))
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or infinity); "
                         f"pass check_finite=False to train on them anyway")
    return a


def choice(name, v, options):
    if v not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {v!r}")
    return v
