"""Reading inputs and writing outputs safely: validated decoding, natural order, atomic writes."""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import cv2  # noqa: E402
import numpy as np

from conr.errors import ConrError, environment_error

MAX_IMAGE_SIDE = 8192
# An 8192 x 8192 RGBA PNG at 16 bits a channel, uncompressed, is 512 MiB: no image file is larger.
MAX_IMAGE_BYTES = 8192 * 8192 * 8 + 2 ** 20

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
        _check_link(folder, what)
        if not folder.exists():
            raise ConrError(f"{what} folder or file does not exist", path=folder,
                            hint="check the path (relative paths start from the current directory)")
        if folder.is_file():
            return [_check_input_file(folder, exts, what)]
        if not folder.is_dir():
            raise ConrError(f"is neither a folder nor a file (expected {what} files)", path=folder)
        wanted_names = [p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() in exts]
        for p in wanted_names:  # a link to nowhere is a missing input, not one to skip quietly
            _check_link(p, what)
        files = [p for p in wanted_names if p.is_file()]
        if not files:
            raise ConrError(f"holds no {what} files", path=folder, hint=f"put files with extension {wanted} in it")
        return natural_sorted(files)
    paths = [Path(p) for p in folder_or_paths]
    if not paths:
        raise ConrError(f"no {what} files given", hint=f"pass a folder or files with extension {wanted}")
    return [_check_input_file(p, exts, what) for p in paths]


def _check_link(path: Path, what: str) -> None:
    """A symbolic link whose target is missing (or that loops) is named as such: "does not exist"
    would send the user looking for a file that `ls` shows."""
    if path.is_symlink() and not path.exists():
        raise ConrError(f"{what} path is a symbolic link to nothing (its target is missing, or the links loop)",
                        path=path, hint="point the link at an existing file or folder, or give the real path")


def _check_input_file(path: Path, exts: set[str], what: str) -> Path:
    _check_link(path, what)
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


def check_image_size(h: int, w: int, path: Path) -> None:
    if max(h, w) > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_SIDE * MAX_IMAGE_SIDE:
        raise ConrError(f"image is {w}x{h} pixels, over the limit of {MAX_IMAGE_SIDE} pixels a side",
                        path=path, hint=f"scale it down so that no side exceeds {MAX_IMAGE_SIDE} pixels")


def read_bytes(path: str | Path, what: str) -> tuple[Path, bytes]:
    path = Path(path)
    _check_link(path, what)
    if not path.is_file():
        raise ConrError(f"{what} file does not exist" if not path.exists() else f"{what} path is not a file",
                        path=path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise ConrError(f"{what} file is empty (0 bytes)", path=path,
                            hint="the file was not saved or copied completely: save or copy it again")
        if size > MAX_IMAGE_BYTES:
            raise ConrError(f"{what} file is {size / 2 ** 20:.0f} MiB, more than any image conr reads "
                            f"({MAX_IMAGE_BYTES / 2 ** 20:.0f} MiB)", path=path,
                            hint=f"give a PNG of at most {MAX_IMAGE_SIDE} pixels a side")
        return path, path.read_bytes()
    except OSError as err:
        _reraise(err, path, doing="reading")


def _check_png_complete(data: bytes, path: Path) -> None:
    if data[:8] == _PNG_SIG and data.rfind(_PNG_IEND) < 0:
        raise ConrError("PNG file is truncated (its end marker is missing)", path=path,
                        hint="the file was cut short while copying or saving: save or copy it again")


def read_png_header(path: str | Path, what: str = "image") -> tuple[int, int, int]:
    """(height, width, colour type) of a PNG, from its header, once its end marker shows the file is
    whole; no pixel is decoded."""
    path, data = read_bytes(path, what)
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
    path, data = read_bytes(path, "image")
    size = header_size(data)
    if size is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ConrError("is not an image OpenCV can read", path=path)
        size = img.shape[:2]
    return int(size[0]), int(size[1])


def decode_image(data: bytes, path: Path, what: str) -> np.ndarray:
    """Decode with OpenCV after the size and truncation guards; BGR(A) order, as OpenCV gives it."""
    size = header_size(data)
    if size is not None:
        check_image_size(*size, path)  # before decoding: a tiny file can claim a huge image
    _check_png_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ConrError(f"cannot decode this {what} image: not an image, unsupported, truncated or corrupt",
                        path=path, hint="open it in an image editor and save it again as PNG")
    if size is None:
        check_image_size(*img.shape[:2], path)
    return img


# ---------------------------------------------------------------- character sheets


def read_rgba(path: str | Path, what: str = "character sheet") -> np.ndarray:
    """A cut-out RGBA image as (H, W, 4) uint8, channels R, G, B, A (straight alpha)."""
    path, data = read_bytes(path, what)
    img = decode_image(data, path, what)
    what = what if what.endswith("image") else f"{what} image"
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        img = np.concatenate([img[..., :1]] * 3 + [img[..., 1:]], axis=2)
    if img.ndim != 3 or img.shape[2] != 4:
        kind = "grayscale" if img.ndim == 2 or img.shape[2] == 1 else "RGB"
        raise ConrError(f"{what} is {kind} without an alpha channel (transparency)", path=path,
                        hint=_CUTOUT_HINT)
    if img.dtype == np.uint16:
        # round(v * 255 / 65535) in integers; never a tie since 65535 = 255 * 257
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ConrError(f"{what} has {img.dtype} samples; 8- or 16-bit integer samples are supported",
                        path=path, hint="save it as an 8-bit RGBA PNG")
    rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        raise ConrError(f"{what} has an alpha channel but no transparent pixel: the background "
                        "is not cut out", path=path, hint=_CUTOUT_HINT)
    if alpha.max() == 0:
        raise ConrError(f"{what} is fully transparent: nothing is drawn", path=path,
                        hint="check that the export kept the drawing layers visible")
    return rgba


def read_frame(path: str | Path) -> np.ndarray:
    """A frame this program wrote (RGBA PNG), as (H, W, 4) uint8, without the sheet checks."""
    path, data = read_bytes(path, "frame")
    img = decode_image(data, path, "frame")
    if img.ndim != 3 or img.shape[2] != 4 or img.dtype != np.uint8:
        raise ConrError("frame is not an 8-bit RGBA PNG", path=path, hint="render it again with --overwrite")
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


# ---------------------------------------------------------------- writing outputs


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
    if path.is_dir():
        raise ConrError("is a folder, where a file is written", path=path, hint="give a file's path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(path), suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as err:
        _reraise(err, path)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        make_readable(tmp_path)
        try:
            os.replace(tmp_path, path)
        except OSError as err:  # named by the file the user asked for, not our temporary one
            raise OSError(err.errno, err.strerror, str(path)) from None
    except OSError as err:
        _reraise(err, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_parent_folders(path: str | Path) -> None:
    """Refuse an output path that runs through a file (`out.png/frames`), before any work is done:
    the nearest part of the path that exists must be a folder."""
    for parent in Path(path).parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ConrError("is a file, where a folder of the output path was expected", path=parent,
                                hint=f"choose an output path through folders (asked for {path})")
            return


def check_new_file(path: str | Path, overwrite: bool, option: str) -> None:
    """Refuse an output file (`--video`, `--json`...) that cannot be written, before any work is done:
    a folder in its place, a file in its path, or a file already there without --overwrite."""
    path = Path(path)
    if path.is_dir():
        raise ConrError(f"{option} names a folder; a file is written there", path=path,
                        hint=f"give a file's path, e.g. {path / ('out' + path.suffix)}")
    check_parent_folders(path)
    if path.exists() and not overwrite:
        raise ConrError("output file already exists", path=path,
                        hint=f"pass --overwrite to replace it, or choose another {option}")


def check_new_dir(path: str | Path, overwrite: bool) -> None:
    """Refuse an output folder that already holds something, unless asked to replace it."""
    path = Path(path)
    check_parent_folders(path)
    if path.exists() and not path.is_dir():
        raise ConrError("the output path is a file, where a folder is written", path=path,
                        hint="choose a new folder" + ("" if not overwrite else " (--overwrite replaces folders only)"))
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ConrError("output folder already exists and is not empty", path=path,
                        hint="choose a new folder or pass --overwrite to replace it")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `path`; it replaces `path` only if the block succeeds,
    so an error, Ctrl-C or SIGTERM never leaves a half-written output folder. A temporary folder that
    a killed run (kill -9, power loss) left beside `path` is removed first."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_partial_dir(path)
    except OSError as err:
        _reraise(err, path)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700; outputs get what mkdir would give
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except OSError as err:
        _reraise(err, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _reraise(err: OSError, path: Path, doing: str = "writing") -> None:
    """A full disk, a missing permission... as a ConrError naming `path`; any other OSError as it was."""
    env = environment_error(err, path, doing)
    if env is None:
        raise err
    raise env from None


def partial_prefix(path: Path) -> str:
    """How every temporary name made beside `path` starts: hidden, with this process's id, so that
    `remove_stale_partials` can tell what a process that no longer runs left behind."""
    return f".{path.name}.{os.getpid()}-"


def new_partial_dir(path: Path) -> Path:
    """A hidden temporary folder beside `path`, once what dead processes left there is removed."""
    remove_stale_partials(path)
    return Path(tempfile.mkdtemp(prefix=partial_prefix(path), suffix=".partial", dir=path.parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a pid we can judge: leave it
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the temporary folders and files (`.NAME.PID-*.partial`, `.NAME.PID-*.tmp*`) that a
    process which no longer runs left beside `path`; return what was removed."""
    path = Path(path)
    removed = []
    try:
        entries = list(path.parent.glob(f".{glob.escape(path.name)}.*-*"))
    except OSError:
        return removed
    for entry in entries:
        rest = entry.name[len(path.name) + 2:]
        pid_text = rest.split("-", 1)[0]
        if not (pid_text.isdigit() and (entry.name.endswith(".partial") or ".tmp" in rest)):
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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


# UDP frames have their own module; they are read from here too.
__all__ = [
    "ConrError",
    "MAX_IMAGE_SIDE",
    "list_inputs",
    "natural_key",
    "natural_sorted",
    "read_image_size",
    "read_png_header",
    "read_rgba",
    "check_new_dir",
    "check_new_file",
    "check_parent_folders",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_png",
    "atomic_save_npz",
    "encode_png",
]
