"""`conr eval`: a model's metrics on data folders, beside baselines that need no learning."""

from __future__ import annotations

import argparse
import json

from conr.errors import ConrError
from conr.commands.options import SIZE, ranged


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="measure a model (and three baselines) against ground-truth frames",
        description="Render every target frame of the data folders with the model and with three baselines "
                    "that need no learning (copy: the front view stretched into the target's box; flat: the "
                    "silhouette in the sheet's mean colour; udp_nn: colours matched through the sheets' exact "
                    "UDP, an upper reference), and compare each with the ground truth: by default at the "
                    "frames' own size, the model run as `conr render` runs it (from the UDP frames, and from "
                    "the target images as pose images); with --crop in the network's crop. Metrics: L1 of RGB "
                    "over white, SSIM, L1 of alpha, PSNR (capped at 100 dB), L1 inside the silhouette, the "
                    "share of silhouette pixels of the right colour, and the UDP parser's error on the sheet "
                    "views and on the target images.")
    p.add_argument("--weights", help="a `conr train` run folder, a .safetensors file or the original release's "
                                     "folder (not needed with --no-model)")
    p.add_argument("--data", action="append", required=True,
                   help="a `conr synth` folder or a `conr poses --sheet N --rgba` folder; repeat for several")
    p.add_argument("--size", type=SIZE, default=None,
                   help="network resolution (default: the model's image size; 128 with --no-model)")
    p.add_argument("--views", type=ranged(int, 1, 8), default=None, help="sheet views used, the first K (default: all)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--max-frames", type=ranged(int, 1), default=None, help="evaluate at most N frames, spread over the data")
    p.add_argument("--no-model", action="store_true", help="only the baselines (no weights needed)")
    p.add_argument("--stability", action="store_true",
                   help="the frames are a motion (e.g. `conr synth --motion dance`): also measure flicker, the "
                        "colour change between consecutive frames where the body stays put, over the truth's")
    p.add_argument("--crop", action="store_true",
                   help="compare in the network's crop (at --size) instead of at the frames' own size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.files.io import atomic_write_bytes, check_new_file
    from conr.training.data import read_data
    from conr.training.evaluate import evaluate, format_table

    if args.weights is None and not args.no_model:
        raise ConrError("--weights is needed to evaluate a model", hint="pass --weights, or --no-model for "
                                                                         "the baselines alone")
    if args.json:  # a file that cannot be written is found before the evaluation, not after it
        check_new_file(args.json, True, "--json")
    characters = read_data(args.data)  # before loading weights: a wrong folder is the quicker mistake
    model, device = None, "cpu"
    if not args.no_model:
        from conr.render.pipeline import Renderer

        renderer = Renderer.from_weights(args.weights, device=args.device)
        model, device = renderer.model, renderer.device
    views = args.views if args.views is not None else min(len(c.sheet) for c in characters)
    if args.crop or model is None:
        size = args.size if args.size is not None else (model.cfg.image_size if model is not None else 128)
        result = evaluate(model, characters, size, views, device, max_frames=args.max_frames,
                          progress=not args.quiet, data=args.data, weights=None if args.no_model else args.weights)
        print(format_table(result))
    else:
        from conr.training.evaluate import evaluate_frames, format_frames_table

        if args.size is not None:
            renderer = Renderer(model, device=device, size=args.size)
        result = evaluate_frames(renderer, characters, views, baselines=("copy", "flat", "udp_nn"),
                                 max_frames=args.max_frames, progress=not args.quiet, images=True,
                                 stability=args.stability)
        result.update({"data": [str(d) for d in args.data], "weights": args.weights})
        print(format_frames_table(result))
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode())
    return 0
