"""Benchmark: `conr synth` images per second (sheet views and targets, RGBA + UDP) on this CPU.

Rows: conr's classic style in the A-pose; every style (with their cut-out traits); every style with
posed sheets. Each row makes --characters characters (4 sheet views and 4 target poses each) in a
temporary folder and counts the RGBA images written.

Usage: python benchmarks/bench_synth.py [--size 256] [--characters 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from conr.engine.styles import STYLES
from conr.engine.synth import synthesize

ROWS = [("classic, A-pose", ("classic",), "a"), ("all styles, A-pose", STYLES, "a"),
        ("all styles, posed sheets", STYLES, "posed")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--characters", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"conr synth, {args.size} px, {args.characters} characters x (4 views + 4 poses), "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}")
    print(f"| {'data':<26} | images/s | s/character |")
    print(f"| {'-' * 26} | -------- | ----------- |")
    for label, styles, pose in ROWS:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            synthesize(Path(tmp) / "d", seed=500000, count=args.characters, frames=4, size=args.size, views=4,
                       styles=styles, sheet_pose=pose)
            took = time.perf_counter() - start
        images = args.characters * 8
        print(f"| {label:<26} | {images / took:8.1f} | {took / args.characters:11.2f} |")


if __name__ == "__main__":
    main()
