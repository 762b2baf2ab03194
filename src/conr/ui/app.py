"""The Gradio page of `conr ui`: layout and glue only; `RenderService` does the work.

The Render button is also an API (`api_name="render"`): `gradio_client.Client(url).predict(...,
api_name="/render")` with the same parameters as `render` below. Renders wait in Gradio's queue,
`--concurrency` at a time on each device; the page shows the place in the queue, then frames done and the ETA.
"""

from __future__ import annotations

import atexit
import os
import shutil
import uuid
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

# Set before Gradio is imported: it reads them at import time. No calls home from a closed network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from conr.demo import DEFAULT_SEED as DEMO_SEED  # noqa: E402
from conr.errors import ConrError  # noqa: E402
from conr.files.io import new_partial_dir  # noqa: E402
from conr.ui.guard import MB, UploadGuard  # noqa: E402
from conr.ui.service import MOTIONS, RenderRequest, RenderService  # noqa: E402

SIZES = (128, 256, 384, 512)
# Gradio's delete_cache: every 10 minutes, remove the cache's files older than an hour.
CACHE_SWEEP_S, CACHE_AGE_S = 600, 3600
# One upload request may carry a sheet of several views and a pose video: 4 files at the per-file cap.
REQUEST_FILES = 4
MAX_CACHE_MB = 2048.0
# The File components take any type: our own checks name the visitor's file in their message,
# where Gradio's would not. System fonts: the default theme would fetch web fonts, which a closed network cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])
ABOUT = """# conr: character sheet + poses → animation
Give a few cut-out drawings of a character (PNGs with transparent backgrounds) and poses; CoNR
draws the character in every pose. Leave the sheet empty to use a procedural demo character
(a new one for every seed)."""


def _device_choices() -> list[str]:
    return ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _files(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def build_app(service: RenderService, max_request_mb: float | None = None) -> gr.Blocks:
    """The page; renders run `service.per_device` at a time on each device (the service waits for a
    slot), so Gradio lets that many per device through its queue. `max_request_mb`, when given, is
    shown with the other limits."""
    lim = service.limits
    concurrency = service.per_device * (len(_device_choices()) - 1)
    n_frames = min(48, lim.max_frames)

    def show_sheet(files: list[str] | None = None, seed: float | None = DEMO_SEED) -> list[tuple]:
        try:
            return service.sheet_images(_files(files), int(seed or 0))
        except ConrError as e:
            raise gr.Error(str(e)) from None

    def preview(source: str = "demo", pose_files: list[str] | None = None, model_file: str | None = None,
                motion_file: str | None = None, motion: str = "dance", frames: float = n_frames, fps: float = 24,
                seed: float = DEMO_SEED) -> list[tuple]:
        req = RenderRequest(demo_seed=int(seed or 0), pose_source=source, pose_files=_files(pose_files),
                            model_file=model_file, motion_file=motion_file, motion=motion, frames=int(frames),
                            fps=float(fps))
        try:
            return service.preview(req)
        except ConrError as e:
            raise gr.Error(str(e)) from None

    def render(sheet_files: list[str] | None = None, demo_seed: float = DEMO_SEED, pose_source: str = "demo",
               pose_files: list[str] | None = None, model_file: str | None = None, motion_file: str | None = None,
               motion: str = "dance", frames: float = n_frames, fps: float = 24, background: str = "#ffffff",
               size: float | None = None, precision: str = "fp32", device: str = "auto",
               progress: gr.Progress = gr.Progress()) -> tuple[str, list[str], str]:
        """Render the character of the sheet (or the demo character of `demo_seed`) in every pose.

        pose_source: "frames" (pose_files: UDP .npz/.exr/16-bit .png, RGBA pose images, or .zip),
        "model" (model_file .vrm/.glb/.zip with a .pmx), or "demo" (the demo character's body); the
        last two move in motion_file (.bvh, .vmd, or a video of a person) or the built-in `motion`.
        Returns the MP4, the downloads [WebM, MOV, frames.zip, udp.zip, and motion.bvh when the
        motion came from a video] and a summary.
        """
        req = RenderRequest(sheet_files=_files(sheet_files), demo_seed=int(demo_seed or 0), pose_source=pose_source,
                            pose_files=_files(pose_files), model_file=model_file, motion_file=motion_file,
                            motion=motion, frames=int(frames), fps=float(fps), background=background or "white",
                            size=int(size) if size else None, precision=precision, device=device)
        # Inside Gradio's cache folder, so the files are served from there without another copy,
        # and removed with the cache.
        out = Path(gr.utils.get_upload_folder()) / f"conr-{uuid.uuid4().hex}"
        try:
            result = service.render(req, out, lambda f, s: progress(f, desc=s))
        except ConrError as e:
            raise gr.Error(str(e)) from None
        return str(result.mp4), [str(p) for p in result.downloads()], result.summary()

    with gr.Blocks(title="conr", analytics_enabled=False, delete_cache=(CACHE_SWEEP_S, CACHE_AGE_S)) as app:
        gr.Markdown(ABOUT)
        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### 1 · Character sheet")
                sheet_files = gr.File(label="Cut-out PNGs, 1 to 8 views", file_count="multiple",
                                      elem_id="sheet-files")
                demo_seed = gr.Number(label="…or, with no PNGs, the demo character of seed", value=DEMO_SEED,
                                      precision=0, minimum=0, elem_id="demo-seed")
                sheet_gallery = gr.Gallery(label="Sheet", columns=2, height="auto", object_fit="contain",
                                           elem_id="sheet-gallery")
            with gr.Column():
                gr.Markdown("### 2 · Poses")
                pose_source = gr.Radio([("Demo character's body", "demo"), ("Pose frames", "frames"),
                                        ("3D model + motion", "model")], value="demo", label="Poses from",
                                       elem_id="pose-source")
                pose_files = gr.File(label="Pose frames: UDP .npz / .exr / 16-bit .png, RGBA pose images, or a .zip",
                                     file_count="multiple",
                                     visible=False, elem_id="pose-files")
                model_file = gr.File(label="3D model: .vrm, .glb, or a .zip with a .pmx and its textures",
                                     visible=False, elem_id="model-file")
                motion_file = gr.File(label="Motion: .bvh, .vmd, or a video of a person (.mp4, .mov, .webm …); "
                                            "empty: the built-in motion", elem_id="motion-file")
                motion = gr.Dropdown(list(MOTIONS), value="dance", label="Built-in motion")
                frames = gr.Slider(1, lim.max_frames, value=n_frames, step=1, label="Frames (built-in and 3D motions)")
                preview_button = gr.Button("Preview poses")
                pose_gallery = gr.Gallery(label="First pose frames (UDP: rest-pose XYZ as colour)", columns=2,
                                          height="auto", object_fit="contain", elem_id="pose-gallery")
            with gr.Column():
                gr.Markdown("### 3 · Render")
                with gr.Row():
                    fps = gr.Number(label="Frames per second", value=24, minimum=1, maximum=120)
                    background = gr.ColorPicker(label="Background (MP4)", value="#ffffff")
                with gr.Row():
                    size = gr.Dropdown(sorted({*SIZES, service.image_size}), value=service.image_size,
                                       label="Size (px; the model's own by default)")
                    precision = gr.Radio(["fp32", "fast"], value="fp32", label="Precision")
                    device = gr.Dropdown(_device_choices(), value="auto", label="Device")
                render_button = gr.Button("Render", variant="primary", elem_id="render")
                video = gr.Video(label="Result", autoplay=True, loop=True, elem_id="result-video")
                downloads = gr.File(label="Downloads: WebM and MOV with transparency, RGBA PNG frames, UDP frames "
                                          "(and the BVH of a video's motion)",
                                    file_count="multiple", elem_id="downloads")
                status = gr.Markdown(elem_id="status")
        per_upload = f", at most {max_request_mb:g} MB sent at once" if max_request_mb is not None else ""
        gr.Markdown(f"Limits of this server: {lim.max_frames} frames, {lim.max_seconds:g} s of video, "
                    f"{lim.uploads.max_files} files of at most {lim.uploads.max_file_mb:g} MB per input{per_upload}.")

        def show_source(source: str) -> tuple:
            return (gr.update(visible=source == "frames"), gr.update(visible=source == "model"),
                    gr.update(visible=source != "frames"))

        pose_source.change(show_source, pose_source, [pose_files, model_file, motion_file], api_visibility="private")
        sheet_files.change(show_sheet, [sheet_files, demo_seed], sheet_gallery, api_name="sheet")
        demo_seed.submit(show_sheet, [sheet_files, demo_seed], sheet_gallery, api_visibility="private")
        app.load(show_sheet, [sheet_files, demo_seed], sheet_gallery, api_visibility="private")
        preview_button.click(preview, [pose_source, pose_files, model_file, motion_file, motion, frames, fps, demo_seed],
                             pose_gallery, api_name="preview", concurrency_limit=concurrency)
        render_button.click(render, [sheet_files, demo_seed, pose_source, pose_files, model_file, motion_file, motion,
                                     frames, fps, background, size, precision, device],
                            [video, downloads, status], api_name="render", concurrency_limit=concurrency)
    app.queue(default_concurrency_limit=concurrency)
    return app


def upload_caps(max_file_mb: float, max_request_mb: float | None = None,
                max_cache_mb: float = MAX_CACHE_MB) -> tuple[float, float]:
    """The request and cache caps in MB, checked against each other; the request's by default is
    `REQUEST_FILES` files at `max_file_mb`, within the cache's."""
    if max_request_mb is None:
        max_request_mb = max(max_file_mb, min(REQUEST_FILES * max_file_mb, max_cache_mb))
    for name, value in (("max_file_mb", max_file_mb), ("max_request_mb", max_request_mb),
                        ("max_cache_mb", max_cache_mb)):
        if not value > 0:
            raise ConrError(f"--{name.replace('_', '-')} must be positive, not {value:g}")
    if max_request_mb < max_file_mb:
        raise ConrError(f"--max-request-mb {max_request_mb:g} is below --max-file-mb {max_file_mb:g}: "
                        "a file that may be uploaded could never be sent",
                        hint="raise --max-request-mb or lower --max-file-mb")
    if max_cache_mb < max_request_mb:
        raise ConrError(f"--max-cache-mb {max_cache_mb:g} is below --max-request-mb {max_request_mb:g}: "
                        "the largest upload allowed would never fit in the cache",
                        hint="raise --max-cache-mb or lower --max-request-mb")
    return max_request_mb, max_cache_mb


def serve(service: RenderService, host: str = "127.0.0.1", port: int = 7860, max_file_mb: float = 50.0,
          block: bool = True, max_request_mb: float | None = None, max_cache_mb: float = MAX_CACHE_MB) -> gr.Blocks:
    """Start the server; with `block=False` return at once (tests), else serve until Ctrl-C or SIGTERM.

    Uploads are refused as they arrive past `max_file_mb` a file, `max_request_mb` a request (default
    `REQUEST_FILES` files) and `max_cache_mb` in this server's own cache folder, which holds uploads
    and results beside the service's workdir. The folder is removed when the server stops, at the
    latest when the process exits (and, after a kill -9, when the next server starts), so nothing
    stays behind."""
    max_request_mb, max_cache_mb = upload_caps(max_file_mb, max_request_mb, max_cache_mb)
    # One cache per server process, beside the requests' workdir; those of servers that no longer run
    # are removed.
    cache = new_partial_dir(service.workdir.parent / f"{service.workdir.name}-cache")
    remove_cache = partial(shutil.rmtree, cache, ignore_errors=True)
    atexit.register(remove_cache)  # a server started with block=False that nobody closed

    @asynccontextmanager
    async def remove_cache_at_stop(_app):
        try:
            yield
        finally:
            remove_cache()

    os.environ["GRADIO_TEMP_DIR"] = str(cache)  # read by Gradio when the server starts
    app = build_app(service, max_request_mb)
    guard = Middleware(UploadGuard, max_request_bytes=int(max_request_mb * MB), cache=cache,
                       max_cache_bytes=int(max_cache_mb * MB), expiry=f"{CACHE_AGE_S // 60} minutes after they arrive")
    try:
        # num_workers=0: no static worker processes, which would take uploads past the guard.
        app.launch(server_name=host, server_port=port, max_file_size=int(max_file_mb * MB), ssr_mode=False,
                   prevent_thread_lock=not block, show_error=True, quiet=not block, theme=THEME,
                   footer_links=["api"], num_workers=0,
                   app_kwargs={"middleware": [guard], "lifespan": remove_cache_at_stop})
    except BaseException:
        remove_cache()
        raise
    finally:
        if block:
            app.close()
            remove_cache()
    return app
