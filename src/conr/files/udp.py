"""Reading Ultra-Dense Pose frames safely: .npz (no pickles, header checked before allocating),
float .exr and 16-bit .png."""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from conr.errors import ConrError
from conr.files.io import MAX_IMAGE_SIDE, check_image_size, decode_image, read_bytes

UDP_EXTS = {".npz", ".exr", ".png"}

# largest .npy member accepted: a float64 (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 4) array plus its header
_MAX_NPY_BYTES = 8 * 4 * MAX_IMAGE_SIDE**2 + 4096
# numpy refuses headers over 10000 characters; reading a bounded prefix keeps a header that claims
# gigabytes of length (version 2 and 3 store it in 4 bytes) from being read into memory
_NPY_HEADER_PREFIX = 16 * 1024


_NPZ_RESAVE = "re-save it with np.savez(path, i=array) where array is a float32 (H, W, 4) array"


def _check_npy_header(zf: zipfile.ZipFile, path: Path) -> None:
    """Refuse member i.npy on what its header announces, before np.load allocates that much:
    a few bytes of data may announce a (100000, 100000, 4) array."""
    with zf.open("i.npy") as f:
        head = io.BytesIO(f.read(_NPY_HEADER_PREFIX))
    try:
        version = np.lib.format.read_magic(head)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown .npy format version {version[0]}.{version[1]}")
        # 3.0 only differs from 2.0 by a UTF-8 header, which matters for field names alone (refused below)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(head)
        if any(d < 0 for d in shape):
            raise ValueError(f"negative size in shape {shape}")
    except ValueError as e:
        raise ConrError(f"UDP archive is corrupt: array 'i' has an unreadable header ({e})", path=path,
                        hint=_NPZ_RESAVE) from None
    if dtype.hasobject:
        raise ConrError("UDP archive contains pickled Python objects, which are refused for safety "
                        "(loading them could run arbitrary code)", path=path, hint=_NPZ_RESAVE)
    if dtype.names is not None or dtype.subdtype is not None:
        raise ConrError(f"UDP array 'i' has the structured dtype {dtype}; expected floating point",
                        path=path, hint=_NPZ_RESAVE)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(shape) == 3 and max(shape[:2]) > MAX_IMAGE_SIDE:
        over = f"{shape[1]}x{shape[0]} pixels, over the limit of {MAX_IMAGE_SIDE} pixels a side"
    elif nbytes > _MAX_NPY_BYTES:
        over = f"{nbytes / 2**30:.1f} GiB, over the limit of a {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} float64 frame"
    else:
        return
    raise ConrError(f"UDP array 'i' announces shape {shape} {dtype} ({over})", path=path,
                    hint=f"UDP frames are at most {MAX_IMAGE_SIDE} pixels a side: scale the pose down, "
                    "or export it again if the file is damaged")


def _load_npz(path: Path) -> np.ndarray:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ConrError("is not a .npz archive (not a zip file)", path=path, hint=_NPZ_RESAVE)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "i.npy" not in names:
                keys = ", ".join(repr(n.removesuffix(".npy")) for n in names) or "none"
                raise ConrError(f"UDP archive has no array 'i' (keys found: {keys})", path=path, hint=_NPZ_RESAVE)
            # checked before inflating: a small archive can expand to gigabytes
            if zf.getinfo("i.npy").file_size > _MAX_NPY_BYTES:
                raise ConrError(f"array 'i' is larger than a {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} float64 frame",
                                path=path, hint=f"UDP frames are at most {MAX_IMAGE_SIDE} pixels a side")
            _check_npy_header(zf, path)
        with np.load(path, allow_pickle=False) as z:
            return z["i"]
    except ConrError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ConrError("UDP archive contains pickled Python objects, which are refused for safety "
                            "(loading them could run arbitrary code)", path=path, hint=_NPZ_RESAVE) from None
        raise ConrError(f"UDP archive is corrupt: {e}", path=path, hint=_NPZ_RESAVE) from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise ConrError(f"UDP archive is corrupt or truncated: {e}", path=path, hint=_NPZ_RESAVE) from None


def _load_exr(path: Path) -> np.ndarray:
    """A float EXR with channels R, G, B, A (through the OpenEXR bindings: OpenCV wheels lack EXR)."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path), header_only=True) as f:
            (x0, y0), (x1, y1) = f.header()["dataWindow"]
        check_image_size(int(y1 - y0 + 1), int(x1 - x0 + 1), path)
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = {name: ch.pixels for name, ch in f.channels().items()}
    except ConrError:
        raise
    except Exception as e:
        raise ConrError(f"cannot read this EXR file: truncated, corrupt or not an EXR ({e})", path=path,
                        hint="export it again as a 4-channel (R, G, B, A) float EXR") from None
    missing = [c for c in "RGBA" if c not in channels]
    if missing:
        raise ConrError(f"EXR frame lacks channel(s) {', '.join(missing)} (has {', '.join(sorted(channels))})",
                        path=path, hint="UDP EXR frames need R, G, B (surface X, Y, Z) and A (visibility)")
    return np.stack([channels[c] for c in "RGBA"], axis=2)


def _load_udp_png(path: Path) -> np.ndarray:
    _, data = read_bytes(path, "pose")
    img = decode_image(data, path, "pose")
    colour_type = data[25] if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 else 6
    if colour_type != 6:  # OpenCV widens grey, grey + alpha and RGB PNGs to four channels
        kinds = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale + alpha"}
        raise ConrError(f"UDP PNGs must be RGBA (X, Y, Z, visibility); this one is {kinds.get(colour_type, 'not RGBA')}",
                        path=path, hint="write UDP frames as 16-bit RGBA PNGs (value = round(x * 65535)) or as .npz")
    if img.dtype != np.uint16:
        raise ConrError(f"UDP PNGs must be 16-bit RGBA; this one has {img.dtype} samples", path=path,
                        hint="write UDP frames as 16-bit RGBA PNGs (value = round(x * 65535)) or as .npz")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img.astype(np.float32) / np.float32(65535)


def read_udp(path: str | Path) -> np.ndarray:
    """An Ultra-Dense Pose frame as (H, W, 4) float32: surface X, Y, Z in [0, 1] and visibility.

    Formats: .npz (array 'i', no pickles), 4-channel float .exr, 16-bit RGBA .png (value / 65535).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in UDP_EXTS:
        raise ConrError(f"unknown UDP pose format {ext or '(no extension)'!r}", path=path,
                        hint=f"supported: {', '.join(sorted(UDP_EXTS))}")
    if not path.is_file():
        raise ConrError("pose file does not exist" if not path.exists() else "pose path is not a file", path=path)
    arr = {".npz": _load_npz, ".exr": _load_exr, ".png": _load_udp_png}[ext](path)
    return _check_udp(np.asarray(arr), path)


def _check_udp(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise ConrError(f"UDP frame has shape {arr.shape}; expected (H, W, 4): surface X, Y, Z and visibility",
                        path=path)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ConrError(f"UDP frame has dtype {arr.dtype}; expected floating point (float16/32/64)", path=path,
                        hint="store coordinates as float32 in [0, 1]")
    h, w = arr.shape[:2]
    if h < 2 or w < 2:
        raise ConrError(f"UDP frame is {w}x{h} pixels; it must be at least 2x2", path=path)
    check_image_size(h, w, path)
    arr = arr.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ConrError(f"UDP frame has {bad} NaN or infinite values", path=path,
                        hint="fill empty pixels with 0 (visibility 0) instead of NaN")
    # Rest-pose coordinates are normalised into [0, 1] (a little slack for rounding); visibility too.
    out = int(np.count_nonzero((arr < -0.01) | (arr > 1.01)))
    if out:
        lo, hi = float(arr.min()), float(arr.max())
        raise ConrError(f"UDP frame has {out} values outside [0, 1] (from {lo:.3g} to {hi:.3g}): not a normalised "
                        "UDP frame", path=path, hint="UDP holds rest-pose X, Y, Z normalised into [0, 1] and a "
                        "visibility of 0 or 1 (see the README's UDP normalisation rule); `conr poses` writes them")
    return arr
