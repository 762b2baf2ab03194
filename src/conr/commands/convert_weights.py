"""`conr convert-weights`: the original release's four .pth files -> one .safetensors file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conr.errors import ConrError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-weights",
        help="convert the original release's weights to a single .safetensors file",
        description="Read udpparsernet.pth, target_pose_encoder.pth, shader.pth and rgbadecodernet.pth "
                    "(safely: tensors only) and write one .safetensors file with the model config in its "
                    "metadata.",
    )
    p.add_argument("original_dir", metavar="ORIGINAL_DIR", help="folder with the four .pth files")
    p.add_argument("out", metavar="OUT.safetensors", help="file to write")
    p.add_argument("--config-json", action="store_true", help="also write config.json beside the file")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.files.io import atomic_write_bytes, check_new_file
    from conr.render.weights import convert_original

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConrError("output must be a .safetensors file", out, "name it e.g. conr-official.safetensors")
    check_new_file(out, args.overwrite, "OUT")
    model = convert_original(args.original_dir, out)
    if args.config_json:
        atomic_write_bytes(out.with_name("config.json"), model.cfg.to_json().encode())
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n / 1e6:.1f} M parameters)", file=sys.stderr)
    return 0
