"""The README's picture of the bundled model: held-out characters, as `conr render` draws them.

    .venv/bin/python docs/make_lookup_figure.py --compare old.safetensors --out docs/images/lookup.png

Rows: held-out characters (`conr synth --seed 900123`, 256 px, never trained on). Columns: the
front sheet view, the ground truth, the bundled model (conr render's defaults), each --compare
model, and copying the front view. Everything over white, at the frames' own size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 premultiplied RGBA -> uint8 RGB over white."""
    rgb = rgba[:, :, :3].astype(np.float32) + (255 - rgba[:, :, 3:4].astype(np.float32))
    return rgb.clip(0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="the model (default: the bundled one)")
    ap.add_argument("--compare", action="append", default=[])
    ap.add_argument("--data", default=None, help="a `conr synth` folder (default: made here, seed 900123)")
    ap.add_argument("--rows", type=int, nargs="+", default=[0, 2, 4], help="which characters")
    ap.add_argument("--out", default="docs/images/lookup.png")
    ap.add_argument("--demo-out", default=None, help="also the README's `conr demo` picture (docs/images/demo.png)")
    ap.add_argument("--styles-out", default=None,
                    help="also the README's picture of one held-out character in every style (docs/images/styles.png)")
    args = ap.parse_args()
    if args.demo_out:
        _demo_figure(Path(args.demo_out))
    if args.styles_out:
        _styles_figure(Path(args.styles_out), args.weights)

    from conr.engine.synth import synthesize
    from conr.files.io import atomic_write_png, read_rgba
    from conr.render.pipeline import PoseSource, Renderer
    from conr.render.preprocess import premultiply
    from conr.training.baselines import copy_front
    from conr.training.data import read_data
    from conr.training.evaluate import _frame_sample, _frame_sheet

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "held"
    if not data.exists():
        synthesize(data, seed=900123, count=6, frames=4, size=256, views=4)
    chars = read_data([data])
    renderers = [Renderer.from_weights(args.weights, device="cpu")]
    renderers += [Renderer.from_weights(w, device="cpu") for w in args.compare]
    rows = []
    for c in args.rows:
        char = chars[c]
        sheet_front = premultiply(read_rgba(char.sheet[0][0]))
        truth = premultiply(read_rgba(char.frames[0][1]))
        tiles = [_over_white(sheet_front), _over_white(truth)]
        for r in renderers:
            sheet = r.load_sheet([img for img, _ in char.sheet])
            frame = next(iter(r.render(sheet, [PoseSource(char.frames[0][0], "udp")])))
            tiles.append(_over_white(frame.rgba))
        copy = copy_front(_frame_sample(_frame_sheet(char, 4), char, 0))
        tiles.append(_over_white((copy.permute(1, 2, 0).numpy() * 255).astype(np.uint8)))
        rows.append(np.concatenate(tiles, axis=1))
    img = np.concatenate(rows, axis=0)
    img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    atomic_write_png(Path(args.out), img)
    print(f"wrote {args.out}: columns front view, truth, model, {', '.join(Path(w).stem for w in args.compare)}, copy")
    return 0


def _over_grey(rgba: np.ndarray) -> np.ndarray:
    """uint8 straight-alpha RGBA -> RGB over mid grey, so a halo or a ragged edge shows."""
    a = rgba[:, :, 3:4].astype(np.float32) / 255
    return (rgba[:, :, :3] * a + 170 * (1 - a)).astype(np.uint8)


def _styles_figure(out: Path, weights: str | None) -> None:
    """One held-out character (seed 900123) in every drawing style. Columns: the front sheet view as
    cut out (over grey), the parser's UDP of it, the ground truth of a pose, the model's frame, copy."""
    from conr.commands.parse import udp_picture
    from conr.engine.styles import STYLES
    from conr.engine.synth import synthesize
    from conr.files.io import atomic_write_png, read_rgba
    from conr.render.pipeline import PoseSource, Renderer
    from conr.render.preprocess import premultiply
    from conr.training.baselines import copy_front
    from conr.training.data import read_data
    from conr.training.evaluate import _frame_sample, _frame_sheet

    renderer = Renderer.from_weights(weights, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in STYLES:
            folder = Path(tmp) / name
            synthesize(folder, seed=900123, count=1, frames=1, size=256, views=4, styles=(name,))
            char = read_data([folder])[0]
            front = read_rgba(char.sheet[0][0])
            udp = udp_picture(renderer.parse_images([front], [name])[0])
            sheet = renderer.load_sheet([img for img, _ in char.sheet])
            frame = next(iter(renderer.render(sheet, [PoseSource(char.frames[0][0], "udp")])))
            copy = copy_front(_frame_sample(_frame_sheet(char, 4), char, 0))
            tiles = [_over_grey(front), _over_white(premultiply(udp)), _over_white(premultiply(read_rgba(char.frames[0][1]))),
                     _over_white(frame.rgba), _over_white((copy.permute(1, 2, 0).numpy() * 255).astype(np.uint8))]
            rows.append(np.concatenate(tiles, axis=1))
    img = np.concatenate(rows, axis=0)
    atomic_write_png(out, np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2))
    print(f"wrote {out}: rows {', '.join(STYLES)}; columns sheet view, parser UDP, truth, model, copy")


def _demo_figure(out: Path) -> None:
    """`conr demo` as a user runs it: the sheet's front and side views, then six of the frames."""
    from conr.demo import make_demo
    from conr.files.io import atomic_write_png, read_frame, read_rgba
    from conr.render.preprocess import premultiply

    with tempfile.TemporaryDirectory() as tmp:
        result = make_demo(Path(tmp) / "demo", device="cpu", progress=False, log=lambda s: None)
        views = [premultiply(read_rgba(result.sheet / f"view_0{k}.png")) for k in (0, 2)]
        frames = [read_frame(result.frames[k]) for k in np.linspace(0, len(result.frames) - 1, 6).round().astype(int)]
    img = np.concatenate([_over_white(t) for t in views + frames], axis=1)
    atomic_write_png(out, np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2))


if __name__ == "__main__":
    sys.exit(main())
