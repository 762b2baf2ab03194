"""Truevision TGA decoding (OpenCV cannot read it; many MMD models ship their textures as .tga)."""

from __future__ import annotations

import struct

import numpy as np


def decode_tga(data: bytes) -> np.ndarray | None:
    """TGA bytes -> (H, W, 4) uint8 RGBA, or None if the file is not a TGA we can read.

    Reads true-colour (24/32-bit) and greyscale (8-bit) images, raw or run-length encoded, with
    either origin; colour-mapped images are not read.
    """
    if len(data) < 18:
        return None
    id_len, cmap_type, kind = data[0], data[1], data[2]
    width, height, bpp, desc = struct.unpack_from("<HHBB", data, 12)
    if cmap_type != 0 or kind not in (2, 3, 10, 11) or width == 0 or height == 0:
        return None
    if (kind in (2, 10) and bpp not in (24, 32)) or (kind in (3, 11) and bpp != 8):
        return None
    step = bpp // 8
    n = width * height
    pos = 18 + id_len
    if kind in (2, 3):
        raw = data[pos:pos + n * step]
        if len(raw) < n * step:
            return None
        pix = np.frombuffer(raw, np.uint8).reshape(n, step)
    else:
        pix = _rle(data, pos, n, step)
        if pix is None:
            return None
    if step == 1:
        rgba = np.concatenate([np.repeat(pix, 3, axis=1), np.full((n, 1), 255, np.uint8)], 1)
    else:
        alpha = pix[:, 3:4] if step == 4 else np.full((n, 1), 255, np.uint8)
        rgba = np.concatenate([pix[:, 2::-1], alpha], 1)  # stored as BGR(A)
    img = rgba.reshape(height, width, 4)
    if not desc & 0x20:  # bottom-left origin unless bit 5 says top-left
        img = img[::-1]
    if desc & 0x10:  # right-to-left
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _rle(data: bytes, pos: int, n: int, step: int) -> np.ndarray | None:
    """Run-length packets: a header byte, then one pixel repeated or up to 128 literal pixels."""
    out = np.empty((n, step), np.uint8)
    filled = 0
    end = len(data)
    while filled < n:
        if pos >= end:
            return None
        head = data[pos]
        pos += 1
        count = (head & 0x7F) + 1
        if filled + count > n:
            return None
        if head & 0x80:
            if pos + step > end:
                return None
            out[filled:filled + count] = np.frombuffer(data, np.uint8, step, pos)
            pos += step
        else:
            if pos + count * step > end:
                return None
            out[filled:filled + count] = np.frombuffer(data, np.uint8, count * step, pos).reshape(count, step)
            pos += count * step
        filled += count
    return out
