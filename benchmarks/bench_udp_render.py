"""Benchmark: UDP frames at 512x512 of a ~50,000-triangle procedural character.

Prints a table of frames per second for each stage on the CPU, and on CUDA when present:
  raster   rasterisation only (z-buffer, winning triangle per pixel, barycentrics)
  udp      a full UDP frame (raster + rest-pose coordinates), mesh already posed
  pose+udp linear blend skinning of the frame's pose, then a UDP frame
  rgba     cel-shaded RGBA with outline, 2x2 supersampled (for sheets and previews)

Usage: python benchmarks/bench_udp_render.py [--size 512] [--triangles 50000] [--frames 20]
"""

from __future__ import annotations

import argparse
import os
import platform
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
    fn(0)  # warm-up (first-call allocations, CUDA kernels)
    sync()
    t = time.perf_counter()
    for k in range(frames):
        fn(k)
    sync()
    return frames / (time.perf_counter() - t)


def bench(device: str, size: int, triangles: int, frames: int) -> dict[str, float]:
    mesh = character_with(triangles)
    motion = walk(frames)
    rot, _ = motion.for_skeleton(mesh.skeleton.names)
    globals_ = mesh.skeleton.forward(rot, motion.root_translation).to(device)
    dev_mesh = mesh
    if device != "cpu":
        from conr.engine.scene import _to_device

        dev_mesh = _to_device(mesh, device)
    posed = dev_mesh.pose(globals_)  # (T, V, 3)
    cam = sequence_camera(posed.cpu(), size)
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
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print(f"# {args.size}x{args.size}, frames/s (higher is better)")
    rows = {d: bench(d, args.size, args.triangles, args.frames) for d in devices}
    keys = list(next(iter(rows.values())))
    print("| device | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for d, r in rows.items():
        print(f"| {d} | " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
