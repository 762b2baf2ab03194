"""Taking files from strangers (the web UI) safely.

Whoever visits the web UI may upload anything, so each upload is treated as hostile:

- zip slip: a member named `../../x`, `/etc/x` or `C:\\x` writes outside its folder when its name
  becomes a path. Here no name a visitor chose ever becomes part of a path: files are stored as
  `00000.png`, `00001.png`... and such members are refused outright, as are symbolic links.
- zip bombs: kilobytes that inflate to gigabytes. Declared sizes are checked against the limits from
  the central directory before anything is extracted, and the copy counts bytes, since a header may lie.
- huge counts: thousands of entries or files cost time and disk; both are bounded.

A failed call removes what it wrote, so the caller's per-request folder never holds half an upload.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Collection, Sequence

from conr.errors import ConrError
from conr.files.io import natural_key

_MB = 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 500  # usable files per input, after zips are expanded
    max_file_mb: float = 50.0  # one file (also one member of a zip, uncompressed)
    max_total_mb: float = 500.0  # all files of one input, after expansion
    max_members: int = 2000  # entries in one zip, checked before extracting anything


@dataclass(frozen=True)
class Upload:
    path: Path  # where it is on the server: a name WE chose inside dest
    name: str  # what the visitor called it, for messages only (e.g. "frames.zip: walk/3.npz")


@dataclass(frozen=True)
class _Planned:
    """One file to copy: a plain upload or a member of a zip."""

    name: str
    ext: str
    size: int  # declared bytes: the file's size, or the member's uncompressed size
    open: Callable[[], BinaryIO]


def _shown(name: str) -> str:
    # the name is the visitor's text: no control characters (a newline could fake a "fix:" line)
    return re.sub(r"[\x00-\x1f\x7f]", "?", name)[:200]


def _wanted(exts: Collection[str]) -> str:
    return ", ".join(sorted(exts))


def _size(n: int) -> str:
    return f"{n / _MB:.1f} MB" if n >= _MB // 10 else f"{n} bytes"


def _member_key(member: str) -> tuple:
    # natural order folder by folder: walk/2.npz before walk/10.npz, and all of walk/ together
    return tuple(natural_key(part)[0] for part in member.split("/")), member


def _is_junk(member: str) -> bool:
    base = member.rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"


def _escapes(member: str) -> bool:
    """Absolute, drive-letter or `..` names; backslashes count as separators, as Windows tools use them."""
    parts = member.replace("\\", "/").split("/")
    return member.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", member)) or ".." in parts


def _check_size(name: str, size: int, what: str, limits: UploadLimits) -> None:
    if size == 0:
        raise ConrError(f"{name} is empty (0 bytes)",
                        hint="the export or the upload was interrupted: save the file again and upload it")
    if size > limits.max_file_mb * _MB:
        raise ConrError(f"{name} is {_size(size)}, over the limit of {limits.max_file_mb:g} MB for one file "
                        f"of {what}", hint="upload a smaller file (fewer pixels, or compressed)")


def _plan_zip(zf: zipfile.ZipFile, shown: str, exts: set[str], what: str,
              limits: UploadLimits) -> list[_Planned]:
    """The usable members of one zip, in natural order, from its central directory alone."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ConrError(f"{shown} has {len(infos)} entries, over the limit of {limits.max_members}",
                        hint=f"put at most {limits.max_members} files in one zip, or upload several zips")
    usable = sorted(exts - {".zip"})  # nested zips are not opened
    members = []
    for info in infos:
        member = f"{shown}: {_shown(info.filename)}"
        if _escapes(info.filename):
            raise ConrError(f"{member}: the entry's name points outside the archive (absolute path, '..' or "
                            "drive letter), refused for safety",
                            hint=f"create the zip again from a folder holding the files for {what}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ConrError(f"{member}: the entry is a symbolic link, refused for safety",
                            hint="put the files themselves in the zip, not links to them")
        ext = Path(info.filename).suffix.lower()
        if info.is_dir() or _is_junk(info.filename) or ext not in usable:
            continue
        if info.flag_bits & 0x1:
            raise ConrError(f"{member}: the entry is password-protected", hint="create the zip without a password")
        _check_size(member, info.file_size, what, limits)
        members.append((_member_key(info.filename), _Planned(member, ext, info.file_size, partial(zf.open, info))))
    if not members:
        raise ConrError(f"{shown} holds nothing usable for {what} (looked for {', '.join(usable)})",
                        hint=f"put files with extension {', '.join(usable)} in the zip (zips inside it are not "
                        "opened)")
    return [planned for _, planned in sorted(members, key=lambda m: m[0])]


def _plan(files: Sequence[Path], shown: Sequence[str], exts: set[str], what: str, limits: UploadLimits,
          stack: ExitStack) -> list[_Planned]:
    """Everything to copy, in order, with every limit checked before a byte is written."""
    planned: list[_Planned] = []
    total = 0
    for source, name in sorted(zip(files, shown), key=lambda f: natural_key(f[1])):
        ext = Path(name).suffix.lower()
        if ext not in exts:
            raise ConrError(f"{name} has extension {ext or '(none)'!r}; accepted for {what}: {_wanted(exts)}",
                            hint=f"convert it to one of {_wanted(exts)}, or upload another file")
        if ext == ".zip":
            try:
                zf = stack.enter_context(zipfile.ZipFile(source))
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise ConrError(f"{name} is not a zip archive or is corrupt ({e})",
                                hint="create the zip again (e.g. 'Compress' in the file manager) and upload it") \
                    from None
            items = _plan_zip(zf, name, exts, what, limits)
        else:
            items = [_Planned(name, ext, source.stat().st_size, partial(source.open, "rb"))]
            _check_size(name, items[0].size, what, limits)
        for item in items:
            planned.append(item)
            total += item.size
            if len(planned) > limits.max_files:
                raise ConrError(f"more than {limits.max_files} files for {what} (counting up to {item.name})",
                                hint=f"upload at most {limits.max_files} files, e.g. a shorter sequence")
            if total > limits.max_total_mb * _MB:
                raise ConrError(f"the files for {what} add up to more than {limits.max_total_mb:g} MB "
                                f"(counting up to {item.name})", hint="upload fewer or smaller files")
    return planned


def _copy_counted(src: BinaryIO, dst: BinaryIO, item: _Planned) -> None:
    left = item.size
    # never read more than one byte past the declared size: a lying header costs nothing
    while chunk := src.read(min(_CHUNK, left + 1)):
        left -= len(chunk)
        if left < 0:
            raise ConrError(f"{item.name} yields more data than the {item.size} bytes its header declares: "
                            "the archive is damaged or crafted", hint="create the zip again and upload it")
        dst.write(chunk)


def take_uploads(files: Sequence[str | Path], dest: Path, exts: Collection[str], what: str,
                 limits: UploadLimits, names: Sequence[str] | None = None) -> list[Upload]:
    """Copy uploaded files (zips expanded when `.zip` is in `exts`) into `dest` as `00000.png`, ...

    `files` are paths the web framework stored uploads at; `names` are what the visitor called them
    (default: the files' base names), used for ordering and messages only. Returns the copies in
    natural order of those names; refuses with a ConrError naming the visitor's file.
    """
    files = [Path(f) for f in files]
    shown = [_shown(n) for n in (names if names is not None else [f.name for f in files])]
    if len(shown) != len(files):
        raise ValueError(f"{len(files)} files but {len(shown)} names")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in exts}
    if not files:
        raise ConrError(f"nothing uploaded for {what}", hint=f"choose {_wanted(exts)} files to upload")
    dest = Path(dest)
    written: list[Path] = []
    try:
        with ExitStack() as stack:
            planned = _plan(files, shown, exts, what, limits, stack)
            dest.mkdir(parents=True, exist_ok=True)
            uploads = []
            for k, item in enumerate(planned):
                out = dest / f"{k:05d}{item.ext}"
                # "x": never overwrite or follow something already there; copied, never moved or linked
                with open(out, "xb") as dst:
                    written.append(out)
                    try:
                        with item.open() as src:
                            _copy_counted(src, dst, item)
                    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                        raise ConrError(f"{item.name} cannot be extracted: the archive is corrupt or uses an "
                                        f"unsupported compression ({e})",
                                        hint="create the zip again with ordinary (deflate) compression") from None
                uploads.append(Upload(out, item.name))
            return uploads
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


__all__ = ["Upload", "UploadLimits", "take_uploads"]
