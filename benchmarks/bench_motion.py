"""Benchmark: `conr motion` frames per second on this machine's CPU.

Two videos made on the spot, 60 frames each at 30 fps:
  drawn   a procedural character dancing, cel-shaded at 512x512 (`conr synth`'s renderer)
  photo   a slow pan over scikit-image's astronaut photograph, 512x512 (head to hips)

Stages, in frames per second:
  decode      reading the video (PyAV)
  landmarks   MediaPipe's pose landmarker (the "full" model) on every frame, video mode
  solve       gap filling, left/right, One Euro smoothing, rotations, root and floor
  total       `conr motion` as a whole, BVH written, including the landmarker's start-up

Then accuracy on drawn videos whose true motion is known (a procedural character in the built-in
dance, walk and wave): the mean angle, in degrees, between each recovered bone's direction and
the true one, over all frames (left and right together).

Usage: python benchmarks/bench_motion.py [--threads 1 2] [--no-speed]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_videos(root: Path) -> dict[str, Path]:
    import cv2
    from skimage.data import astronaut

    from conr.engine.synth import synthesize
    from conr.files.io import read_frame
    from conr.files.video import VideoWriter

    synthesize(root / "drawn", seed=3, count=1, motion="dance", frames=60, size=512, views=1, targets=True)
    videos = {"drawn": root / "drawn.mp4", "photo": root / "photo.mp4"}
    with VideoWriter(videos["drawn"], fps=30, background=(235, 235, 220), premultiplied=False) as w:
        for k in range(60):
            w.write(read_frame(root / "drawn" / "char_0000" / "target" / f"{k}.png"))
    img = astronaut()
    with VideoWriter(videos["photo"], fps=30, premultiplied=False) as w:
        for k in range(60):
            frame = cv2.warpAffine(img, np.float32([[1, 0, k], [0, 1, 0]]), (512, 512), borderMode=cv2.BORDER_REPLICATE)
            w.write(np.dstack([frame, np.full((512, 512), 255, np.uint8)]))
    return videos


def bench(video: Path, out: Path) -> dict[str, float]:
    from conr.cli import main
    from conr.motion.capture import motion_from_track
    from conr.motion.estimator import open_video, track_frames

    t = time.perf_counter()
    _, frames = open_video(video)
    decoded = list(frames)
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    track = track_frames(decoded, 30.0)
    t_landmarks = time.perf_counter() - t
    t = time.perf_counter()
    motion_from_track(track)
    t_solve = time.perf_counter() - t
    t = time.perf_counter()
    assert main(["motion", str(video), "--out", str(out), "--overwrite", "--quiet"]) == 0
    t_total = time.perf_counter() - t
    n = len(decoded)
    return {"decode": n / t_decode, "landmarks": n / t_landmarks, "solve": n / t_solve, "total": n / t_total}


BONES = {"thigh": ("hip", "knee"), "shin": ("knee", "ankle"), "upper arm": ("shoulder", "elbow"),
         "forearm": ("elbow", "wrist"), "foot": ("ankle", "foot_index")}


def accuracy(root: Path, motion: str, seed: int = 3, frames: int = 60) -> dict[str, float]:
    """Mean direction error per bone of `conr motion` on a drawn video of a known motion."""
    from conr.engine.motions import procedural_motion
    from conr.engine.procedural import humanoid_skeleton
    from conr.engine.synth import synthesize
    from conr.files.io import read_frame
    from conr.motion.capture import capture
    from conr.motion.landmarks import INDEX, markers
    from conr.files.video import VideoWriter

    synthesize(root / motion, seed=seed, count=1, motion=motion, frames=frames, size=512, views=1, targets=True)
    video = root / f"{motion}.mp4"
    with VideoWriter(video, fps=30, background=(235, 235, 220), premultiplied=False) as w:
        for k in range(frames):
            w.write(read_frame(root / motion / "char_0000" / "target" / f"{k}.png"))
    found = markers(capture(video).globals())
    skel, _ = humanoid_skeleton()
    truth = markers(skel.forward(procedural_motion(motion, frames, seed=seed).rotations.float()))
    out = {}
    for bone, (a, b) in BONES.items():
        errs = []
        for side in ("left", "right"):
            i, j = INDEX[f"{side}_{b}"], INDEX[f"{side}_{a}"]
            u, v = found[:, i] - found[:, j], truth[:, i] - truth[:, j]
            cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
            errs.append(torch.rad2deg(torch.acos(cos.clamp(-1, 1))))
        out[bone] = float(torch.cat(errs).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1])
    ap.add_argument("--no-speed", action="store_true", help="accuracy only")
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        print("| drawn motion | " + " | ".join(BONES) + " (mean degrees off) |")
        print("| --- " * (len(BONES) + 1) + "|")
        for motion in ("dance", "walk", "wave"):
            acc = accuracy(Path(tmp), motion)
            print(f"| {motion} | " + " | ".join(f"{acc[b]:.0f}" for b in BONES) + " |")
        if args.no_speed:
            return
        videos = make_videos(Path(tmp))
        print("| video | threads | decode | landmarks | solve | total (frames/s) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for name, video in videos.items():
                r = bench(video, Path(tmp) / f"{name}.bvh")
                print(f"| {name} | {threads} | {r['decode']:.0f} | {r['landmarks']:.1f} | {r['solve']:.0f} | "
                      f"{r['total']:.1f} |")


if __name__ == "__main__":
    main()
