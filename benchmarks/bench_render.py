"""Rendering speed and memory: official architecture, random weights, 256 px, 4 sheet views.

    .venv/bin/python benchmarks/bench_render.py            # CPU (and CUDA when present)
    .venv/bin/python benchmarks/bench_render.py --quick    # fewer frames

Prints two tables:
1. frames/s and peak memory of a straightforward renderer (one frame and one view at a time,
   benchmarks/baseline.py) and of ours (views as a tensor dimension, batched frames), with the
   largest difference from the straightforward float32 output and its PSNR;
2. peak memory of the whole pipeline (read poses, render, write PNGs) for 100 and 1000 frames.

Every configuration runs in its own process so that peak memory is its own, `--rounds` times,
alternating with the others; the best round counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _model(preset_name: str, device: str):
    import torch

    from conr.models import CoNR, preset

    torch.manual_seed(0)
    model = CoNR(preset(preset_name)).eval().to(device)
    return model


def _inputs(views: int, frames: int, size: int, device: str):
    import torch

    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = ((xx / 0.5) ** 2 + (yy / 0.8) ** 2 < 1).float()  # a figure-shaped opaque region
    images = torch.rand(views, 3, size, size, generator=g) * blob
    masks = blob.expand(views, 1, size, size).clone()
    udp = torch.rand(frames, 3, 1, 1, generator=g) * torch.stack([xx * 0.5 + 0.5, yy * 0.5 + 0.5, blob])
    target = torch.cat([udp * blob, blob.expand(frames, 1, size, size)], dim=1)
    return images.to(device), masks.to(device), target.to(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_one(cfg: dict) -> dict:
    """One configuration, in this process: returns frames/s, peak memory and the output."""
    import torch

    sys.path.insert(0, str(HERE))
    from baseline import render_frame

    from conr.models import winograd
    from conr.render.pipeline import Renderer

    device, batch, impl, precision = cfg["device"], cfg["batch"], cfg["impl"], cfg["precision"]
    frames = cfg["frames"]
    if cfg.get("keep_memory"):
        from conr.render.allocator import keep_freed_memory

        keep_freed_memory()
    renderer = Renderer(_model("official", device), device=device, precision=precision)
    images, masks, target = _inputs(4, frames, 256, device)
    with torch.inference_mode():
        sheet = renderer.model.encode_sheet(images, masks)

    def step(chunk):
        fast_convs = contextlib.nullcontext() if cfg.get("winograd", True) else winograd.disabled()
        with torch.inference_mode(), renderer._autocast(), fast_convs:
            if impl == "baseline":
                return torch.cat([render_frame(renderer.model, sheet, chunk[i:i + 1]) for i in range(len(chunk))])
            return renderer.model.render(sheet, chunk)

    for _ in range(2):  # warm-up: the allocator's pools fill over the first frames, kernels are chosen
        step(target[:batch])
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    outs = []
    start = time.perf_counter()
    for i in range(0, frames, batch):
        outs.append(step(target[i:i + batch]).float().cpu())
    _sync(device)
    elapsed = time.perf_counter() - start
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = torch.cat(outs)
    path = Path(cfg["out"])
    torch.save(out, path)
    return {"fps": frames / elapsed, "peak_mb": peak}


def _rss_mb() -> float:
    """Resident memory now (Linux), to follow memory while frames stream."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_sequence(cfg: dict) -> dict:
    """The whole pipeline over `frames` UDP files on disk, frames written as PNGs."""
    import numpy as np
    import torch

    from conr.files.io import atomic_save_npz, atomic_write_png
    from conr.render.pipeline import Renderer, find_poses
    from conr.render.weights import save_safetensors

    device, n = cfg["device"], cfg["frames"]
    if cfg.get("keep_memory"):
        from conr.render.allocator import keep_freed_memory

        keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = _model(cfg["preset"], device)
        save_safetensors(model.cpu(), tmp / "w.safetensors")
        del model
        images, masks, target = _inputs(4, 1, 256, "cpu")
        sheet_rgba = [np.concatenate([(images[i] * 255).byte().permute(1, 2, 0).numpy(),
                                      (masks[i] * 255).byte().permute(1, 2, 0).numpy()], axis=2)
                      for i in range(4)]
        pose = target[0].permute(1, 2, 0).numpy().astype(np.float32)
        for k in range(n):
            atomic_save_npz(tmp / "poses" / f"{k}.npz", compressed=False, i=np.roll(pose, k % 7, axis=1))
        renderer = Renderer.from_weights(tmp / "w.safetensors", device=device)
        sheet = renderer.encode_sheet(sheet_rgba)
        base = peak = _rss_mb()
        start = time.perf_counter()
        for frame in renderer.render(sheet, find_poses(tmp / "poses"), batch_size=cfg["batch"]):
            atomic_write_png(tmp / "out" / f"{frame.name}.png", frame.rgba)
            peak = max(peak, _rss_mb())
        elapsed = time.perf_counter() - start
        gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    return {"fps": n / elapsed, "peak_mb": peak, "before_mb": base, "gpu_mb": gpu}


def _child(cfg: dict) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"configuration {cfg} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _compare(a_path: str, b_path: str) -> tuple[float, float]:
    import torch

    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    n = min(len(a), len(b))  # the first frames of every run are the same inputs
    a, b = a[:n], b[:n]
    err = float((a - b).abs().max())
    mse = float(((a - b) ** 2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return err, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer frames (noisier numbers)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or both (default: cpu and cuda if present)")
    parser.add_argument("--skip-sequence", action="store_true", help="skip the 100 vs 1000 frames memory test")
    parser.add_argument("--skip-speed", action="store_true", help="skip the frames/s table")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every configuration; the best counts")
    args = parser.parse_args()
    if args.child:
        cfg = json.loads(args.child)
        fn = run_sequence if cfg.get("kind") == "sequence" else run_one
        print(json.dumps(fn(cfg)))
        return

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.devices != "auto":
        devices = args.devices.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""))
    print("official architecture, random weights, 256x256, 4 sheet views\n")
    header = f"{'device':6} {'renderer':38} {'batch':>5} {'frames/s':>9} {'speed-up':>8} {'peak MB':>9} " \
             f"{'max |err|':>10} {'PSNR dB':>8}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices if not args.skip_speed else []:
            frames = 8 if device == "cpu" else 64
            if args.quick:
                frames = max(frames // 4, 2)
            # keep_memory: the allocator setting `conr render` makes on the CPU (conr/allocator.py)
            cpu = device == "cpu"
            runs = [("baseline", 1, "fp32", "one frame, one view at a time", False),
                    ("baseline", 1, "fp32", "  the same + conr's allocator setting", True),
                    ("conr", 1, "fp32", "conr fp32", cpu),
                    ("conr-direct", 1, "fp32", "  conr fp32 without Winograd", cpu),
                    ("conr", 8, "fp32", "conr fp32", cpu),
                    ("conr", 1, "fast", "conr fast (bf16)" if cpu else "conr fast (fp16 autocast)", cpu),
                    ("conr", 8, "fast", "conr fast (bf16)" if cpu else "conr fast (fp16 autocast)", cpu)]
            if not cpu:  # the allocator setting and Winograd are CPU-only
                runs = [r for r in runs if not (r[4] and r[0] == "baseline") and r[0] != "conr-direct"]
            if device == "cpu":
                from conr.render.pipeline import _cpu_has_bf16

                runs = [r for r in runs if not (r[1] == 8 and r[2] == "fast")]
                if not _cpu_has_bf16():
                    print(f"{device:6} conr fast: not run, this CPU has no native bfloat16 (it would be float32)")
                    runs = [r for r in runs if r[2] != "fast"]
            # Rounds alternate the configurations, and each keeps its best round: this shared VM's
            # speed drifts by 15-25 % over minutes, which would otherwise favour whichever ran first.
            results: dict[int, dict] = {}
            for _ in range(args.rounds):
                for i, (impl, batch, precision, _label, keep) in enumerate(runs):
                    out = str(Path(tmp) / f"{device}-{i}.pt")
                    res = _child({"device": device, "impl": impl.removesuffix("-direct"), "batch": batch,
                                  "precision": precision, "frames": max(frames, batch), "out": out,
                                  "keep_memory": keep, "winograd": not impl.endswith("-direct")})
                    if i not in results or res["fps"] > results[i]["fps"]:
                        results[i] = {**res, "out": out}
            ref = results[0]
            for i, (_impl, batch, _precision, label, _keep) in enumerate(runs):
                res = results[i]
                err, psnr = (0.0, math.inf) if i == 0 else _compare(ref["out"], res["out"])
                print(f"{device:6} {label:38} {batch:5d} {res['fps']:9.3f} {res['fps'] / ref['fps']:7.2f}x "
                      f"{res['peak_mb']:9.0f} {err:10.2e} {psnr:8.1f}", flush=True)
    if args.skip_sequence:
        return
    print("\nmemory against sequence length (whole pipeline: read .npz, render, write PNG)")
    header = f"{'device':6} {'preset':8} {'frames':>6} {'frames/s':>9} {'RSS at start MB':>15} {'peak RSS MB':>12} " \
             f"{'GPU MB':>8}"
    print(header)
    print("-" * len(header))
    for device in devices:
        preset_name = "tiny" if device == "cpu" else "official"
        for n in (100, 1000):
            res = _child({"kind": "sequence", "device": device, "preset": preset_name, "frames": n, "batch": 8,
                          "keep_memory": device == "cpu"})
            print(f"{device:6} {preset_name:8} {n:6d} {res['fps']:9.2f} {res['before_mb']:15.0f} {res['peak_mb']:12.0f} "
                  f"{res['gpu_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
