"""Numeric command-line options checked when they are parsed: a type, a range, and no NaN.

argparse then reports a bad value as `argument --fps: 0 is out of range (0.1 to 240)`, before
anything is read or written.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

SEED_MAX = 2 ** 32 - 1
MAX_FPS = 240.0
MAX_SIZE = 8192


def ranged(kind: type, lo: float | None = None, hi: float | None = None) -> Callable[[str], int | float]:
    """An argparse `type` that reads an int or a finite float within [lo, hi]."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            allowed = (f"{lo:g} to {hi:g}" if lo is not None and hi is not None
                       else f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
            raise argparse.ArgumentTypeError(f"{text} is out of range ({allowed})")
        return value

    parse.__name__ = kind.__name__
    return parse


SEED = ranged(int, 0, SEED_MAX)
FPS = ranged(float, 0.1, MAX_FPS)
SIZE = ranged(int, 16, MAX_SIZE)
