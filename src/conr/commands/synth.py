"""`conr synth`: procedural characters -> character sheets, UDP pose frames and target renders."""

from __future__ import annotations

import argparse
import sys

from conr.commands.engine_options import add_engine_options
from conr.commands.options import SEED, SIZE, ranged


def register(subparsers: argparse._SubParsersAction) -> None:
    from conr.engine.styles import STYLES
    from conr.engine.synth import MAX_CHARACTERS, MAX_DETAIL, MAX_POSES, MOTIONS, SHEET_POSES

    p = subparsers.add_parser(
        "synth",
        help="generate procedural anime characters with sheets, UDP poses and target images",
        description="Generate procedural anime-like characters (varied by seed): for each, a character sheet "
                    "(RGBA views and their UDP) and target poses (UDP frames plus ground-truth RGBA), listed in "
                    "a manifest. Deterministic for a seed; see docs/engine.md.",
    )
    p.add_argument("--out", "-o", required=True, help="output folder (must be new or empty unless --overwrite)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the first character (default 0)")
    p.add_argument("--characters", "--count", dest="count", type=ranged(int, 1, MAX_CHARACTERS), default=1,
                   help="number of characters (seeds seed, seed+1, ...; default 1)")
    p.add_argument("--poses-per-character", "--frames", dest="frames", type=ranged(int, 1, MAX_POSES), default=None,
                   help="target poses per character (default: 8 for random poses, one loop for a motion)")
    p.add_argument("--motion", choices=MOTIONS, default="random",
                   help="how target poses are made: random plausible poses (default) or a motion's frames")
    p.add_argument("--size", type=SIZE, default=512, help="image width and height in pixels (default 512)")
    p.add_argument("--sheet-views", "--views", dest="views", type=ranged(int, 1, 8), default=4,
                   help="views in each character sheet (default 4)")
    p.add_argument("--projection", choices=("perspective", "orthographic"), default="perspective")
    p.add_argument("--yaw", type=ranged(float, -360, 360), default=0.0, help="camera angle of the motion frames in degrees (0 = front)")
    p.add_argument("--detail", type=ranged(float, 0.1, MAX_DETAIL), default=1.0, help="mesh tessellation factor (default 1.0)")
    p.add_argument("--no-targets", action="store_true", help="skip the ground-truth RGBA renders of the motion")
    p.add_argument("--styles", default=None,
                   help="drawing styles to pick from, 'all' (default) or a comma-separated list of: "
                        f"{', '.join(STYLES)} (hold styles out of a training run by leaving them out)")
    p.add_argument("--style-seed", type=SEED, default=0,
                   help="seed of the styles' parameters (default 0); the same character seed with another style "
                        "seed is the same character drawn differently")
    p.add_argument("--sheet-pose", choices=SHEET_POSES, default="a",
                   help="pose of the sheet views: a (A-pose, default), t (T-pose), or posed (each view in its own "
                        "random pose and turn)")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.engine.synth import synthesize
    from conr.engine.device import resolve_device, set_threads
    from conr.engine.renderer import make_style
    from conr.engine.styles import STYLES, parse_styles
    from conr.errors import ConrError

    fixed = args.shading != "cel" or args.no_outline
    if fixed and args.styles is not None:
        raise ConrError("--styles cannot be combined with --shading or --no-outline",
                        hint="--shading/--no-outline draw every character in one fixed style; --styles picks among styles")
    styles = parse_styles(args.styles) if args.styles is not None else STYLES
    device = resolve_device(args.device)
    set_threads(args.threads)
    manifest = synthesize(
        args.out, seed=args.seed, count=args.count, motion=args.motion, frames=args.frames, size=args.size,
        views=args.views, projection=args.projection, yaw=args.yaw, detail=args.detail, targets=not args.no_targets,
        overwrite=args.overwrite, device=device,
        style=make_style(args.shading, not args.no_outline) if fixed else None, styles=styles,
        style_seed=args.style_seed, sheet_pose=args.sheet_pose, log=lambda s: print(s, file=sys.stderr),
    )
    n = sum(len(c["udp"]) for c in manifest["characters"])
    print(f"wrote {len(manifest['characters'])} character(s), {n} target poses to {args.out}")
    return 0
