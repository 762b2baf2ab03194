"""The rendering pipeline: files in, RGBA frames out, with the networks kept apart.

    renderer = Renderer.from_weights("weights/", device="auto")
    sheet = renderer.load_sheet(["char/front.png", "char/side.png"])
    for frame in renderer.render(sheet, find_poses("dance/"), batch_size=4):
        ...  # frame.name, frame.rgba (H, W, 4) uint8, RGB premultiplied by A

The sheet is encoded once; frames are read, cropped and rendered in batches and streamed, so
memory does not grow with the length of the sequence. The CLI, benchmarks and training reuse it.
"""

from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import cv2
import numpy as np
import torch

from conr.errors import ConrError
from conr.files.io import list_inputs, read_rgba
from conr.files.udp import UDP_EXTS, read_udp
from conr.models import CharacterSheet, CoNR
from conr.render.preprocess import (Crop, PreparedImage, PreparedUDP, prepare_image, prepare_udp, square_crop, to_uint8,
                             uncrop)

PoseKind = Literal["udp", "image"]
Precision = Literal["fp32", "fast"]
SHEET_EXTS = {".png"}
POSE_EXTS = {"udp": UDP_EXTS, "image": {".png"}}
# The original refuses a sheet view whose square crop is at least this opaque on average.
MAX_SHEET_OPACITY = 0.95
# Every view is matched against every frame: memory grows with the views (200 small views take 5 GB),
# and two to four views work best.
MAX_SHEET_VIEWS = 16


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    from conr.engine.device import torch_device

    return torch_device(device)


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(25)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 25:
        return head[24]
    return None


def pose_kind_of(path: Path) -> PoseKind:
    """UDP for .npz, .exr and 16-bit PNG; a pose image for an 8-bit PNG."""
    ext = path.suffix.lower()
    if ext in (".npz", ".exr"):
        return "udp"
    return "udp" if _png_bit_depth(path) == 16 else "image"


@dataclass(frozen=True)
class PoseSource:
    path: Path
    kind: PoseKind

    @property
    def name(self) -> str:
        return self.path.stem

    def read(self) -> np.ndarray:
        return read_udp(self.path) if self.kind == "udp" else read_rgba(self.path, what="pose image")


def find_poses(poses: str | Path | Sequence[str | Path], kind: PoseKind | Literal["auto"] = "auto") -> list[PoseSource]:
    """Pose frames from a folder (natural order) or a list of files; kind detected unless given."""
    single = isinstance(poses, (str, Path))
    exts = UDP_EXTS | POSE_EXTS["image"] if kind == "auto" else POSE_EXTS[kind]
    paths = list_inputs(poses if single else list(poses), exts, "pose")
    if kind != "auto":
        return [PoseSource(p, kind) for p in paths]
    sources = [PoseSource(p, pose_kind_of(p)) for p in paths]
    kinds = {s.kind for s in sources}
    if len(kinds) > 1:
        first = {k: next(s.path for s in sources if s.kind == k) for k in kinds}
        raise ConrError(f"pose frames mix UDP maps (e.g. {first['udp'].name}) and pose images "
                        f"(e.g. {first['image'].name})", Path(poses) if single else None,
                        "keep one kind per sequence, or force one with --pose-kind udp|image")
    return sources


def check_sheet_views(views: Sequence[object], where: str | Path | None = None) -> None:
    """Refuse a character sheet of more views than a render holds in memory."""
    if len(views) > MAX_SHEET_VIEWS:
        raise ConrError(f"the character sheet has {len(views)} images; at most {MAX_SHEET_VIEWS} views are read",
                        where, "give the character's 2 to 4 clearest views (front, back, sides), in a folder of their own")


def find_sheets(sheets: str | Path | Sequence[str | Path]) -> list[Path]:
    single = isinstance(sheets, (str, Path))
    return list_inputs(sheets if single else list(sheets), SHEET_EXTS, "character sheet")


@dataclass
class Frame:
    index: int
    name: str
    rgba: np.ndarray  # (H, W, 4) uint8 at the pose frame's size, RGB premultiplied by A
    udp: np.ndarray | None = None  # (H, W, 4) float32: the parser's UDP (pose images, when asked)


@dataclass
class PreparedPose:
    """A pose frame read and cropped into network space."""

    source: PoseSource
    height: int
    width: int
    item: PreparedUDP | PreparedImage | None  # None: nothing visible in this frame


# The lookup family draws frames at their own size: at least this many pixels a side...
MIN_NATIVE = 64


def native_size(crops: Sequence[Crop | None], cap: int) -> int:
    """The size at which the lookup family draws: the largest crop's own side, no more than `cap`,
    so that the sheet's pixels are copied without resampling them twice."""
    sides = [c.padded_h for c in crops if c is not None]
    return int(min(cap, max([MIN_NATIVE, *sides])))


def prepare_pose(source: PoseSource, size: int, native: bool = False) -> PreparedPose:
    """A pose frame cropped and resized to `size`, or, if `native`, to its own crop's side (at most `size`)."""
    data = source.read()
    if native:
        alpha = data[:, :, 3] if source.kind == "image" else (data[:, :, 3] * 255).clip(0, 255).astype(np.uint8)
        size = native_size([square_crop(alpha)], size)
    item = prepare_udp(data, size) if source.kind == "udp" else prepare_image(data, size)
    return PreparedPose(source, data.shape[0], data.shape[1], item)


class Renderer:
    """Holds a model on a device and renders character sheets in poses."""

    def __init__(self, model: CoNR, device: str | torch.device = "auto", precision: Precision = "fp32",
                 size: int | None = None):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision
        if precision == "fast" and self.device.type == "cpu" and not _cpu_has_bf16():
            # Emulated bfloat16 is hundreds of times slower than float32 on such CPUs.
            warnings.warn("this CPU has no native bfloat16 support: --precision fast renders in float32",
                          stacklevel=2)
            self.precision = "fp32"
        self.size = model.cfg.image_size if size is None else size
        # The lookup family copies the sheet's pixels: it draws at the frames' own size, up to `size`.
        self.native = model.cfg.family == "lookup"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes repeat every batch: pick the fastest kernels once
        if self.device.type == "cpu":
            # Deep random or fine-tuned weights can produce subnormal activations, which x86 CPUs
            # process up to 100x slower; flushing them changes nothing visible.
            torch.set_flush_denormal(True)
        # Frames are read and resized in a background thread while the networks run: OpenCV's own
        # thread pool would compete with PyTorch's for the same cores.
        cv2.setNumThreads(1)
        if self.native:
            if self.size < MIN_NATIVE:
                raise ConrError(f"render size {self.size} is under {MIN_NATIVE} px",
                                hint=f"leave --size out: frames are drawn at their own size, up to "
                                     f"{model.cfg.image_size} px")
        # The coarsest CINN shader level works at 1/32 of the size and itself downsamples by 4.
        elif self.size % 128 or self.size <= 0:
            raise ConrError(f"render size {self.size} is not a positive multiple of 128",
                            hint=f'leave --size out to use the model\'s own ({model.cfg.image_size}), or give 128, 256, 384 or 512')

    @classmethod
    def from_weights(cls, path: str | Path | None = None, device: str | torch.device = "auto", **kw) -> "Renderer":
        """The model of `path` (see conr.render.weights.load_model), or the bundled one when it is None."""
        from conr.render.weights import load_model

        return cls(load_model(path), device=device, **kw)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fast" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        if self.precision == "fast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ character sheet

    def load_sheet(self, sheets: str | Path | Sequence[str | Path]) -> CharacterSheet:
        paths = find_sheets(sheets)
        check_sheet_views(paths, sheets if isinstance(sheets, (str, Path)) else None)
        return self.encode_sheet([read_rgba(p) for p in paths], names=[str(p) for p in paths])

    def encode_sheet(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None,
                     with_udp: bool = False) -> CharacterSheet:
        """images: uint8 RGBA (H, W, 4) views of one character, transparent background."""
        names = list(names) if names is not None else [f"view {i}" for i in range(len(images))]
        if not images:
            raise ConrError("the character sheet has no images", hint="give at least one cut-out PNG")
        check_sheet_views(images)
        prepared = []
        size = self.sheet_size(images)
        for img, name in zip(images, names):
            p = prepare_image(img, size)
            if p is None:
                raise ConrError("almost nothing is visible (less than 0.1 % of the pixels)", name,
                                "the sheet image should show the character on a transparent background")
            opacity = float(p.alpha.mean())
            if opacity >= MAX_SHEET_OPACITY:
                raise ConrError(f"{opacity:.0%} of the square around the character is opaque: the background "
                                "seems not cut out", name,
                                "remove the background (make it transparent) before rendering")
            prepared.append(p)
        rgb = torch.stack([p.rgb for p in prepared]).to(self.device)
        alpha = torch.stack([p.alpha for p in prepared]).to(self.device)
        with torch.inference_mode(), self._autocast():
            sheet = self.model.encode_sheet(rgb, alpha, with_udp=with_udp)
        if sheet.index is not None:
            empty = sheet.index.empty_views
            if len(empty) == len(names):
                raise ConrError("the UDP parser found no body in any sheet view", names[0] if len(names) == 1 else None,
                                "the sheet should show a whole character, cut out, on a transparent background")
            for k in empty:
                warnings.warn(f"{names[k]}: the UDP parser found no body in this sheet view; nothing is copied "
                              "from it", stacklevel=2)
        return sheet

    def sheet_size(self, images: Sequence[np.ndarray]) -> int:
        """The size the sheet's views are prepared at: the renderer's, or in the lookup family the
        largest view's own crop (up to it)."""
        if not self.native:
            return self.size
        return native_size([square_crop(img[:, :, 3]) for img in images], self.size)

    @torch.inference_mode()
    def parse_images(self, images: Sequence[np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
        """The UDP parser's reading of uint8 RGBA images (sheet views or pose images): float32
        (H, W, 4) UDP at each image's own size (XYZ times visibility, visibility), zero where the
        image shows nothing, in the format `conr render --poses` reads."""
        out = []
        for img, name in zip(images, names):
            crop = square_crop(img[:, :, 3])
            if crop is None:
                raise ConrError("almost nothing is visible (less than 0.1 % of the pixels)", name,
                                "give a cut-out image: the character on a transparent background")
            size = native_size([crop], self.size) if self.native else self.size
            p = prepare_image(img, size, crop)
            assert p is not None
            with self._autocast():
                udp = self.model.parse_sheet(p.rgb[None].to(self.device)).float()[0]  # as rendering reads sheets
            full = uncrop(udp.permute(1, 2, 0).cpu().numpy(), crop, img.shape[0], img.shape[1], label=True)
            # A body only where the image shows something.
            vis = np.where(img[:, :, 3:4] > 0, full[:, :, 3:4], 0.0)
            out.append(np.concatenate([full[:, :, :3] * (vis > 0.5), vis], axis=2).astype(np.float32))
        return out

    # ------------------------------------------------------------------ frames

    def check_poses(self, poses: Iterable[PoseSource]) -> None:
        """Read every pose once so that a bad file stops the run before anything is written."""
        for source in poses:
            source.read()

    def render(self, sheet: CharacterSheet, poses: Sequence[PoseSource], batch_size: int = 1,
               save_udp: bool = False) -> Iterator[Frame]:
        """Yield one Frame per pose, in order. The next batch is read while this one renders."""
        if batch_size < 1:
            raise ConrError(f"batch size must be at least 1 (got {batch_size})")
        chunks = [list(range(i, min(i + batch_size, len(poses)))) for i in range(0, len(poses), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            def submit(idx: list[int]) -> Future:
                return pool.submit(lambda: [prepare_pose(poses[i], self.size, self.native) for i in idx])

            pending = submit(chunks[0]) if chunks else None
            for n, idx in enumerate(chunks):
                assert pending is not None
                items = pending.result()
                pending = submit(chunks[n + 1]) if n + 1 < len(chunks) else None
                yield from self._render_batch(sheet, idx, items, save_udp)

    @torch.inference_mode()
    def _render_batch(self, sheet: CharacterSheet, idx: list[int], items: list[PreparedPose],
                      save_udp: bool) -> Iterator[Frame]:
        live = [k for k, it in enumerate(items) if it.item is not None]
        rgba: dict[int, np.ndarray] = {}
        udps: dict[int, torch.Tensor | None] = {}
        # Frames drawn at their own sizes are rendered one by one.
        groups = [[k] for k in live] if self.native else ([live] if live else [])
        for group in groups:
            with self._autocast():
                targets, predicted = self.targets([items[k] for k in group])
                out = self.model.render(sheet, targets)
            for j, k in enumerate(group):
                rgba[k], udps[k] = to_uint8(out[j]), predicted[j]
        for k, it in enumerate(items):
            crop = it.item.crop if it.item is not None else None
            frame = np.zeros((it.height, it.width, 4), np.uint8)
            if k in rgba:
                frame = uncrop(rgba[k], crop, it.height, it.width)
            udp = None
            if save_udp and it.source.kind == "image":
                predicted_udp = udps.get(k)
                udp = np.zeros((it.height, it.width, 4), np.float32) if predicted_udp is None else \
                    uncrop(predicted_udp.float().permute(1, 2, 0).cpu().numpy(), crop, it.height, it.width,
                           label=True)
            yield Frame(idx[k], it.source.name, frame, udp)

    def targets(self, poses: Sequence[PreparedPose]) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The pose encoder's input (N, 4, S, S) for visible poses: from the UDP, or from the parser's
        prediction for pose images (also returned, (4, S, S) each; None for UDP poses)."""
        targets: list[torch.Tensor | None] = [None] * len(poses)
        udps: list[torch.Tensor | None] = [None] * len(poses)
        images = [j for j, p in enumerate(poses) if isinstance(p.item, PreparedImage)]
        for j, p in enumerate(poses):
            if isinstance(p.item, PreparedUDP):
                targets[j] = p.item.target().to(self.device)
        if images:
            rgb = torch.stack([poses[j].item.rgb for j in images]).to(self.device)  # type: ignore[union-attr]
            udp = self.model.parse_pose(rgb)
            alpha = None
            if self.native:  # the lookup family: the image's own silhouette, where the parser sees a body
                alpha = torch.minimum(udp[:, 3:4], torch.stack([poses[j].item.alpha for j in images]).to(udp))
            tgt = self.model.target_input(udp, alpha)
            for n, j in enumerate(images):
                targets[j], udps[j] = tgt[n], udp[n]
        if any(t is None for t in targets):
            raise ValueError("targets() needs visible poses (PreparedPose.item is not None)")
        return torch.stack(targets), udps  # type: ignore[arg-type]
