"""Streaming video writer for rendered RGBA frames, with transparency where the format allows.

Formats by extension:
    .mp4   H.264 yuv420p, composited over a background colour (H.264 has no alpha).
    .webm  VP9 with alpha (libvpx-vp9, yuva420p): plays transparent in browsers.
    .mov   ProRes 4444 with alpha (prores_ks, yuva444p10le), else QuickTime Animation (qtrle,
           argb): for video editors.
    .gif   palette GIF with 1-bit transparency (alpha >= 128 is opaque); ffmpeg's palettegen /
           paletteuse build one palette per frame. GIF delays are in 1/100 s, so 24 fps plays at 25.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from conr.errors import ConrError
from conr.files.io import make_readable, partial_prefix, remove_stale_partials

_NAMED_COLORS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "red": (255, 0, 0),
}


def parse_color(text: str) -> tuple[int, int, int]:
    """A colour name (white, black, gray/grey, green, blue, red), #RRGGBB / RRGGBB, or CSS's
    rgb(R, G, B) / rgba(R, G, B, A) as colour pickers write it (alpha ignored)."""
    key = text.strip().lower()
    if key in _NAMED_COLORS:
        return _NAMED_COLORS[key]
    css = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)", key)
    if css and all(float(v) <= 255 for v in css.groups()):
        return tuple(round(float(v)) for v in css.groups())  # type: ignore[return-value]
    hexpart = key.removeprefix("#")
    if len(hexpart) == 6 and all(c in "0123456789abcdef" for c in hexpart):
        return int(hexpart[0:2], 16), int(hexpart[2:4], 16), int(hexpart[4:6], 16)
    raise ConrError(f"cannot read the colour {text!r}",
                    hint=f"use one of {', '.join(_NAMED_COLORS)} or a hex colour like #00ff00")


def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied (H, W, 4) RGBA (uint8 or float on the 0..255 scale) -> straight uint8 RGBA.

    rgb = round(rgb_premul * 255 / alpha), clipped to 0..255; 0 where alpha is 0.
    """
    rgba = np.asarray(rgba, np.float32)
    alpha = rgba[..., 3:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(alpha > 0, rgba[..., :3] * 255 / alpha, 0)
    out = np.empty(rgba.shape, np.uint8)
    out[..., :3] = np.clip(np.floor(rgb + 0.5), 0, 255)
    out[..., 3:] = np.clip(np.floor(alpha + 0.5), 0, 255)
    return out


@dataclass(frozen=True)
class _Codec:
    name: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Format:
    container: str
    alpha: bool  # the encoder gets straight alpha; otherwise frames are composited
    codecs: tuple[_Codec, ...]  # in order of preference
    container_options: dict[str, str] = field(default_factory=dict)


# Fallback H.264 encoders, tried when the build lacks libx264; hardware ones may fail to open.
_OTHER_H264 = ("libopenh264", "h264_videotoolbox", "h264_nvenc", "h264_qsv", "h264_amf", "h264_mf", "h264_vaapi")

_FORMATS = {
    ".mp4": _Format(
        "mp4", False,
        (_Codec("libx264", "yuv420p", {"crf": "18"}),) + tuple(_Codec(n, "yuv420p") for n in _OTHER_H264),
        {"movflags": "+faststart"},  # index first, so browsers start playing before the download ends
    ),
    ".webm": _Format("webm", True, (_Codec("libvpx-vp9", "yuva420p",
                                           {"crf": "30", "b": "0", "cpu-used": "4", "row-mt": "1"}),)),
    ".mov": _Format("mov", True, (_Codec("prores_ks", "yuva444p10le", {"profile": "4444", "vendor": "apl0"}),
                                  _Codec("qtrle", "argb"))),
    ".gif": _Format("gif", True, (_Codec("gif", "pal8"),)),
}
SUPPORTED_VIDEO_EXTS = tuple(sorted(_FORMATS))


def available_codecs(ext: str) -> list[str]:
    """Encoders for `ext` that this PyAV build has, in order of preference."""
    return [c.name for c in _FORMATS[ext.lower()].codecs if c.name in av.codecs_available]


def _opens(codec: _Codec, width: int, height: int, rate: Fraction) -> bool:
    """Listed is not enough: hardware encoders are listed on machines without the hardware."""
    try:
        ctx = av.CodecContext.create(codec.name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, codec.pix_fmt
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.options = dict(codec.options)
        ctx.open()
        return True
    except (av.FFmpegError, ValueError):
        return False


def _letterbox(premul: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to fit (height, width) keeping the aspect ratio, centred on a transparent border."""
    h, w = premul.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    out = np.zeros((height, width, 4), np.float32)
    y, x = (height - nh) // 2, (width - nw) // 2
    # premultiplied values interpolate without dark fringes at the edges
    out[y : y + nh, x : x + nw] = cv2.resize(premul, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoWriter:
    """Encode RGBA frames one by one into `path`; the file appears only after a successful close.

    Frames are (H, W, 4) uint8 RGBA, premultiplied by alpha when `premultiplied` (the renderer's
    output), else straight alpha. The first frame fixes the video size; frames of another size
    are letterboxed into it.
    """

    def __init__(self, path: str | Path, fps: float = 30, background: tuple[int, int, int] | str = (255, 255, 255),
                 premultiplied: bool = True):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _FORMATS:
            raise ConrError(f"unsupported video format {ext or '(no extension)'!r}", path=self.path,
                            hint=f"use one of {', '.join(SUPPORTED_VIDEO_EXTS)}")
        if not fps > 0:
            raise ConrError(f"frame rate must be positive, got {fps}", path=self.path)
        self.format = _FORMATS[ext]
        # exact for int and Fraction rates; a float like 29.97 becomes 2997/100
        self.rate = Fraction(fps if isinstance(fps, (int, Fraction)) else float(fps)).limit_denominator(1001)
        self.background = parse_color(background) if isinstance(background, str) else tuple(background)
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ConrError(f"background must be three values 0..255, got {background!r}", path=self.path)
        self.background = tuple(int(c) for c in self.background)
        self.premultiplied = premultiplied
        self.codec: str | None = None  # chosen at the first frame
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the content, before padding
        self._tmp: Path | None = None
        self._container = None
        self._stream = None
        self._graph = None  # GIF palette filter graph
        self._closed = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False

    def write(self, rgba: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is closed")
        rgba = np.asarray(rgba)
        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8 or 0 in rgba.shape:
            raise ValueError(f"expected an (H, W, 4) uint8 RGBA frame, got {rgba.shape} {rgba.dtype}")
        try:
            if self._container is None:
                self._open(*rgba.shape[:2])
            self._encode(self._to_frame(rgba))
        except BaseException:
            self._abort()
            raise
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._closed:
            return
        if self.frames == 0:
            self._abort()
            raise ConrError("no frames to encode", path=self.path, hint="check that the pose input is not empty")
        try:
            self._encode(None)
            self._container.close()
            make_readable(self._tmp)
            os.replace(self._tmp, self.path)
        except BaseException:
            self._abort()
            raise
        self._closed = True

    def _abort(self) -> None:
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already failing: the original error is the one to report
                pass
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()

    def _open(self, height: int, width: int) -> None:
        self._size = (height, width)
        ew, eh = (width + width % 2, height + height % 2) if not self.format.alpha else (width, height)
        codec = next((c for c in self.format.codecs if c.name in av.codecs_available
                      and _opens(c, ew, eh, self.rate)), None)
        if codec is None:
            tried = ", ".join(c.name for c in self.format.codecs)
            raise ConrError(f"this PyAV build has no working encoder for {self.path.suffix} (tried {tried})",
                            path=self.path, hint=f"pick another of {', '.join(SUPPORTED_VIDEO_EXTS)}")
        self.codec = codec.name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(self.path), suffix=f".tmp{self.path.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = av.open(str(self._tmp), "w", format=self.format.container,
                                  options=self.format.container_options)
        stream = self._container.add_stream(codec.name, rate=self.rate, options=dict(codec.options))
        stream.width, stream.height, stream.pix_fmt = ew, eh, codec.pix_fmt
        if codec.pix_fmt.startswith("yuv"):
            # tag what we convert with, so players do not guess between BT.601 and BT.709
            ctx = stream.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
            ctx.color_range = 1  # limited ("MPEG") range
        self._stream = stream
        if codec.name == "gif":
            self._graph = self._gif_graph(ew, eh)

    def _gif_graph(self, width: int, height: int) -> av.filter.Graph:
        graph = av.filter.Graph()
        src = graph.add_buffer(width=width, height=height, format="rgba", time_base=1 / self.rate)
        split = graph.add("split")
        palette = graph.add("palettegen", "stats_mode=single:reserve_transparent=1")
        use = graph.add("paletteuse", "new=1:alpha_threshold=128")
        sink = graph.add("buffersink")
        src.link_to(split)
        split.link_to(palette, 0, 0)
        split.link_to(use, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        return graph

    def _to_frame(self, rgba: np.ndarray) -> av.VideoFrame:
        """Premultiply, letterbox, then composite (no alpha) or un-premultiply (alpha codecs)."""
        premul = rgba.astype(np.float32)
        if not self.premultiplied:
            premul[..., :3] *= premul[..., 3:] / 255
        if rgba.shape[:2] != self._size:
            premul = _letterbox(premul, *self._size)
        if self.format.alpha:
            frame = av.VideoFrame.from_ndarray(unpremultiply(premul), format="rgba")
        else:
            bg = np.asarray(self.background, np.float32)
            rgb = premul[..., :3] + bg * (1 - premul[..., 3:] / 255)
            rgb = np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)
            h, w = rgb.shape[:2]
            # yuv420p needs even sides: pad right/bottom with the background
            padded = np.empty((h + h % 2, w + w % 2, 3), np.uint8)
            padded[:] = self.background
            padded[:h, :w] = rgb
            frame = av.VideoFrame.from_ndarray(padded, format="rgb24")
        if self._stream.pix_fmt.startswith("yuv"):
            frame = frame.reformat(format=self._stream.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts, frame.time_base = self.frames, 1 / self.rate
        return frame

    def _encode(self, frame: av.VideoFrame | None) -> None:
        """Encode one frame (None flushes); GIF frames go through the palette graph first."""
        frames = [frame]
        if self._graph is not None:
            self._graph.push(frame)
            frames = []
            while True:
                try:
                    frames.append(self._graph.pull())
                except (av.BlockingIOError, av.EOFError):
                    break
            if frame is None:
                frames.append(None)
        for f in frames:
            self._container.mux(self._stream.encode(f))


__all__ = ["SUPPORTED_VIDEO_EXTS", "VideoWriter", "available_codecs", "parse_color", "unpremultiply"]
