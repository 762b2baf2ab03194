"""What a render leaves on disk: RGBA frames in a folder, videos and zips of them.

`conr render`, `conr demo` and the web UI write their results through these functions, so a
frame, a video or an archive is the same file whichever of them made it. Every file appears
whole or not at all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

from conr.files.io import atomic_path, atomic_save_npz, atomic_write_png, new_partial_dir, read_frame
from conr.models import CharacterSheet
from conr.render.pipeline import PoseSource, Renderer
from conr.files.video import VideoWriter, unpremultiply

Alpha = Literal["premultiplied", "straight"]


def render_to_folder(renderer: Renderer, sheet: CharacterSheet, poses: Sequence[PoseSource], out: Path,
                     batch_size: int = 1, alpha: Alpha = "premultiplied", save_udp: bool = False,
                     on_frame: Callable[[], None] = lambda: None) -> list[Path]:
    """Render every pose to OUT/NAME.png (and the parser's UDP to OUT/udp/NAME.npz for pose images
    when `save_udp`); return the frame paths in pose order."""
    written = []
    for frame in renderer.render(sheet, poses, batch_size=batch_size, save_udp=save_udp):
        rgba = frame.rgba if alpha == "premultiplied" else unpremultiply(frame.rgba)
        path = out / f"{frame.name}.png"
        atomic_write_png(path, rgba)
        if frame.udp is not None:
            atomic_save_npz(out / "udp" / f"{frame.name}.npz", i=frame.udp)
        written.append(path)
        on_frame()
    return written


@contextmanager
def staged_frames(out: Path, replace: bool) -> Iterator[Path]:
    """The folder a render writes its frames to: `out` itself, or with `replace` (--overwrite) a hidden
    folder beside it whose frames take the place of every frame `out` held (its PNGs and udp/*.npz)
    once the whole render succeeded. Stopped half-way, `out` is left as it was; files other than
    frames in `out` are kept."""
    out.mkdir(parents=True, exist_ok=True)
    if not replace:
        yield out
        return
    tmp = new_partial_dir(out)
    try:
        yield tmp
        for old in [*out.glob("*.png"), *(out / "udp").glob("*.npz")]:
            old.unlink()
        for new in sorted(tmp.rglob("*")):
            if new.is_file():
                dest = out / new.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(new, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_videos(frames: Sequence[Path], videos: Sequence[Path], fps: float,
                  background: tuple[int, int, int] | str = "white", premultiplied: bool = True,
                  on_frame: Callable[[], None] = lambda: None) -> list[Path]:
    """Encode RGBA PNG frames written by `render_to_folder` into each of `videos` (format from the
    suffix), reading every frame once."""
    with ExitStack() as stack:
        writers = [stack.enter_context(VideoWriter(v, fps=fps, background=background, premultiplied=premultiplied))
                   for v in videos]
        for path in frames:
            rgba = read_frame(path)
            for writer in writers:
                writer.write(rgba)
            on_frame()
    return list(videos)


def zip_files(files: Sequence[Path], archive: Path, folder: str = "") -> Path:
    """Store `files` (already compressed images and arrays) in a zip under FOLDER/their name."""
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, f"{folder}/{f.name}" if folder else f.name)
    return archive
