"""Make docs/images/motion.png: video frames, the UDP of the motion `conr motion` found in them (on
another character), and that character rendered by the bundled model.

    .venv/bin/python docs/make_motion_figure.py [OUT.png]

The "video" is a procedural character dancing, drawn by conr's cel renderer; the motion is
retargeted onto the held-out procedural character 900004, whose sheet the bundled model renders.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from conr.cli import main as conr
from conr.engine.synth import synthesize
from conr.engine.udp import udp_picture
from conr.files.io import atomic_write_png, read_frame
from conr.files.video import VideoWriter

FRAMES, SHOWN, TILE = 48, (8, 16, 28, 40), 256


def _tile(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "person", seed=3, count=1, motion="dance", frames=FRAMES, size=512, views=1, targets=True)
        video = root / "person.mp4"
        shown = []
        with VideoWriter(video, fps=30, background=(235, 235, 220), premultiplied=False) as w:
            for k in range(FRAMES):
                rgba = read_frame(root / "person" / "char_0000" / "target" / f"{k}.png")
                w.write(rgba)
                a = rgba[..., 3:] / 255
                shown.append((rgba[..., :3] * a + np.array([235, 235, 220]) * (1 - a)).astype(np.uint8))
        assert conr(["motion", str(video), "--out", str(root / "dance.bvh"), "--quiet"]) == 0
        assert conr(["poses", "--procedural", "900004", str(root / "dance.bvh"), "-o", str(root / "poses"),
                     "--size", "256", "--sheet", "4"]) == 0
        assert conr(["render", "--sheets", str(root / "poses" / "sheet"), "--poses", str(root / "poses"),
                     "--out", str(root / "render"), "--quiet"]) == 0
        rows = [[], [], []]
        for k in SHOWN:
            rows[0].append(_tile(shown[k]))
            rows[1].append(_tile(udp_picture(np.load(root / "poses" / f"{k}.npz")["i"])))
            r = read_frame(root / "render" / f"{k}.png").astype(np.float32)
            rows[2].append(_tile((r[..., :3] + 255 * (1 - r[..., 3:] / 255)).clip(0, 255).astype(np.uint8)))
        grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
        atomic_write_png(out, np.dstack([grid, np.full(grid.shape[:2], 255, np.uint8)]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images" / "motion.png")
