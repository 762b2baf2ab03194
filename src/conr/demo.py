"""`conr demo`: a procedural character, its sheet, a built-in dance, rendered with the bundled model.

    demo/character/            the character (`conr synth` layout): sheet views, UDP frames of the dance
    demo/frames/0.png ...      the rendered RGBA frames (premultiplied, as `conr render` writes them)
    demo/demo.mp4, demo.webm   the dance over white, and with transparency

The folder is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from conr.files.io import atomic_dir, check_new_dir

# Seeds 900000 and above are never trained on: the demo shows a character the model has not seen.
DEFAULT_SEED = 900001


@dataclass
class DemoResult:
    folder: Path
    sheet: Path
    frames: list[Path]
    videos: list[Path]


def make_demo(out: str | Path, seed: int = DEFAULT_SEED, frames: int = 48, fps: float = 24.0,
              device: str = "auto", overwrite: bool = False, progress: bool = True,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> DemoResult:
    from tqdm import tqdm

    from conr.engine.synth import synthesize
    from conr.render.outputs import encode_videos, render_to_folder
    from conr.render.pipeline import Renderer, find_poses
    from conr.render.weights import BUNDLED

    out = Path(out)
    check_new_dir(out, overwrite)
    renderer = Renderer.from_weights(None, device=device)
    log(f"weights: the bundled model ({BUNDLED.name}) on {renderer.device}")
    with atomic_dir(out) as tmp:
        log(f"character: procedural, seed {seed}; sheet of 4 views and {frames} frames of a dance")
        synthesize(tmp / "character", seed=seed, count=1, motion="dance", frames=frames, size=256, views=4,
                   targets=False)
        char = tmp / "character" / "char_0000"
        sheet = renderer.load_sheet(char / "sheet")
        poses = find_poses(char / "udp")
        bar = tqdm(total=len(poses), desc="rendering", unit="frame", disable=not progress)
        written = render_to_folder(renderer, sheet, poses, tmp / "frames", on_frame=lambda: bar.update(1))
        bar.close()
        encode_videos(written, [tmp / "demo.mp4", tmp / "demo.webm"], fps)
    char = out / "character" / "char_0000"
    return DemoResult(out, char / "sheet", [out / "frames" / p.name for p in written],
                      [out / "demo.mp4", out / "demo.webm"])
