"""Crop, resize and un-crop, reproducing the original release's data path value for value.

Every image is cut to a square around the bounding box of its alpha (zero padding where the square
leaves the image), resized to the network size (area interpolation when shrinking, linear when
enlarging, nearest-exact for UDP labels), and the rendered frame is put back at the same place.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import cv2
import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Crop:
    """Where the square crop sits in the source frame (the original's 12-number record)."""

    height: int
    width: int
    top: int
    bottom: int
    left: int
    right: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    padded_h: int
    padded_w: int

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.int64)


def square_crop(alpha: np.ndarray) -> Crop | None:
    """The square around the alpha bounding box; None if almost nothing is visible (< 0.1 %)."""
    h, w = alpha.shape
    visible = alpha > 0
    left, top, bw, bh = cv2.boundingRect(visible.astype(np.uint8))
    if bh <= 1 and bw <= 1:
        return None
    if visible.sum() / (h * w) < 0.001:
        return None
    side = int(round(bh)) if bh / bw > 1.0 else int(round(bw))
    # Python's round (half to even) places the box exactly where the original does.
    vtop = int(round(top - (side - bh) / 2))
    vleft = int(round(left - (side - bw) / 2))
    crop_top, crop_left = max(vtop, 0), max(vleft, 0)
    crop_bottom, crop_right = min(vtop + side, h), min(vleft + side, w)
    pad_top, pad_left = crop_top - vtop, crop_left - vleft
    pad_bottom, pad_right = vtop + side - crop_bottom, vleft + side - crop_right
    return Crop(h, w, crop_top, crop_bottom, crop_left, crop_right,
                pad_top, pad_bottom, pad_left, pad_right, side, side)


def apply_crop(image: np.ndarray, crop: Crop, size: int, label: bool = False) -> np.ndarray:
    """Cut, zero-pad and resize (H, W, C) to (size, size, C)."""
    out = image[crop.top:crop.bottom, crop.left:crop.right]
    pads = ((crop.pad_top, crop.pad_bottom), (crop.pad_left, crop.pad_right), (0, 0))
    if any(p for pair in pads for p in pair):
        out = np.pad(out, pads, mode="constant")
    ph, pw = out.shape[:2]
    if (ph, pw) == (size, size):
        return np.ascontiguousarray(out)
    if label:
        interp = cv2.INTER_NEAREST_EXACT
    elif size > ph and size > pw:
        interp = cv2.INTER_LINEAR
    else:
        interp = cv2.INTER_AREA
    out = cv2.resize(np.ascontiguousarray(out), (size, size), interpolation=interp)
    return out.reshape(size, size, image.shape[2])


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA -> uint8 RGBA with RGB premultiplied by A (truncated, as the original stores it)."""
    rgb = (rgba[:, :, :3] * (rgba[:, :, 3:4] / 255.0)).clip(0, 255).astype(np.uint8)
    return np.concatenate([rgb, rgba[:, :, 3:4]], axis=2)


def to_unit(chw_u8: np.ndarray) -> Tensor:
    """(H, W, C) uint8 -> (C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(chw_u8.transpose(2, 0, 1))).float() / 255.0


@dataclass
class PreparedImage:
    """A sheet view or pose image in network space."""

    rgb: Tensor  # (3, S, S) premultiplied
    alpha: Tensor  # (1, S, S)
    crop: Crop


def prepare_image(rgba: np.ndarray, size: int, crop: Crop | None = None) -> PreparedImage | None:
    """uint8 RGBA (H, W, 4) -> network input; None if the image shows (almost) nothing.
    `crop` replaces the square around the alpha (training draws random ones)."""
    crop = crop or square_crop(rgba[:, :, 3])
    if crop is None:
        return None
    img = apply_crop(premultiply(rgba), crop, size)
    return PreparedImage(to_unit(img[:, :, :3]), to_unit(img[:, :, 3:4]), crop)


@dataclass
class PreparedUDP:
    label: Tensor  # (4, S, S) surface XYZ (times visibility) and visibility, nearest-resized
    alpha: Tensor  # (1, S, S) visibility, area/linear-resized through 8 bits, as the original
    crop: Crop

    def target(self) -> Tensor:
        """The target pose encoder's input: XYZ * A, A."""
        return torch.cat([self.label[0:3] * self.alpha, self.alpha], dim=0)


def prepare_udp(udp: np.ndarray, size: int, crop: Crop | None = None) -> PreparedUDP | None:
    """float32 UDP (H, W, 4) -> network input; None if (almost) no surface is visible."""
    as_u8 = (udp * 255).clip(0, 255).astype(np.uint8)
    crop = crop or square_crop(as_u8[:, :, 3])
    if crop is None:
        return None
    img = apply_crop(as_u8, crop, size)
    label = apply_crop(udp, crop, size, label=True)
    return PreparedUDP(torch.from_numpy(np.ascontiguousarray(label.transpose(2, 0, 1))),
                       to_unit(img[:, :, 3:4]), crop)


def to_uint8(rgba: Tensor) -> np.ndarray:
    """(4, S, S) float RGBA in [0, 1] -> (S, S, 4) uint8, truncating as the original does."""
    return (rgba.float() * 255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def uncrop(image: np.ndarray, crop: Crop | None, height: int, width: int, label: bool = False) -> np.ndarray:
    """Put a (S, S, C) network-space image back into a zero (height, width, C) frame: area
    resampling for pixels, nearest for labels (UDP), the inverse of `apply_crop`."""
    out = np.zeros((height, width, image.shape[2]), dtype=image.dtype)
    if crop is None:
        return out
    interp = cv2.INTER_NEAREST_EXACT if label else cv2.INTER_AREA
    scaled = cv2.resize(np.ascontiguousarray(image), (crop.padded_w, crop.padded_h), interpolation=interp)
    scaled = scaled.reshape(crop.padded_h, crop.padded_w, image.shape[2])
    out[crop.top:crop.bottom, crop.left:crop.right] = scaled[
        crop.pad_top:crop.padded_h - crop.pad_bottom, crop.pad_left:crop.padded_w - crop.pad_right]
    return out
