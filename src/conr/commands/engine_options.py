"""Options shared by the 3D engine's commands (`conr poses`, `conr synth`)."""

from __future__ import annotations

import argparse

from conr.commands.options import ranged


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shading", choices=("cel", "flat"), default="cel",
                   help="RGBA images: two-tone cel shading (default) or flat base colours")
    p.add_argument("--no-outline", action="store_true", help="RGBA images without the ink outline")
    p.add_argument("--threads", type=ranged(int, 1, 256), default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is steadier on a busy machine)")
    p.add_argument("--device", default="cpu", help="torch device for rendering, e.g. cuda (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
