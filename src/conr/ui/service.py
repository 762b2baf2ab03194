"""The web UI's work, apart from its widgets: one request from uploaded files to downloadable results.

Every step is a library function the CLI uses too: `conr.files.uploads` takes the visitor's files,
`conr synth`'s `synthesize` makes the demo character, `conr poses`' `make_poses` turns a 3D model
and a motion into UDP frames, `Renderer` renders and `conr.render.outputs` writes frames, videos and zips.

Each request works in its own temporary folder under the service's `workdir`, removed when the
request ends, whatever happens; files a visitor sends are copied there under names we choose.
The model is loaded once, and once more per extra device a visitor picks.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from conr.demo import DEFAULT_SEED as DEMO_SEED
from conr.errors import ConrError
from conr.motion.estimator import VIDEO_SUFFIXES
from conr.render.pipeline import PoseSource, Renderer, find_poses, resolve_device
from conr.files.uploads import Upload, UploadLimits, take_uploads

# Uploaded pose frames; a 3D model in a motion; the demo character's own body in a motion.
POSE_SOURCES = ("frames", "model", "demo")
MOTIONS = ("dance", "walk", "wave", "stand", "random")
SHEET_EXTS = {".png"}
POSE_EXTS = {".npz", ".exr", ".png", ".zip"}
MODEL_EXTS = {".vrm", ".glb", ".pmx", ".zip"}  # a .pmx usually travels in a .zip with its textures
MOTION_EXTS = {".bvh", ".vmd", *VIDEO_SUFFIXES}  # a video of a person: its motion, as `conr motion` finds it
MAX_SHEET_VIEWS = 8
# 3D poses are drawn at this size: the networks work at 128-512 px, and UDP frames are resized to them.
POSE_SIZE = 384
# Where a request keeps the motion found in an uploaded video.
CAPTURED_BVH = "captured.bvh"
# The procedural demo character's images and UDP frames are drawn at this size.
DEMO_SIZE = 256

Progress = Callable[[float, str], None]  # (fraction done, what is happening)


@dataclass(frozen=True)
class UILimits:
    """What one request may ask of the server (`conr ui` options)."""

    uploads: UploadLimits = field(default_factory=UploadLimits)
    max_frames: int = 300
    max_seconds: float = 60.0  # video length: frames / fps


@dataclass
class RenderRequest:
    """Everything a visitor chooses; file fields are paths of the uploads on the server."""

    sheet_files: Sequence[str] = ()  # none: the demo character of `demo_seed`
    demo_seed: int = DEMO_SEED
    pose_source: str = "demo"
    pose_files: Sequence[str] = ()
    model_file: str | None = None
    motion_file: str | None = None  # none: the built-in `motion`
    motion: str = "dance"
    frames: int = 48
    fps: float = 24.0
    background: str = "#ffffff"
    size: int | None = None  # network resolution; None: the model's own
    precision: str = "fp32"
    device: str = "auto"


@dataclass
class RenderResult:
    mp4: Path
    webm: Path
    mov: Path
    frames_zip: Path
    udp_zip: Path
    frames: int
    seconds: float
    device: str
    warnings: list[str]
    bvh: Path | None = None  # the motion found in an uploaded video

    def downloads(self) -> list[Path]:
        return [self.webm, self.mov, self.frames_zip, self.udp_zip] + ([self.bvh] if self.bvh else [])

    def summary(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else float("inf")
        lines = [f"Rendered {self.frames} frames in {self.seconds:.1f} s ({rate:.1f} frames/s) on {self.device}."]
        lines += [f"Note: {w}" for w in self.warnings]
        return "\n\n".join(lines)


@dataclass
class _Request:
    """One request's own folder, and the visitor's files taken into it so far."""

    folder: Path
    uploads: list[Upload] = field(default_factory=list)

    def take(self, files: Sequence[str], sub: str, exts: set[str], what: str, limits: UploadLimits) -> list[Upload]:
        taken = take_uploads(files, self.folder / sub, exts, what, limits)
        self.uploads += taken
        return taken


def _public(err: ConrError, work: Path, uploads: Sequence[Upload]) -> ConrError:
    """The same error with the visitor's own file name in place of our server path."""
    if err.path is None:
        return err
    names = {u.path: u.name for u in uploads}
    shown = names.get(err.path)
    if shown is None:
        try:
            shown = err.path.relative_to(work).as_posix()
        except ValueError:
            shown = err.path.name
    return ConrError(err.problem, shown, err.hint)


class RenderService:
    """Renders requests with one model kept in memory; safe to call from several threads."""

    def __init__(self, weights: str | None = None, device: str = "auto", limits: UILimits | None = None,
                 workdir: str | Path | None = None, per_device: int = 1):
        """`per_device`: renders at the same time on one device; more wait for their turn."""
        from conr.render.weights import load_model

        self.weights = weights
        self.default_device = str(resolve_device(device))
        self.limits = limits or UILimits()
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "conr-ui"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._master = load_model(weights).to(self.default_device)  # other devices get copies of it
        self._models = {self.default_device: self._master}
        self._lock = threading.Lock()
        self.per_device = per_device
        self._slots: dict[str, threading.Semaphore] = {}

    @property
    def image_size(self) -> int:
        return self._master.cfg.image_size

    def renderer(self, device: str, precision: str = "fp32", size: int | None = None) -> Renderer:
        dev = str(resolve_device(device if device != "auto" else self.default_device))
        with self._lock:
            if dev not in self._models:
                self._models[dev] = copy.deepcopy(self._models[self.default_device]).to(dev)
        return Renderer(self._models[dev], device=dev, precision=precision, size=size)  # type: ignore[arg-type]

    @contextmanager
    def device_slot(self, device: str) -> Iterator[None]:
        """Wait for a free render slot on `device` (renders on different devices run side by side)."""
        dev = str(resolve_device(device if device != "auto" else self.default_device))
        with self._lock:
            slot = self._slots.setdefault(dev, threading.Semaphore(self.per_device))
        with slot:
            yield

    @contextmanager
    def _request(self) -> Iterator[_Request]:
        """A fresh folder for one request, removed when it ends; an error raised inside names the
        visitor's own files, not our copies of them."""
        r = _Request(Path(tempfile.mkdtemp(prefix="request-", dir=self.workdir)))
        try:
            yield r
        except ConrError as e:
            raise _public(e, r.folder, r.uploads) from None
        finally:
            shutil.rmtree(r.folder, ignore_errors=True)

    # ------------------------------------------------------------------ the character sheet

    def sheet(self, r: _Request, files: Sequence[str], seed: int) -> list[Upload]:
        """The sheet's images on the server: the visitor's PNGs, or the demo character's views."""
        if files:
            views = r.take(files, "sheet", SHEET_EXTS, "character sheet", self.limits.uploads)
            if len(views) > MAX_SHEET_VIEWS:
                raise ConrError(f"the character sheet has {len(views)} images; at most {MAX_SHEET_VIEWS} are used",
                                hint="give 1-8 views of the character (front, side, back work best)")
            return views
        char = self._demo_character(r.folder / "demo_sheet", seed, "stand", 1)
        return [Upload(p, p.stem) for p in sorted((char / "sheet").glob("*.png"))]

    def sheet_images(self, files: Sequence[str], seed: int) -> list[tuple[np.ndarray, str]]:
        """The sheet as the visitor should see it (RGBA, with names), checked as rendering checks it."""
        from conr.files.io import read_rgba

        with self._request() as r:
            return [(read_rgba(v.path), v.name) for v in self.sheet(r, files, seed)]

    def _demo_character(self, out: Path, seed: int, motion: str, frames: int) -> Path:
        from conr.engine.synth import synthesize

        synthesize(out, seed=seed, count=1, motion=motion, frames=frames, size=DEMO_SIZE, views=4, targets=False)
        return out / "char_0000"

    # ------------------------------------------------------------------ poses

    def _check_length(self, frames: int, fps: float) -> None:
        lim = self.limits
        if not fps > 0:
            raise ConrError(f"the frame rate must be positive (got {fps})")
        if frames > lim.max_frames:
            raise ConrError(f"{frames} pose frames were given; this server renders at most {lim.max_frames}",
                            hint=f"send at most {lim.max_frames} frames")
        if frames / fps > lim.max_seconds + 1e-9:
            raise ConrError(f"{frames} frames at {fps:g} fps make {frames / fps:.1f} s of video; this server makes "
                            f"at most {lim.max_seconds:g} s", hint="use fewer frames or a higher frame rate")

    def poses(self, r: _Request, req: RenderRequest, warn: Callable[[str], None], count: int | None = None
              ) -> list[PoseSource]:
        """The pose frames of a request, on the server, in order (the first `count` when given)."""
        want = req.frames if count is None else min(count, req.frames)
        if req.pose_source == "frames":
            files = r.take(req.pose_files, "poses", POSE_EXTS, "pose frames", self.limits.uploads)
            files = files[:count] if count is not None else files
            self._check_length(len(files), req.fps)
            return find_poses([f.path for f in files])
        if req.frames < 1:
            raise ConrError(f"the number of frames must be at least 1 (got {req.frames})")
        self._check_length(req.frames, req.fps)
        if req.pose_source == "demo" and not req.motion_file:
            self._check_motion(req.motion)
            char = self._demo_character(r.folder / "demo_poses", req.demo_seed, req.motion, want)
            return find_poses(char / "udp")
        if req.pose_source in ("demo", "model"):
            return self._posed_model(r, req, want, warn)
        raise ConrError(f"unknown pose source {req.pose_source!r}", hint=f"use one of {', '.join(POSE_SOURCES)}")

    @staticmethod
    def _check_motion(name: str) -> None:
        if name not in MOTIONS:
            raise ConrError(f"unknown built-in motion {name!r}", hint=f"pick one of {', '.join(MOTIONS)}")

    def _posed_model(self, r: _Request, req: RenderRequest, frames: int, warn: Callable[[str], None]
                     ) -> list[PoseSource]:
        """A 3D model (uploaded, or the demo character's body) in a motion (uploaded or built in)."""
        from conr.engine.device import resolve_device as engine_device
        from conr.engine.formats import Model
        from conr.engine.poses import make_poses, procedural_model

        lim = self.limits.uploads
        model: Path | Model
        if req.pose_source == "demo":
            model = procedural_model(req.demo_seed)
        else:
            if not req.model_file:
                raise ConrError("no 3D model was given", hint="upload a .vrm or .glb file, or a .zip holding a .pmx "
                                                            "model and its textures")
            taken = r.take([req.model_file], "model", MODEL_EXTS, "3D model", lim)
            models = [m for m in taken if m.path.suffix.lower() in (".vrm", ".glb", ".pmx")]
            if len(models) != 1:
                raise ConrError(f"expected one model file, found {len(models)}: "
                                f"{', '.join(m.name for m in models) or 'none'}", Path(req.model_file).name,
                                "upload one .vrm or .glb, or a .zip with exactly one .pmx model")
            model = models[0].path
        if req.motion_file:
            motion_up = r.take([req.motion_file], "motion", MOTION_EXTS, "motion", lim)
            motion = str(motion_up[0].path)
            if motion_up[0].path.suffix.lower() in VIDEO_SUFFIXES:
                # The person's motion, as `conr motion` finds it; kept as a BVH for the downloads.
                from conr.motion.capture import capture

                captured = capture(motion, req.fps, (0, frames))
                for w in captured.warnings:
                    warn(w)
                captured.save_bvh(r.folder / CAPTURED_BVH)
                motion = str(r.folder / CAPTURED_BVH)
        else:
            self._check_motion(req.motion)
            motion = req.motion
        # Built-in motions (and videos, above) are cut to the frames asked for before any work; BVH
        # and VMD files are read whole, then cut.
        cut_first = motion in MOTIONS
        dev = resolve_device(req.device if req.device != "auto" else self.default_device)
        device = engine_device("cuda" if dev.type == "cuda" else "cpu")
        # Textures do not change a UDP frame: the model's texture warnings are of no use here.
        make_poses(model, motion, r.folder / "udp", size=POSE_SIZE, fps=req.fps,
                   frame_range=(0, frames) if cut_first else None, device=device, max_frames=frames,
                   warn=lambda s: None if "texture" in s else warn(s))
        return find_poses(r.folder / "udp")

    def preview(self, req: RenderRequest, count: int = 4) -> list[tuple[np.ndarray, str]]:
        """The first pose frames as pictures (UDP XYZ as colour, pose images as they are)."""
        from conr.engine.udp import udp_picture

        with self._request() as r:
            poses = self.poses(r, req, lambda s: None, count=count)
            names = {u.path: u.name for u in r.uploads}
            out = []
            for p in poses[:count]:
                data = p.read()
                img = udp_picture(data) if p.kind == "udp" else _over_white(data)
                out.append((img, names.get(p.path, f"frame {p.name}")))
            return out

    # ------------------------------------------------------------------ rendering

    def render(self, req: RenderRequest, out: Path, progress: Progress = lambda f, s: None) -> RenderResult:
        """Render a request; the downloads land in `out` (a folder the caller serves and cleans)."""
        from conr.files.io import atomic_write_bytes, read_rgba
        from conr.render.outputs import encode_videos, render_to_folder, zip_files
        from conr.files.video import parse_color

        background = parse_color(req.background)
        if req.precision not in ("fp32", "fast"):
            raise ConrError(f"unknown precision {req.precision!r}", hint="use fp32 or fast")
        warnings: list[str] = []
        with self.device_slot(req.device), self._request() as r:
            start = time.perf_counter()
            renderer = self.renderer(req.device, req.precision, req.size)
            progress(0.0, "reading the character sheet")
            views = self.sheet(r, req.sheet_files, req.demo_seed)
            sheet = renderer.encode_sheet([read_rgba(v.path) for v in views], names=[str(v.path) for v in views])
            progress(0.02, "making the pose frames")
            poses = self.poses(r, req, warnings.append)
            progress(0.05, "checking the pose frames")
            renderer.check_poses(poses)

            frames_dir, n = r.folder / "frames", len(poses)
            done = [0]

            def step(stage: str, base: float, share: float) -> Callable[[], None]:
                def tick() -> None:
                    done[0] += 1
                    progress(base + share * done[0] / n, f"{stage} {done[0]}/{n}")
                return tick

            frames = render_to_folder(renderer, sheet, poses, frames_dir, save_udp=True,
                                      on_frame=step("rendering frame", 0.05, 0.75))
            out.mkdir(parents=True, exist_ok=True)
            done[0] = 0
            exts = ("mp4", "webm", "mov")
            videos = dict(zip(exts, encode_videos(frames, [out / f"render.{e}" for e in exts], req.fps,
                                                  background, on_frame=step("encoding videos", 0.8, 0.18))))
            progress(0.98, "packing the zips")
            frames_zip = zip_files(frames, out / "frames.zip", "frames")
            udp_files = sorted((frames_dir / "udp").glob("*.npz")) if poses[0].kind == "image" else \
                [p.path for p in poses]
            udp_zip = zip_files(udp_files, out / "udp.zip", "udp")
            bvh = None
            if (r.folder / CAPTURED_BVH).is_file():
                bvh = out / "motion.bvh"
                atomic_write_bytes(bvh, (r.folder / CAPTURED_BVH).read_bytes())
        return RenderResult(videos["mp4"], videos["webm"], videos["mov"], frames_zip, udp_zip, n,
                            time.perf_counter() - start, str(renderer.device), warnings, bvh)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:].astype(np.float32) / 255
    return (rgba[..., :3] * a + 255 * (1 - a)).round().astype(np.uint8)
