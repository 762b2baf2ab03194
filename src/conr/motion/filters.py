"""Cleaning landmark tracks over time: filling frames where no person was found, and smoothing.

Smoothing is the One Euro filter (Casiez, Roussel and Vogel, CHI 2012): a low-pass filter whose
cut-off rises with speed, so a still pose stops jittering while a fast move keeps up (little lag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuro:
    min_cutoff: float = 1.5  # Hz: the cut-off at rest; lower removes more jitter from still poses
    beta: float = 0.5  # how fast the cut-off rises with speed (per unit/s); higher lags less on fast moves
    d_cutoff: float = 1.0  # Hz: the cut-off of the speed estimate

    def __call__(self, x: np.ndarray, fps: float) -> np.ndarray:
        """Filter every scalar of x (T, ...) along time."""
        x = np.asarray(x, np.float64)
        out = np.empty_like(x)
        if len(x) == 0:
            return out
        te = 1.0 / fps

        def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
            tau = 1.0 / (2 * math.pi * cutoff)
            return 1.0 / (1.0 + tau / te)

        a_d = alpha(self.d_cutoff)
        out[0], speed = x[0], np.zeros_like(x[0])
        for t in range(1, len(x)):
            speed = speed + a_d * ((x[t] - out[t - 1]) * fps - speed)
            a = alpha(self.min_cutoff + self.beta * np.abs(speed))
            out[t] = out[t - 1] + a * (x[t] - out[t - 1])
        return out


def fill_gaps(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """x (T, ...) with rows where `found` is False replaced by linear interpolation between the
    nearest found rows (the nearest one before the first or after the last)."""
    found = np.asarray(found, bool)
    if not found.any():
        raise ValueError("no found frame to fill from")
    t = np.arange(len(x))
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    filled = np.stack([np.interp(t, t[found], flat[found, k]) for k in range(flat.shape[1])], axis=1)
    return filled.reshape(np.shape(x))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)) of the runs of True in a boolean vector."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
