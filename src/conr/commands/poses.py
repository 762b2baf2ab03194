"""`conr poses MODEL MOTION --out DIR`: render a character model driven by a motion as UDP frames."""

from __future__ import annotations

import argparse
import sys

from conr.commands.engine_options import add_engine_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "poses",
        help="turn a 3D model (glTF/GLB/VRM/PMX) and a motion (BVH, VMD, glTF animation, built-in) into UDP frames",
        description="Retarget MOTION onto MODEL and write one UDP frame (.npz, key 'i') per motion frame to OUT, "
                    "ready for `conr render`. MOTION is a .bvh, a .glb/.gltf/.vrm with an animation (the model "
                    "itself for its own animation), a .vmd (for a .pmx model), or a built-in motion name. See docs/engine.md.",
    )
    p.add_argument("model", help="character model: .glb, .gltf, .vrm or .pmx")
    p.add_argument("motion", help="motion: .bvh, .vmd, .glb/.gltf/.vrm animation, or walk|wave|dance|stand|random")
    p.add_argument("--out", "-o", default=None,
                   help="output folder for the UDP frames, new or empty unless --overwrite (default: poses_MODEL_MOTION)")
    p.add_argument("--size", type=int, default=512, help="frame width and height in pixels (default 512)")
    p.add_argument("--camera", default="front", metavar="front|orbit|FILE",
                   help="front: one fixed camera facing the character; orbit: once around it over the motion; "
                        "FILE: a JSON camera file (see docs/engine.md). Default front")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the motion's)")
    p.add_argument("--frames", default=None, metavar="A:B",
                   help="output frames A to B-1 (at the output frame rate; A: or :B for open ends)")
    p.add_argument("--yaw", type=float, default=0.0, help="camera angle around the character in degrees (0 = front)")
    p.add_argument("--projection", choices=("perspective", "orthographic"), default="perspective")
    p.add_argument("--animation", default=None, help="animation name or index in a glTF motion file (default first)")
    p.add_argument("--seed", type=int, default=0, help="seed for the 'random' motion")
    p.add_argument("--rgba", "--preview", dest="rgba", action="store_true",
                   help="also write the cel-shaded RGBA render of each frame to OUT/rgba")
    p.add_argument("--sheet", type=int, default=0, metavar="VIEWS",
                   help="also render a character sheet of the model (A-pose, up to 8 views) to OUT/sheet")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.engine.device import resolve_device, set_threads
    from conr.engine.renderer import make_style
    from conr.engine.poses import make_poses
    from conr.errors import ConrError

    set_threads(args.threads)
    frame_range = parse_range(args.frames)
    if args.fps is not None and args.fps <= 0:
        raise ConrError("--fps must be positive")
    if args.out is None:
        from pathlib import Path

        args.out = f"poses_{Path(args.model).stem}_{Path(args.motion).stem}"
    manifest = make_poses(
        args.model, args.motion, args.out, size=args.size, fps=args.fps, frame_range=frame_range, camera=args.camera,
        yaw=args.yaw, projection=args.projection, rgba=args.rgba, sheet_views=args.sheet, animation=args.animation,
        seed=args.seed,
        overwrite=args.overwrite, device=resolve_device(args.device),
        style=make_style(args.shading, not args.no_outline),
        warn=lambda s: print(f"conr poses: warning: {s}", file=sys.stderr),
    )
    print(f"wrote {len(manifest['frames'])} UDP frames to {args.out}")
    return 0


def parse_range(text: str | None) -> tuple[int | None, int | None] | None:
    """'A:B', 'A:' or ':B' -> (A, B) with None for an open end."""
    from conr.errors import ConrError

    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise ConrError(f"--frames {text!r} is not a range", hint="write A:B (frames A to B-1), A: or :B") from None
    if (a is not None and a < 0) or (b is not None and b < 1):
        raise ConrError(f"--frames {text!r} has a negative start or an end below 1", hint="frames are numbered from 0")
    return a, b
