"""A person's 33 body landmarks in every frame of a video, by MediaPipe's pose landmarker.

MediaPipe 0.10.21 is the last release whose wheel carries the pose model (the "full" BlazePose
landmark model, `model_complexity=1`) and runs it offline through the `mp.solutions.pose` API;
later releases download their models at run time. It is installed without its dependency pins
(numpy<2, its own OpenCV), which it does not need for this: see the README's set-up.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from conr.errors import ConrError
from conr.files.io import MAX_IMAGE_SIDE
from conr.motion.landmarks import NAMES, from_mediapipe_world

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif")
_INSTALL = "pip install --no-deps mediapipe==0.10.21 (the README's set-up installs it)"


@dataclass
class PoseTrack:
    """Landmarks of one person over a video; frames where nobody was found hold zeros."""

    world: np.ndarray  # (T, 33, 3) metres, our frame (Y up, +Z towards the camera), origin between the hips
    image: np.ndarray  # (T, 33, 2) pixels, x right, y down
    visibility: np.ndarray  # (T, 33) MediaPipe's visibility score in [0, 1]
    found: np.ndarray  # (T,) bool
    fps: float
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.found)


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # of the frames yielded (the source's unless resampled)
    source_fps: float
    width: int
    height: int


def open_video(path: str | Path, fps: float | None = None, frame_range: tuple[int | None, int | None] | None = None
               ) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """The video's frames as RGB uint8 arrays, at `fps` (nearest source frame) when given, output
    frames A to B-1 of `frame_range`. Decoding is lazy: frames are read as they are consumed."""
    import av

    path = Path(path)
    if not path.is_file():
        raise ConrError("video file not found" if not path.exists() else "video path is not a file", path)
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError, UnicodeDecodeError) as e:
        raise ConrError(f"cannot read this video: not a video file, or no video stream ({e})", path,
                        f"give an {', '.join(VIDEO_SUFFIXES)} file") from None
    ctx = stream.codec_context
    width, height = int(ctx.width), int(ctx.height)
    if max(width, height) > MAX_IMAGE_SIDE:
        container.close()
        raise ConrError(f"video frames are {width}x{height}; at most {MAX_IMAGE_SIDE} pixels a side are read", path,
                        "scale the video down first (e.g. ffmpeg -vf scale=1280:-2)")
    rate = stream.average_rate or stream.guessed_rate
    source_fps = float(rate) if rate else 30.0
    out_fps = source_fps if fps is None else fps
    if not out_fps > 0:
        container.close()
        raise ConrError(f"frame rate must be positive, got {fps}")
    start, end = (frame_range or (None, None))
    start = start or 0

    def frames() -> Iterator[np.ndarray]:
        k = 0  # the next output frame

        def until(limit: float, frame) -> Iterator[np.ndarray]:
            """Output frames k with k / out_fps < limit, all showing `frame`."""
            nonlocal k
            rgb = None
            while k / out_fps < limit - 1e-9 and (end is None or k < end):
                if k >= start:
                    rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
                    yield rgb
                k += 1

        try:
            t0, frame, shown = None, None, 0.0
            for i, frame in enumerate(container.decode(stream)):
                # Frame times from the stream (phones record at a varying rate), else from the index.
                t = frame.time
                t0 = t if t0 is None and t is not None else t0
                shown = (t - t0) if t is not None and t0 is not None else i / source_fps
                # Output frame k shows the source frame nearest to its time k / out_fps.
                yield from until(shown + 0.5 / source_fps, frame)
                if end is not None and k >= end:
                    return
            if frame is not None:  # the last frame lasts a whole frame period
                yield from until(shown + 1.0 / source_fps, frame)
        except av.error.FFmpegError as e:
            raise ConrError(f"the video is corrupt or truncated after {k} frames ({e})", path,
                            "export it again, or pick the good part with --frames") from None
        finally:
            container.close()

    return VideoInfo(out_fps, source_fps, width, height), frames()


# Start-up notices MediaPipe's C++ and TFLite print straight to file descriptor 2.
_NATIVE_NOISE = (b"INFO: ", b"WARNING: All log messages before absl", b"I0000 ", b"W0000 ")


@contextmanager
def _native_notices_dropped() -> Iterator[None]:
    """Pass what reaches file descriptor 2 through, minus MediaPipe's native start-up notices: a
    command line owes its user our own messages and progress bar, not the graph's internals."""
    import threading

    sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def noise(line: bytes) -> bool:
        return line.lstrip(b"\r").startswith(_NATIVE_NOISE)

    def maybe_noise(partial: bytes) -> bool:  # the start of a line that may still turn out to be noise
        head = partial.lstrip(b"\r")
        return any(n.startswith(head) or head.startswith(n) for n in _NATIVE_NOISE)

    def forward() -> None:
        held = b""
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, held = (held + chunk).split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not noise(line))
                if held and not maybe_noise(held):  # a progress bar redraws without a newline
                    kept, held = kept + held, b""
                if kept:
                    os.write(saved, kept)
        if held and not noise(held):
            os.write(saved, held)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last writer: the thread sees the end and stops
        thread.join(timeout=5)
        os.close(saved)


def _pose_model():  # -> mediapipe's Pose
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ConrError(f"pose estimation needs MediaPipe, which is not installed ({e})", hint=_INSTALL) from None
    solutions = getattr(mp, "solutions", None)
    if solutions is None:
        raise ConrError(f"MediaPipe {getattr(mp, '__version__', '?')} has no offline pose model (mp.solutions)",
                        hint=_INSTALL)
    # The full model is the one inside the wheel (lite and heavy would be downloaded); our One Euro
    # filter smooths, so MediaPipe's own smoothing is off.
    return solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=False,
                               enable_segmentation=False, min_detection_confidence=0.5, min_tracking_confidence=0.5)


def track_frames(frames: Iterable[np.ndarray], fps: float, progress: Callable[[int], None] = lambda n: None
                 ) -> PoseTrack:
    """Run the pose landmarker on RGB uint8 frames of one video (the tracker uses the previous frame)."""
    world, image, vis, found = [], [], [], []
    width = height = 0
    with _native_notices_dropped(), _pose_model() as pose:
        for n, rgb in enumerate(frames):
            height, width = rgb.shape[:2]
            result = pose.process(np.ascontiguousarray(rgb))
            ok = result.pose_world_landmarks is not None and result.pose_landmarks is not None
            found.append(ok)
            if ok:
                w = result.pose_world_landmarks.landmark
                p = result.pose_landmarks.landmark
                world.append(from_mediapipe_world(np.array([(q.x, q.y, q.z) for q in w])))
                image.append(np.array([(q.x * width, q.y * height) for q in p]))
                vis.append(np.array([q.visibility for q in p]))
            else:
                world.append(np.zeros((len(NAMES), 3)))
                image.append(np.zeros((len(NAMES), 2)))
                vis.append(np.zeros(len(NAMES)))
            progress(n + 1)
    if not found:
        raise ConrError("the video has no frames in the range asked for",
                        hint="check --frames and --fps against the video's length")
    return PoseTrack(np.stack(world), np.stack(image), np.stack(vis), np.array(found), fps, width, height)
