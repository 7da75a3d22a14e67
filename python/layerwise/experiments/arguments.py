"""argparse value types shared by the experiment commands: a bad value becomes argparse's
one-line usage error, never a traceback."""
from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "positive_int", "positive_float"]


def non_negative_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return v


def positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def positive_float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v
