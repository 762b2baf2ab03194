"""`conr motion VIDEO --out FILE.bvh`: the motion of the person in a video, as a BVH file."""

from __future__ import annotations

import argparse
import sys

from conr.commands.options import FPS, ranged


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "motion",
        help="estimate the 3D motion of the person in a video and write it as BVH",
        description="Find the person in every frame of VIDEO (MediaPipe's pose landmarker, offline), turn "
                    "the landmarks into joint rotations of a humanoid skeleton, and write a BVH that other "
                    "tools and `conr poses` read. Frames without a person are filled from their neighbours.",
    )
    p.add_argument("video", help="a video of one person, whole body in view (.mp4, .mov, .webm, .mkv, .avi ...)")
    p.add_argument("--out", "-o", required=True, metavar="FILE.bvh", help="the BVH file to write")
    p.add_argument("--fps", type=FPS, default=None, help="frame rate of the motion (default: the video's)")
    p.add_argument("--frames", default=None, metavar="A:B",
                   help="motion frames A to B-1 only (at the motion's frame rate; A: or :B for open ends)")
    p.add_argument("--min-cutoff", type=ranged(float, 1e-3, 1e3), default=1.5,
                   help="One Euro smoothing: cut-off in Hz at rest; lower is steadier, higher follows more "
                        "closely (default 1.5)")
    p.add_argument("--beta", type=ranged(float, 0, 1e3), default=0.5,
                   help="One Euro smoothing: how fast the cut-off rises with speed (default 0.5)")
    p.add_argument("--no-smooth", action="store_true", help="no smoothing: raw landmarks, frame by frame")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from tqdm import tqdm

    from conr.commands.poses import parse_range
    from conr.errors import ConrError
    from conr.files.io import check_new_file
    from conr.motion.capture import capture
    from conr.motion.filters import OneEuro

    out = Path(args.out)
    if out.suffix.lower() != ".bvh":
        raise ConrError("the output must be a .bvh file", out, "name it e.g. dance.bvh")
    if out.is_dir():
        raise ConrError("--out names a folder; the motion is written as one .bvh file", out,
                        f"give a file path, e.g. {out / 'motion.bvh'}")
    check_new_file(out, args.overwrite, "--out")
    if args.fps is not None and not args.fps > 0:
        raise ConrError(f"--fps must be positive, got {args.fps}")
    if not (args.min_cutoff > 0 and args.beta >= 0):
        raise ConrError("--min-cutoff must be positive and --beta at least 0")
    smooth = None if args.no_smooth else OneEuro(args.min_cutoff, args.beta)
    start = time.perf_counter()
    bar = tqdm(desc="finding the person", unit="frame", disable=args.quiet)
    motion = capture(args.video, args.fps, parse_range(args.frames), smooth, progress=lambda n: bar.update(1))
    bar.close()
    elapsed = time.perf_counter() - start
    for w in motion.warnings:
        print(f"conr motion: warning: {w}", file=sys.stderr)
    motion.save_bvh(out)
    print(f"wrote {motion.num_frames} frames at {motion.fps:g} fps to {out} "
          f"({motion.num_frames / elapsed:.1f} frames/s)", file=sys.stderr)
    return 0
