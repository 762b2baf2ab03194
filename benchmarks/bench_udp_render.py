"""Benchmark: UDP frames at 512x512 of a ~50,000-triangle procedural character.

Prints a table of frames per second for each stage on the CPU, and on CUDA when present:
  raster   rasterisation only (z-buffer, winning triangle per pixel, barycentrics)
  udp      a full UDP frame (raster + rest-pose coordinates), mesh already posed
  pose+udp linear blend skinning of the frame's pose, then a UDP frame
  rgba     cel-shaded RGBA with outline, 2x2 supersampled (for sheets and previews)

Two framings: "full" fits the whole walking figure in the frame (the usual UDP sequence), "close"
frames the upper body, so that many more pixels (and larger triangles) are covered.

Usage: python benchmarks/bench_udp_render.py [--size 512] [--triangles 50000] [--frames 20] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from conr.engine.motions import walk
from conr.engine.procedural import build_character, random_spec
from conr.engine.renderer import rasterize_mesh, render_rgba, render_udp
from conr.engine.scene import sequence_camera
from conr.engine.udp import UDPNormalizer


def character_with(triangles: int, seed: int = 3):
    detail = 1.0
    while True:
        spec = random_spec(seed, detail)
        mesh = build_character(spec)
        if mesh.num_faces >= triangles:
            return mesh
        detail *= (triangles / mesh.num_faces) ** 0.5 * 1.02


def timed(fn, frames: int, sync) -> float:
    """Frames per second from the median frame time (robust to other jobs on a shared machine)."""
    fn(0)  # warm-up (first-call allocations, CUDA kernels)
    sync()
    times = []
    for k in range(frames):
        t = time.perf_counter()
        fn(k)
        sync()
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times)


def bench(device: str, size: int, mesh, frames: int, close: bool) -> dict[str, float]:
    motion = walk(frames)
    rot, _ = motion.for_skeleton(mesh.skeleton.names)
    globals_ = mesh.skeleton.forward(rot, motion.root_translation).to(device)
    dev_mesh = mesh
    if device != "cpu":
        from conr.engine.scene import _to_device

        dev_mesh = _to_device(mesh, device)
    posed = dev_mesh.pose(globals_)  # (T, V, 3)
    pts = posed.cpu()
    if close:
        pts = pts[:, pts[0, :, 1] > 0.95 * float(pts[0, :, 1].max()) * 0.68]  # chest and up
    cam = sequence_camera(pts, size)
    norm = UDPNormalizer.from_vertices(mesh.rest_vertices())
    faces = dev_mesh.faces
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    covered = int(rasterize_mesh(posed[0], faces, cam).mask.sum())
    return {
        "triangles": mesh.num_faces,
        "covered px": covered,
        "raster": timed(lambda k: rasterize_mesh(posed[k], faces, cam), frames, sync),
        "udp": timed(lambda k: render_udp(dev_mesh, posed[k], cam, norm), frames, sync),
        "pose+udp": timed(lambda k: render_udp(dev_mesh, dev_mesh.pose(globals_[k]), cam, norm), frames, sync),
        "rgba": timed(lambda k: render_rgba(dev_mesh, posed[k], cam), max(2, frames // 4), sync),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--triangles", type=int, default=50_000)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts to measure")
    args = ap.parse_args()
    devices = [f"cpu/{t}" for t in args.threads] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "")
          + f", load average {os.getloadavg()[0]:.1f} before the run")
    print(f"# {args.size}x{args.size}, frames/s (higher is better); cpu/N = N torch threads")
    mesh = character_with(args.triangles)
    rows = {}
    for d in devices:
        if d.startswith("cpu/"):
            torch.set_num_threads(int(d[4:]))
        for framing in ("full", "close"):
            rows[(d, framing)] = bench(d.split("/")[0], args.size, mesh, args.frames, framing == "close")
    keys = list(next(iter(rows.values())))
    print("| device | framing | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for (d, framing), r in rows.items():
        print(f"| {d} | {framing} | " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
