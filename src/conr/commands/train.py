"""`conr train`: train all four networks on data made by `conr synth` or `conr poses --sheet --rgba`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conr.errors import ConrError
from conr.commands.options import ranged

# Options whose defaults come from TrainConfig (or, with --resume, from the run's run.json).
_OPTIONS = {
    "preset": (str, "architecture: official, small, tiny, lookup, lookup-lines, lookup-tilt or lookup-tiny (default small)"),
    "size": (int, "network resolution, a multiple of 128 (default 128)"),
    "steps": (int, "optimiser steps in all (default 20000); with --resume it may be raised"),
    "batch_size": (int, "global batch, split over torchrun's processes (default 4)"),
    "lr": (float, "peak learning rate of AdamW (default 3e-4)"),
    "weight_decay": (float, "AdamW weight decay (default 1e-4)"),
    "warmup": (int, "steps of linear warm-up before the cosine decay (default 200)"),
    "clip": (float, "gradient norm clipping (default 1.0)"),
    "val_characters": (int, "characters held out for validation grids and losses (default 4; fewer, down to 0, for under 20 characters)"),
    "seed": (int, "seed of the initial weights and of every random choice of the data (default 0)"),
    "workers": (int, "DataLoader worker processes (default 1)"),
    "log_every": (int, "steps between metrics rows (default 10)"),
    "sample_every": (int, "steps between validation grids (default 500)"),
    "save_every": (int, "steps between checkpoints (default 500)"),
}
_LOSSES = ("rgba", "alpha", "parser", "parser_targets", "flow", "warp", "ssim", "right", "lines")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a CoNR model on conr synth / conr poses data",
        description="Train the UDP parser, target pose encoder, CINN shader and RGBA decoder together. "
                    "Checkpoints go to OUT/checkpoints (safetensors); OUT/model.safetensors is the newest weights, "
                    "usable as `conr render --weights OUT`. Under torchrun it trains with distributed data parallel.")
    p.add_argument("--data", action="append", required=True,
                   help="a `conr synth` folder or a `conr poses --sheet N --rgba` folder; repeat to mix several")
    p.add_argument("--out", "-o", required=True, help="run folder (new, or an existing run with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    for name, (kind, text) in _OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    p.add_argument("--views", default=None, help="sheet views per sample, MIN:MAX drawn per step (default 2:4)")
    p.add_argument("--device", default=None, help="auto (default: CUDA if present, else the CPU), cpu or cuda")
    p.add_argument("--no-jitter", action="store_true", help="no random crops (the same crops as rendering)")
    p.add_argument("--crop-scale", default=None, metavar="MIN:MAX",
                   help="the parser stage's random crops, their side over the figure's box (default 0.85:1.5; "
                        "rendering reads a view filling 0.85 of the parser's frame, so keep 1/0.85 inside)")
    p.add_argument("--stage", choices=["all", "parser", "shader", "lines"], default=None,
                   help="which parts learn: all (default), the UDP parser alone (at --size, with image "
                        "augmentation), everything but the parser, or the lookup shader's line head alone "
                        "(on the outlines the manifest gives, with --loss-lines; nothing is rendered)")
    p.add_argument("--init", metavar="WEIGHTS", default=None,
                   help="start from these weights (a .safetensors file, a run folder, the original's folder): "
                        "every part of the same architecture is loaded, the others start from scratch")
    p.add_argument("--no-photometric", action="store_true", help="no image augmentation in the parser stage")
    for name in _LOSSES:
        p.add_argument(f"--loss-{name.replace('_', '-')}", type=ranged(float, 0), default=None, help=f"weight of the {name} loss term")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _min_max(option: str, text: str, kind: type, low: float, high: float, example: str) -> tuple:
    """An option's MIN:MAX (MIN alone for both) with low <= MIN <= MAX <= high, or a clear error."""
    try:
        lo, _, hi = text.partition(":")
        pair = (kind(lo), kind(hi or lo))
    except ValueError:
        raise ConrError(f"{option} {text!r} is not MIN:MAX", hint=f"e.g. {option} {example}") from None
    if not low <= pair[0] <= pair[1] <= high:
        bound = "" if high == float("inf") else f" <= {high:g}"
        raise ConrError(f"{option} {text!r}: need {low:g} <= MIN <= MAX{bound}", hint=f"e.g. {option} {example}")
    return pair


def config_from_args(args: argparse.Namespace):
    from conr.training.loop import RUN_FILE, TrainConfig

    out = Path(args.out)
    if args.resume and (out / RUN_FILE).is_file():
        try:
            base = TrainConfig.from_dict(json.loads((out / RUN_FILE).read_text())["config"]).to_dict()
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            raise ConrError(f"{RUN_FILE} is not the run file conr train writes ({type(err).__name__}: {err})",
                            out / RUN_FILE, "resume a folder made by conr train, or start a new run in a new --out") from None
    else:
        base = TrainConfig(data=[], out=str(out)).to_dict()
    base["data"] = [str(d) for d in args.data]
    base["out"] = str(out)
    for name in _OPTIONS:
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    if args.views is not None:
        base["views"] = _min_max("--views", args.views, int, 1, float("inf"), "2:4")
    if args.device is not None:
        base["device"] = args.device
    if args.no_jitter:
        base["jitter"] = False
    if args.crop_scale is not None:
        base["crop_scale"] = _min_max("--crop-scale", args.crop_scale, float, 0.5, 3, "1.05:1.3")
    if args.stage is not None:
        base["stage"] = args.stage
    if args.init is not None:
        base["init"] = args.init
    if args.no_photometric:
        base["photometric"] = False
    for name in _LOSSES:
        value = getattr(args, f"loss_{name}")
        if value is not None:
            base["losses"][name] = value
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from conr.training.loop import train

    cfg = config_from_args(args)
    path = train(cfg, resume=args.resume, log=lambda s: print(s, file=sys.stderr), progress=not args.quiet)
    print(f"weights: {path}")
    return 0
