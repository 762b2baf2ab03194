"""`conr poses MODEL MOTION --out DIR` (or `--procedural SEED MOTION`): a character model driven by a
motion, rendered as UDP frames."""

from __future__ import annotations

import argparse
import sys

from conr.commands.engine_options import add_engine_options
from conr.commands.options import FPS, SEED, SIZE, ranged


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "poses",
        usage="conr poses MODEL MOTION [options]\n       conr poses --procedural SEED MOTION [options]",
        help="turn a 3D model (glTF/GLB/VRM/PMX) and a motion (BVH, VMD, glTF animation, built-in) into UDP frames",
        description="Retarget MOTION onto MODEL and write one UDP frame (.npz, key 'i') per motion frame to OUT, "
                    "ready for `conr render`. MOTION is a .bvh, a .glb/.gltf/.vrm with an animation (the model "
                    "itself for its own animation), a .vmd (for a .pmx model), or a built-in motion name. With "
                    "--procedural SEED the model is that procedural character and only MOTION is given. "
                    "See docs/engine.md.",
    )
    # One list, sorted out in run(): MODEL is absent with --procedural.
    p.add_argument("inputs", nargs="+", metavar="MODEL MOTION",
                   help="character model (.glb, .gltf, .vrm or .pmx; left out with --procedural), then the motion "
                        "(.bvh, .vmd, .glb/.gltf/.vrm animation, a video of a person (.mp4, .mov, .webm ...; see "
                        "`conr motion`), or walk|wave|dance|stand|random)")
    p.add_argument("--procedural", type=SEED, default=None, metavar="SEED",
                   help="use the procedural character of SEED (character 0 of `conr synth --seed SEED`) as the model")
    p.add_argument("--bone-map", default=None, metavar="FILE",
                   help='JSON object from our humanoid bone names to the model\'s or the motion\'s, for bones '
                        'not recognised by name, e.g. {"hips": "pelvis", "spine": "spine_01"}')
    p.add_argument("--out", "-o", default=None,
                   help="output folder for the UDP frames, new or empty unless --overwrite "
                        "(default: poses_MODEL_MOTION, or poses_proceduralSEED_MOTION)")
    p.add_argument("--size", type=SIZE, default=512, help="frame width and height in pixels (default 512)")
    p.add_argument("--camera", default="front", metavar="front|orbit|FILE",
                   help="front: one fixed camera facing the character; orbit: once around it over the motion; "
                        "FILE: a JSON camera file (see docs/engine.md). Default front")
    p.add_argument("--fps", type=FPS, default=None, help="output frame rate (default: the motion's)")
    p.add_argument("--frames", default=None, metavar="A:B",
                   help="output frames A to B-1 (at the output frame rate; A: or :B for open ends)")
    p.add_argument("--yaw", type=ranged(float, -360, 360), default=0.0, help="camera angle around the character in degrees (0 = front)")
    p.add_argument("--projection", choices=("perspective", "orthographic"), default="perspective")
    p.add_argument("--animation", default=None, help="animation name or index in a glTF motion file (default first)")
    p.add_argument("--seed", type=SEED, default=None,
                   help="seed for the 'random' motion (default 0, or the --procedural seed as in `conr synth`)")
    p.add_argument("--rgba", "--preview", dest="rgba", action="store_true",
                   help="also write the cel-shaded RGBA render of each frame to OUT/rgba")
    p.add_argument("--sheet", type=ranged(int, 0, 8), default=0, metavar="VIEWS",
                   help="also render a character sheet of the model (A-pose, up to 8 views) to OUT/sheet")
    add_engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.engine.device import resolve_device, set_threads
    from conr.engine.renderer import make_style
    from conr.engine.poses import make_poses, procedural_model
    from conr.errors import ConrError

    model_name, motion = split_inputs(args.inputs, args.procedural)
    set_threads(args.threads)
    frame_range = parse_range(args.frames)
    if args.fps is not None and args.fps <= 0:
        raise ConrError("--fps must be positive")
    from conr.engine.poses import PROCEDURAL_NAMES, check_procedural_frames

    if motion in PROCEDURAL_NAMES and frame_range:
        check_procedural_frames(motion, frame_range[1])  # before the model loads
    if args.out is None:
        from pathlib import Path

        name = f"procedural{args.procedural}" if model_name is None else Path(model_name).stem
        args.out = f"poses_{name}_{Path(motion).stem}"
    seed = args.seed if args.seed is not None else args.procedural or 0
    model = procedural_model(args.procedural) if model_name is None else model_name
    manifest = make_poses(
        model, motion, args.out, size=args.size, fps=args.fps, frame_range=frame_range, camera=args.camera,
        yaw=args.yaw, projection=args.projection, rgba=args.rgba, sheet_views=args.sheet, animation=args.animation,
        seed=seed, bone_map=args.bone_map,
        overwrite=args.overwrite, device=resolve_device(args.device),
        style=make_style(args.shading, not args.no_outline),
        warn=lambda s: print(f"conr poses: warning: {s}", file=sys.stderr),
    )
    print(f"wrote {len(manifest['frames'])} UDP frames to {args.out}")
    return 0


def split_inputs(inputs: list[str], procedural: int | None) -> tuple[str | None, str]:
    """(model file or None for --procedural, motion) from the positional arguments, or a ConrError
    that says which form is expected."""
    from conr.errors import ConrError

    forms = "write `conr poses MODEL MOTION`, or `conr poses --procedural SEED MOTION` for a procedural character"
    if procedural is not None:
        if procedural < 0:
            raise ConrError(f"--procedural {procedural}: the seed must be 0 or more")
        if len(inputs) != 1:
            raise ConrError(f"--procedural SEED takes the place of MODEL, so give only the motion, got "
                            f"{len(inputs)} inputs: {' '.join(inputs)}", hint=forms)
        return None, inputs[0]
    if len(inputs) != 2:
        got = f"only {inputs[0]!r}" if len(inputs) == 1 else f"{len(inputs)} inputs: {' '.join(inputs)}"
        raise ConrError(f"expected a model and a motion, got {got}", hint=forms)
    return inputs[0], inputs[1]


# Frame numbers past any motion conr reads (a BVH holds at most a million frames).
MAX_FRAME = 1_000_000


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
    if max(a or 0, b or 0) > MAX_FRAME:
        raise ConrError(f"--frames {text!r} goes past frame {MAX_FRAME:,}, beyond any motion conr reads",
                        hint="frames are counted at the output frame rate: check the numbers")
    if a is not None and b is not None and b <= a:
        raise ConrError(f"--frames {text!r} ends before it starts: A:B keeps frames A to B-1",
                        hint=f"write {a}:{a + 1} or later for frame {a} on, or {b}:{a} if the two were swapped")
    return a, b
