"""`conr demo`: see conr renders a character it has never seen, with nothing but the package."""

from __future__ import annotations

import argparse

from conr.commands.options import FPS, SEED, ranged


def register(subparsers: argparse._SubParsersAction) -> None:
    from conr.demo import DEFAULT_SEED

    p = subparsers.add_parser(
        "demo", help="render a new procedural character dancing with the bundled model",
        description="Make a procedural character (its 4-view sheet and a built-in dance as UDP frames), render it "
                    "with the model bundled in conr, and write the RGBA frames, an MP4 and a WebM with transparency.")
    p.add_argument("--out", "-o", default="demo", help="output folder (default demo/; new or empty unless --overwrite)")
    p.add_argument("--seed", type=SEED, default=DEFAULT_SEED,
                   help=f"which character (default {DEFAULT_SEED}, one the model never saw)")
    p.add_argument("--frames", type=ranged(int, 1, 10000), default=48, help="frames of the dance (default 48)")
    p.add_argument("--fps", type=FPS, default=24.0, help="video frame rate (default 24)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from conr.demo import make_demo
    from conr.errors import ConrError

    if args.frames < 1:
        raise ConrError(f"--frames must be at least 1 (got {args.frames})")
    start = time.perf_counter()
    result = make_demo(args.out, seed=args.seed, frames=args.frames, fps=args.fps, device=args.device,
                       overwrite=args.overwrite, progress=not args.quiet)
    print(f"done in {time.perf_counter() - start:.0f} s")
    print(f"  sheet:  {result.sheet}")
    print(f"  frames: {result.frames[0].parent} ({len(result.frames)} RGBA PNGs)")
    for v in result.videos:
        print(f"  video:  {v}")
    return 0
