"""Where a lookup-family model's wrong pixels are, and how many the UDP parser costs.

    .venv/bin/python benchmarks/bench_errors.py --data DIR [--data DIR ...] [--weights W]

Every target frame of the `conr synth` folders is drawn as `conr render` draws it (its defaults, the
frames' own size), twice: with the sheet views read by the model's UDP parser, as always, and with
the sheets' true UDP given instead (what no user has: the parser's share of the error). The true
silhouette (alpha > 0.5) is split into regions, and for each the table prints its share of the
silhouette, the share of its pixels that are wrong (a channel over white more than 0.1 off, the
*right pixels* metric) and the right pixels it costs:

- outline: outside the target's UDP (the outline and the antialiased edge the truth draws there);
- edge: within 2 px inside the silhouette of the UDP;
- overlap: within 2 px of a place where neighbouring pixels show body points more than `--jump`
  apart (one part before another);
- interior: the rest. Its wrong pixels are split once more: *shading*, where one brightness factor
  explains the error (every channel's ratio to the truth within 0.15 of the others), and *colour*.

Use validation characters (never seeds >= 900000, which are held out for the final numbers only).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor

from conr.render.pipeline import PoseSource, Renderer
from conr.render.weights import load_model
from conr.training.data import Character, read_data
from conr.training.evaluate import _frame_sample, _frame_sheet, true_sheet_views
from conr.training.metrics import RIGHT_TOLERANCE, SILHOUETTE, over_white

REGIONS = ("outline", "edge", "overlap", "interior")


def _grow(mask: Tensor, radius: int) -> Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * radius + 1, 1, radius)[0, 0] > 0


def regions(udp: Tensor, jump: float) -> dict[str, Tensor]:
    """(4, H, W) target UDP -> the regions above, boolean (H, W) each, disjoint within the UDP."""
    vis = udp[3] > SILHOUETTE
    apart = torch.zeros_like(vis)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        far = ((udp[:3] - torch.roll(udp[:3], (dy, dx), (1, 2))).abs().amax(0) > jump)
        far &= vis & torch.roll(vis, (dy, dx), (0, 1))
        apart |= far | torch.roll(far, (-dy, -dx), (0, 1))
    overlap = _grow(apart, 2) & vis
    edge = _grow(~vis, 2) & vis & ~overlap
    return {"outline": ~vis, "edge": edge, "overlap": overlap, "interior": vis & ~edge & ~overlap}


def true_sheet(renderer: Renderer, char: Character):
    """The character's sheet encoded as rendering encodes it, with the views' true UDP."""
    rgb, alpha, udp = true_sheet_views(renderer, char, len(char.sheet))
    with torch.inference_mode():
        return renderer.model.encode_sheet(rgb, alpha, udp=udp.to(renderer.device))


def measure(renderer: Renderer, characters: list[Character], exact: bool, jump: float) -> dict[str, float]:
    count: dict[str, float] = defaultdict(float)
    for char in characters:
        sheet = true_sheet(renderer, char) if exact else renderer.load_sheet([img for img, _ in char.sheet])
        views = _frame_sheet(char, len(char.sheet))
        poses = [PoseSource(udp, "udp") for udp, _ in char.frames]
        for f, frame in enumerate(renderer.render(sheet, poses)):
            sample = _frame_sample(views, char, f)
            truth = over_white(sample["target_rgba"][None])[0]
            pred = over_white(torch.from_numpy(frame.rgba).permute(2, 0, 1)[None].float() / 255)[0]
            inside = sample["target_rgba"][3] > SILHOUETTE
            wrong = ((pred - truth).abs().amax(0) > RIGHT_TOLERANCE) & inside
            count["silhouette"] += float(inside.sum())
            for name, mask in regions(sample["target_udp"], jump).items():
                count[name] += float((mask & inside).sum())
                count[name + " wrong"] += float((mask & wrong).sum())
                if name == "interior":
                    ratio = pred[:, mask & wrong] / truth[:, mask & wrong].clamp_min(0.02)
                    gain = (ratio.amax(0) - ratio.amin(0)) < 0.15
                    count["shading"] += float(gain.sum())
                    count["colour"] += float((~gain).sum())
    total = count["silhouette"]
    return {k: v / total for k, v in count.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="a `conr synth` folder; repeat for several")
    ap.add_argument("--weights", default=None, help="a lookup-family model (default: the bundled one)")
    ap.add_argument("--jump", type=float, default=0.08, help="UDP distance between neighbours that marks an overlap")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    model = load_model(args.weights).eval()
    if model.cfg.lookup is None:
        print("bench_errors: the weights are not of the lookup family (no matching to measure)", file=sys.stderr)
        return 2
    renderer = Renderer(model, device="cpu")
    characters = read_data(args.data)
    rows = {"the parser's sheet UDP": measure(renderer, characters, False, args.jump),
            "the sheets' true UDP": measure(renderer, characters, True, args.jump)}
    frames = sum(len(c.frames) for c in characters)
    print(f"{len(characters)} characters, {frames} frames; shares of the true silhouette")
    head = f"{'sheet read with':<24}{'right px':>9}" + "".join(f"{r:>22}" for r in REGIONS) + f"{'shading':>9}{'colour':>8}"
    print(head)
    print(" " * 33 + "".join(f"{'share  wrong   lost':>22}" for _ in REGIONS))
    print("-" * len(head))
    for name, c in rows.items():
        lost = sum(c[r + " wrong"] for r in REGIONS)
        cells = "".join(f"{c[r]:>10.3f}{c[r + ' wrong'] / max(c[r], 1e-9):>6.2f}{c[r + ' wrong']:>6.3f}"
                        for r in REGIONS)
        print(f"{name:<24}{1 - lost:>9.3f}{cells}{c['shading']:>9.3f}{c['colour']:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
