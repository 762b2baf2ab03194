"""Image-level augmentation for the UDP parser: make conr's renders look like other drawings.

The parser's labels (UDP) do not depend on colours, shading, line art or image quality, so each
sheet view and pose image gets its own random look: hue, saturation, brightness, contrast and gamma,
grey, blur, noise, JPEG, a lower resolution, line art traced over it, and the traits of a cut-out
(eroded or grown alpha, a light or dark halo of left-over background, a soft edge). The body's shape
is left where it is (the crop jitter moves and scales it), so the labels stay right.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from conr.engine import cutout


@dataclass(frozen=True)
class Photometric:
    p_any: float = 0.5  # the share of images given another look (the rest stay as rendered)
    p_colour: float = 0.9
    p_grey: float = 0.08
    p_blur: float = 0.25
    p_lowres: float = 0.25
    p_noise: float = 0.25
    p_jpeg: float = 0.25
    p_lines: float = 0.25
    p_edge: float = 0.35

    def __call__(self, rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 RGBA (H, W, 4), straight alpha -> a new uint8 RGBA of the same size."""
        if rng.random() >= self.p_any:
            return rgba
        rgb, alpha = cutout.to_float(rgba)
        if rng.random() < self.p_colour:
            rgb = _colour(rgb, rng)
        if rng.random() < self.p_grey:
            rgb = np.repeat(rgb.mean(2, keepdims=True), 3, axis=2)
        if rng.random() < self.p_lines:
            rgb = _lines(rgb, alpha, rng)
        if rng.random() < self.p_edge:
            rgb, alpha = _edge(rgb, alpha, rng)
        if rng.random() < self.p_blur:
            sigma = float(rng.uniform(0.4, 1.6))
            rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
        if rng.random() < self.p_lowres:
            rgb, alpha = cutout.lowres(rgb, alpha, float(rng.uniform(0.3, 0.75)))
        if rng.random() < self.p_noise:
            rgb = rgb + rng.normal(0, rng.uniform(0.01, 0.05), rgb.shape).astype(np.float32)
        out = cutout.to_uint8(rgb, alpha)
        if rng.random() < self.p_jpeg:
            out = cutout.jpeg(out, int(rng.integers(25, 90)))
        return out


def _colour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360), S and V in [0, 1]
    hsv[:, :, 0] = (hsv[:, :, 0] + rng.uniform(0, 360)) % 360
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(0.3, 1.5), 0, 1)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb = rgb * rng.uniform(0.85, 1.15, 3).astype(np.float32)  # white balance
    contrast = rng.uniform(0.7, 1.3)
    rgb = (rgb - 0.5) * contrast + 0.5 + rng.uniform(-0.12, 0.12)
    return np.clip(rgb, 0, 1) ** rng.uniform(0.7, 1.4)


def _lines(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Line art traced along colour edges and the silhouette, of a random width and ink."""
    grey = (np.dstack([rgb, alpha]).mean(2) * 255).astype(np.uint8)
    edges = cv2.Canny(grey, 30, 90)
    width = int(rng.integers(1, 4))
    if width > 1:
        edges = cv2.dilate(edges, np.ones((width, width), np.uint8))
    ink = rng.uniform(0, 0.35, 3).astype(np.float32) if rng.random() < 0.8 else rng.uniform(0, 1, 3).astype(np.float32)
    mask = (edges > 0)[:, :, None] & (alpha > 0.5)[:, :, None]
    return np.where(mask, ink, rgb)


def _edge(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out's edge: eroded, grown with a halo of background colour, or softened."""
    kind = rng.integers(3)
    steps = int(rng.integers(1, 3))
    if kind == 0:
        alpha = cutout.erode(alpha, steps)
    elif kind == 1:
        colour = np.full(3, rng.uniform(0.85, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.2), np.float32)
        rgb, alpha = cutout.halo(rgb, alpha, colour, steps)
    else:
        alpha = cutout.soften(alpha, float(rng.uniform(0.5, 1.5)))
    return rgb, alpha
