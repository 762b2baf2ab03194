"""Training speed and memory: one optimiser step of `conr train`, and the data loader's rate.

    .venv/bin/python benchmarks/bench_train.py                                  # small and tiny, 128 and 256 px
    .venv/bin/python benchmarks/bench_train.py --presets small --sizes 128 --steps 3

Makes a synthetic data set in a temporary folder (`conr synth`: 4 characters, 2 frames, 256 px),
then times, for every device, preset and size:

- the training step alone: forward, losses, backward, gradient clipping and AdamW, as the loop runs
  them (`conr.training.step.forward`, `conr.training.losses.training_loss`, the loop's parameter
  groups and autocast) on a batch already on the device; peak memory is the process's peak RSS on
  the CPU, `torch.cuda.max_memory_allocated` on CUDA;
- the data loading: samples/s of one process reading, cropping with augmentation and computing the
  correspondence flows (what each DataLoader worker does).

Every configuration runs in its own process, so that its peak memory is its own. On a CPU that
other work keeps busy, pass --threads 1: OpenMP's barriers wait for time slices and steps get
many times slower.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _batch(data: str, size: int, batch: int, views: int):
    """The first training batch of the loop's sampler: (B, V, ...) tensors with flows."""
    import torch

    from conr.training.data import CropJitter, SampleSet, StepSampler, read_data

    ds = SampleSet(read_data([data]), size, jitter=CropJitter())
    keys = StepSampler(len(ds), batch, seed=0, views=(views, views)).batch(0)
    samples = [ds[k] for k in keys]
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def run_step(cfg: dict) -> dict:
    """Seconds per training step (mean over cfg["steps"] after cfg["warmup"]) and peak memory."""
    import torch

    from conr.models import CoNR, preset
    from conr.training.loop import TrainConfig, trainable
    from conr.training.losses import LossWeights, training_loss
    from conr.training.step import forward

    device = cfg["device"]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    if device == "cpu":
        torch.set_flush_denormal(True)  # as the loop does on the CPU
    train = TrainConfig(data=[], out="", preset=cfg["preset"], size=cfg["size"], batch_size=cfg["batch"])
    batch = {k: v.to(device) for k, v in _batch(cfg["data"], cfg["size"], cfg["batch"], cfg["views"]).items()}

    # The model, parameter groups, optimiser and autocast as conr.training.loop.train makes them.
    torch.manual_seed(0)
    model = CoNR(dataclasses.replace(preset(train.preset), image_size=train.size)).to(device).train()
    params = trainable(model)
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": train.weight_decay},
                             {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                            lr=train.lr, betas=(0.9, 0.99))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None
    weights = LossWeights()

    def step() -> None:
        if autocast is not None:
            with autocast:
                out = forward(model, batch)
        else:
            out = forward(model, batch)
        loss = training_loss(weights, out, batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train.clip)
        opt.step()

    for _ in range(cfg["warmup"]):  # kernels are chosen and the allocator's pools fill
        step()
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(cfg["steps"]):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / cfg["steps"]
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"step_s": seconds, "peak_mb": peak, "threads": torch.get_num_threads()}


def run_data(cfg: dict) -> dict:
    """Samples/s of one process: what one DataLoader worker delivers (augmentation and flows on)."""
    import cv2
    import torch

    from conr.training.data import CropJitter, SampleSet, StepSampler, read_data

    torch.set_num_threads(1)  # as the loop's workers run
    cv2.setNumThreads(1)
    ds = SampleSet(read_data([cfg["data"]]), cfg["size"], jitter=CropJitter(), flow=True)
    sampler = StepSampler(len(ds), 1, seed=0, views=(cfg["views"], cfg["views"]))
    ds[sampler.batch(0)[0]]  # warm-up: imports, first allocations
    n = cfg["samples"]
    start = time.perf_counter()
    for step in range(1, n + 1):
        ds[sampler.batch(step)[0]]
    return {"samples_s": n / (time.perf_counter() - start)}


def _child(cfg: dict) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"configuration {cfg} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--presets", nargs="+", default=["small", "tiny"], help="architectures (default: small tiny)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256], help="network sizes (default: 128 256)")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per step (default 4)")
    parser.add_argument("--views", type=int, default=4, help="sheet views per sample (default 4, the most)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--samples", type=int, default=8, help="samples read to time the data loading (default 8)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, and CUDA too when a GPU is present (default)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the step (default: torch's)")
    args = parser.parse_args()
    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(run_data(cfg) if cfg["kind"] == "data" else run_step(cfg)))
        return

    import torch

    from conr.engine.synth import synthesize

    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "synth")
        t0 = time.perf_counter()
        synthesize(data, seed=0, count=4, frames=2, size=256, views=4)
        print(f"synthetic data: 4 characters x 2 frames, 256 px, 4 sheet views ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        common = {"data": data, "batch": args.batch_size, "views": args.views}
        rows = []
        header = f"{'device':<7}{'preset':<9}{'size':>5}{'batch':>6}{'step s':>9}{'samples/s':>11}{'peak MB':>9}"
        print(header, flush=True)
        for device in devices:
            for name in args.presets:
                for size in args.sizes:
                    r = _child({**common, "kind": "step", "device": device, "preset": name, "size": size,
                                "steps": args.steps, "warmup": args.warmup, "threads": args.threads})
                    row = (f"{device:<7}{name:<9}{size:>5}{args.batch_size:>6}{r['step_s']:>9.3f}"
                           f"{args.batch_size / r['step_s']:>11.2f}{r['peak_mb']:>9.0f}")
                    rows.append(row)
                    print(row, flush=True)
        for size in args.sizes:
            r = _child({**common, "kind": "data", "size": size, "samples": args.samples})
            print(f"data loading: {r['samples_s']:.2f} samples/s per worker ({size} px, {args.views} views, "
                  "augmentation and flows)")


if __name__ == "__main__":
    main()
