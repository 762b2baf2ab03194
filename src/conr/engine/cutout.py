"""The traits of a character cut out of its background: halos, soft or jagged edges, JPEG, low resolution.

Artists' sheets are rarely clean renders: the figure was cut out of a drawing, often one saved as a
JPEG or scaled down first. These operations give a clean float RGB + alpha image those traits; both
`conr synth` (a style's cut-out) and the parser's augmentation use them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

_KERNEL = np.ones((3, 3), np.uint8)


def halo(rgb: np.ndarray, alpha: np.ndarray, colour, px: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the alpha by `px` pixels and fill the new ring with left-over background `colour`."""
    grown = cv2.dilate(alpha, _KERNEL, iterations=px)
    new = (grown > alpha + 0.01)[:, :, None]
    return np.where(new, np.asarray(colour, np.float32), rgb), grown


def erode(alpha: np.ndarray, px: int) -> np.ndarray:
    return cv2.erode(alpha, _KERNEL, iterations=px)


def soften(alpha: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(alpha, (0, 0), sigma)


def jag(alpha: np.ndarray, step: int) -> np.ndarray:
    """A hard, stair-stepped edge: alpha thresholded on a grid `step` pixels wide."""
    h, w = alpha.shape
    small = cv2.resize(alpha, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
    return (cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST) > 0.5).astype(np.float32)


def lowres(rgb: np.ndarray, alpha: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Scaled down by `factor` (< 1) and back up: the softness of an image drawn or saved small."""
    h, w = alpha.shape
    small = (max(8, int(w * factor)), max(8, int(h * factor)))
    both = cv2.resize(cv2.resize(np.dstack([rgb, alpha]), small, interpolation=cv2.INTER_AREA), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    return both[:, :, :3], both[:, :, 3]


def jpeg(rgba8: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGBA whose colour went through a JPEG round trip (the alpha is kept)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgba8[:, :, 2::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    out = rgba8.copy()
    if ok:
        out[:, :, :3] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return out


def to_float(rgba8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rgba8[:, :, :3].astype(np.float32) / 255.0, rgba8[:, :, 3].astype(np.float32) / 255.0


def to_uint8(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = np.dstack([np.clip(rgb, 0, 1), np.clip(alpha, 0, 1)[:, :, None]])
    return (out * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Cutout:
    """How one character's sheet was cut out; the defaults leave a render as it is."""

    halo_colour: tuple[float, float, float] | None = None
    halo_px: int = 0
    edge: str = "hard"  # hard, soft or jagged
    edge_px: float = 0.0  # blur sigma (soft) or grid step (jagged)
    lowres: float = 1.0  # < 1: drawn or saved at this share of the size
    jpeg: int = 0  # > 0: saved as a JPEG of this quality

    def __call__(self, rgba8: np.ndarray) -> np.ndarray:
        if self == Cutout():
            return rgba8
        rgb, alpha = to_float(rgba8)
        if self.halo_colour is not None and self.halo_px > 0:
            rgb, alpha = halo(rgb, alpha, self.halo_colour, self.halo_px)
        if self.edge == "soft":
            alpha = soften(alpha, self.edge_px)
        elif self.edge == "jagged":
            alpha = jag(alpha, max(2, int(self.edge_px)))
        if self.lowres < 1.0:
            rgb, alpha = lowres(rgb, alpha, self.lowres)
        out = to_uint8(rgb, alpha)
        return jpeg(out, self.jpeg) if self.jpeg > 0 else out

    def to_dict(self) -> dict:
        return asdict(self)
