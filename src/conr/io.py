"""Reading inputs and writing outputs safely: validated decoding, natural order, atomic writes."""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from conr.errors import ConrError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def encode_png(rgba: np.ndarray) -> bytes:
    """Encode an (H, W, 4) uint8 or uint16 RGBA array as PNG bytes."""
    import cv2

    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected (H, W, 4) uint8/uint16 RGBA, got {rgba.shape} {rgba.dtype}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def atomic_write_png(path: str | Path, rgba: np.ndarray) -> None:
    """Write an RGBA PNG so that a reader never sees a half-written file."""
    atomic_write_bytes(path, encode_png(rgba))


def atomic_save_npz(path: str | Path, compressed: bool = True, **arrays: np.ndarray) -> None:
    """Save arrays as .npz atomically (no pickled objects: arrays must be numeric)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise ValueError(f"array {name!r} has dtype object; refusing to pickle")
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


__all__ = [
    "ConrError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_png",
    "atomic_save_npz",
    "encode_png",
]
