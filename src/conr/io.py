"""Reading inputs and writing outputs safely: validated decoding, natural order, atomic writes."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import cv2  # noqa: E402
import numpy as np

from conr.errors import ConrError

MAX_IMAGE_SIDE = 8192
UDP_EXTS = {".npz", ".exr", ".png"}

# largest .npy member accepted: a float64 (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 4) array plus its header
_MAX_NPY_BYTES = 8 * 4 * MAX_IMAGE_SIDE**2 + 4096
# numpy refuses headers over 10000 characters; reading a bounded prefix keeps a header that claims
# gigabytes of length (version 2 and 3 store it in 4 bytes) from being read into memory
_NPY_HEADER_PREFIX = 16 * 1024

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# The IEND chunk is constant (empty data, fixed CRC): its absence means the file was cut short.
_PNG_IEND = b"IEND\xaeB`\x82"
_CUTOUT_HINT = (
    "CoNR needs the character cut out on a transparent background: "
    "export a PNG with transparency (alpha channel) from your drawing program"
)


# ---------------------------------------------------------------- listing inputs


def natural_key(path: str | Path) -> tuple:
    """Sort key by file name: digit runs compare as numbers, text case-insensitively."""
    name = Path(path).name
    # re.split with a group alternates text, digits, text...: same types meet at each position
    parts = re.split(r"([0-9]+)", name.casefold())
    key = tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
    return key, name, str(path)


def natural_sorted(paths: Iterable[str | Path]) -> list[Path]:
    """`2.npz` before `10.npz`; ties (`01` vs `1`, case) broken by the full name."""
    return sorted((Path(p) for p in paths), key=natural_key)


def _norm_exts(exts: Iterable[str]) -> set[str]:
    return {e.lower() if e.startswith(".") else "." + e.lower() for e in exts}


def list_inputs(folder_or_paths: str | Path | Iterable[str | Path], exts: set[str], what: str) -> list[Path]:
    """Input files from a folder (natural order, hidden files and subfolders ignored),
    one file, or an explicit list of files (order kept)."""
    exts = _norm_exts(exts)
    wanted = ", ".join(sorted(exts))
    if isinstance(folder_or_paths, (str, Path)):
        folder = Path(folder_or_paths)
        if not folder.exists():
            raise ConrError(f"{what} folder or file does not exist", path=folder,
                            hint="check the path (relative paths start from the current directory)")
        if folder.is_file():
            return [_check_input_file(folder, exts, what)]
        if not folder.is_dir():
            raise ConrError(f"is neither a folder nor a file (expected {what} files)", path=folder)
        files = [p for p in folder.iterdir()
                 if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts]
        if not files:
            raise ConrError(f"holds no {what} files", path=folder, hint=f"put files with extension {wanted} in it")
        return natural_sorted(files)
    paths = [Path(p) for p in folder_or_paths]
    if not paths:
        raise ConrError(f"no {what} files given", hint=f"pass a folder or files with extension {wanted}")
    return [_check_input_file(p, exts, what) for p in paths]


def _check_input_file(path: Path, exts: set[str], what: str) -> Path:
    if not path.is_file():
        raise ConrError(f"{what} file does not exist" if not path.exists() else f"{what} path is not a file",
                        path=path)
    if path.suffix.lower() not in exts:
        raise ConrError(f"{what} file has extension {path.suffix or '(none)'!r}", path=path,
                        hint=f"expected one of {', '.join(sorted(exts))}")
    return path


# ---------------------------------------------------------------- image sizes


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 minus DHT/JPG/DAC).
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return h, w
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the header of a PNG, JPEG, GIF, BMP or WebP; None if not one of them."""
    if data[:8] == _PNG_SIG and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return h, w
    if data[:2] == b"BM" and len(data) >= 26 and struct.unpack("<I", data[14:18])[0] >= 40:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(h), abs(w)  # negative height means top-down rows
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[27:30], "little"), 1 + int.from_bytes(data[24:27], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return h & 0x3FFF, w & 0x3FFF
    return None


def _check_size(h: int, w: int, path: Path) -> None:
    if max(h, w) > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_SIDE * MAX_IMAGE_SIDE:
        raise ConrError(f"image is {w}x{h} pixels, over the limit of {MAX_IMAGE_SIDE} pixels a side",
                        path=path, hint=f"scale it down so that no side exceeds {MAX_IMAGE_SIDE} pixels")


def _read_bytes(path: str | Path, what: str) -> tuple[Path, bytes]:
    path = Path(path)
    if not path.is_file():
        raise ConrError(f"{what} file does not exist" if not path.exists() else f"{what} path is not a file",
                        path=path)
    return path, path.read_bytes()


def _check_png_complete(data: bytes, path: Path) -> None:
    if data[:8] == _PNG_SIG and data.rfind(_PNG_IEND) < 0:
        raise ConrError("PNG file is truncated (its end marker is missing)", path=path,
                        hint="the file was cut short while copying or saving: save or copy it again")


def read_png_header(path: str | Path, what: str = "image") -> tuple[int, int, int]:
    """(height, width, colour type) of a PNG, from its header, once its end marker shows the file is
    whole; no pixel is decoded."""
    path, data = _read_bytes(path, what)
    size = header_size(data) if data[:8] == _PNG_SIG and len(data) > 25 else None
    if size is None:
        raise ConrError(f"{what} is not a PNG file", path=path, hint="save it as a PNG")
    _check_png_complete(data, path)
    return size[0], size[1], data[25]


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) read from the file header, without decoding pixels.

    PNG, JPEG, GIF, BMP and WebP headers are parsed directly; other formats (TIFF, AVIF...)
    are decoded, which OpenCV itself bounds at 2**30 pixels.
    """
    path, data = _read_bytes(path, "image")
    size = header_size(data)
    if size is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ConrError("is not an image OpenCV can read", path=path)
        size = img.shape[:2]
    return int(size[0]), int(size[1])


def _decode(data: bytes, path: Path, what: str) -> np.ndarray:
    """Decode with OpenCV after the size and truncation guards; BGR(A) order, as OpenCV gives it."""
    size = header_size(data)
    if size is not None:
        _check_size(*size, path)  # before decoding: a tiny file can claim a huge image
    _check_png_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ConrError(f"cannot decode this {what} image: not an image, unsupported, truncated or corrupt",
                        path=path, hint="open it in an image editor and save it again as PNG")
    if size is None:
        _check_size(*img.shape[:2], path)
    return img


# ---------------------------------------------------------------- character sheets


def read_rgba(path: str | Path, what: str = "character sheet") -> np.ndarray:
    """A cut-out RGBA image as (H, W, 4) uint8, channels R, G, B, A (straight alpha)."""
    path, data = _read_bytes(path, what)
    img = _decode(data, path, what)
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        img = np.concatenate([img[..., :1]] * 3 + [img[..., 1:]], axis=2)
    if img.ndim != 3 or img.shape[2] != 4:
        kind = "grayscale" if img.ndim == 2 or img.shape[2] == 1 else "RGB"
        raise ConrError(f"{what} image is {kind} without an alpha channel (transparency)", path=path,
                        hint=_CUTOUT_HINT)
    if img.dtype == np.uint16:
        # round(v * 255 / 65535) in integers; never a tie since 65535 = 255 * 257
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ConrError(f"{what} image has {img.dtype} samples; 8- or 16-bit integer samples are supported",
                        path=path, hint="save it as an 8-bit RGBA PNG")
    rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        raise ConrError(f"{what} image has an alpha channel but no transparent pixel: the background "
                        "is not cut out", path=path, hint=_CUTOUT_HINT)
    if alpha.max() == 0:
        raise ConrError(f"{what} image is fully transparent: nothing is drawn", path=path,
                        hint="check that the export kept the drawing layers visible")
    return rgba


def read_frame(path: str | Path) -> np.ndarray:
    """A frame this program wrote (RGBA PNG), as (H, W, 4) uint8, without the sheet checks."""
    path, data = _read_bytes(path, "frame")
    img = _decode(data, path, "frame")
    if img.ndim != 3 or img.shape[2] != 4 or img.dtype != np.uint8:
        raise ConrError("frame is not an 8-bit RGBA PNG", path=path, hint="render it again with --overwrite")
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


# ---------------------------------------------------------------- UDP frames


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
        _check_size(int(y1 - y0 + 1), int(x1 - x0 + 1), path)
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
    _, data = _read_bytes(path, "pose")
    img = _decode(data, path, "pose")
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
    _check_size(h, w, path)
    arr = arr.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ConrError(f"UDP frame has {bad} NaN or infinite values", path=path,
                        hint="fill empty pixels with 0 (visibility 0) instead of NaN")
    return arr


def make_readable(path: str | Path) -> None:
    """Give a file made by mkstemp (0600) the permissions open() would have given it."""
    os.chmod(path, 0o666 & ~_current_umask())


def _current_umask() -> int:
    """The process umask, read now (it may change while the program runs)."""
    # os.umask can only be read by setting it; 0o077 while it is swapped means a file another
    # thread creates in that instant gets too few permissions, never too many
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
        make_readable(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_new_dir(path: str | Path, overwrite: bool) -> None:
    """Refuse an output folder that already holds something, unless asked to replace it."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not overwrite:
        raise ConrError("output folder already exists and is not empty", path=path,
                        hint="choose a new folder or pass --overwrite to replace it")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `path`; it replaces `path` only if the block succeeds,
    so an error or Ctrl-C never leaves a half-written output folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700; outputs get what mkdir would give
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def encode_png(rgba: np.ndarray) -> bytes:
    """Encode an (H, W, 4) uint8 or uint16 RGBA array as PNG bytes."""
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
    "MAX_IMAGE_SIDE",
    "list_inputs",
    "natural_key",
    "natural_sorted",
    "read_image_size",
    "read_png_header",
    "read_rgba",
    "read_udp",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_png",
    "atomic_save_npz",
    "encode_png",
]
