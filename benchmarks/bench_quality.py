"""Quality as a user gets it: held-out characters rendered through `conr render`'s defaults, compared
with the ground truth at the frames' own size, beside the baselines, an ablation and the old model.

    .venv/bin/python benchmarks/bench_quality.py                        # the bundled model, 256 and 512 px
    .venv/bin/python benchmarks/bench_quality.py --weights RUN --compare old.safetensors --sizes 256

Data (made in --data-root, default a temporary folder, by `conr synth`; seeds >= 900000 are never
trained on): 6 characters of seed 900123 with 4 random poses each and 4 sheet views, drawn in the
styles the bundled model trained on (TRAINED_STYLES), at every size; the same 6 characters drawn in
the styles it never saw (HELD_OUT_STYLES: soft shading, pastel), at 256 px; and a 48-frame dance of
character 900001 at 256 px for temporal stability.

Rows:
- model: the weights as `conr render` runs them (its default size);
- ablation of the lookup family: `lookup` (the trained parser, explicit matching, the nearest view's
  pixel, nothing learned after the parser), `+ view weights` (the learned view weights, and flow
  corrections where the model has them, no head), `+ line head` (those and the outline the line
  head reads from the sheet, where the model has one), the full model (+ residual colour, shading
  gain, the lines inside the figure);
- --compare: other weights (e.g. the CINN model bundled before);
- copy (front view into the target's box), flat (the silhouette in the sheet's mean colour), udp_nn
  (colours through the sheets' *exact* UDP, which no model sees).

Columns: right pixels (share of the true silhouette whose colour over white is within 0.1 in every
channel), SSIM, L1, L1 inside the silhouette; the parser's UDP error on the sheet views (XYZ L1
where visible, in the crops rendering reads them at); then flicker on the dance (colour change between
consecutive frames where the body point stays put, over the truth's); frames/s of the model on
this machine (rendering from UDP frames at 256 px, sheet encoded once).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


from conr.engine.styles import HELD_OUT_STYLES, TRAINED_STYLES  # noqa: E402


def _data(root: Path, sizes: list[int]) -> dict[str, Path]:
    from conr.engine.synth import synthesize

    out = {}
    sets = [(f"held_{size}", size, TRAINED_STYLES) for size in sizes] + [("styles_256", 256, HELD_OUT_STYLES)]
    for key, size, styles in sets:
        folder = root / key
        if not (folder / "manifest.json").is_file():
            synthesize(folder, seed=900123, count=6, frames=4, size=size, views=4, styles=styles)
        out[key] = folder
    dance = root / "dance_256"
    if not (dance / "manifest.json").is_file():
        synthesize(dance, seed=900001, count=1, motion="dance", frames=48, size=256, views=4, styles=TRAINED_STYLES)
    out["dance"] = dance
    return out


def _ablation(model):
    """The lookup family without what was learned after the parser, and without its head."""
    from conr.models import CoNR

    plain = CoNR(model.cfg).eval()
    plain.udpparsernet.load_state_dict(model.udpparsernet.state_dict())
    plain.shader.lines = None  # untrained, the head draws no outline; the line head would
    no_head = copy.deepcopy(model)
    no_head.shader.head[-1].load_state_dict(plain.shader.head[-1].state_dict())
    lined = copy.deepcopy(no_head) if model.shader.lines is not None else None
    no_head.shader.lines = None
    rows = {"lookup": plain, "+ view weights": no_head}
    return rows if lined is None else {**rows, "+ line head": lined}  # and the sheet's outline, no head


def _speed(renderer, folder: Path, frames: int = 8) -> float:
    from conr.render.pipeline import find_poses
    from conr.training.data import read_data

    char = read_data([folder])[0]
    sheet = renderer.load_sheet([img for img, _ in char.sheet])
    poses = find_poses([u for u, _ in char.frames][:frames])
    for _ in renderer.render(sheet, poses[:1]):  # warm-up
        pass
    start = time.perf_counter()
    n = sum(1 for _ in renderer.render(sheet, poses))
    return n / (time.perf_counter() - start)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="the model (default: the bundled one)")
    ap.add_argument("--compare", action="append", default=[], help="other weights to put beside it")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--data-root", default=None, help="where the held-out data is made (and reused)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from conr.render.pipeline import Renderer
    from conr.training.data import read_data
    from conr.training.evaluate import evaluate_frames
    from conr.render.weights import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data_root or tempfile.mkdtemp(prefix="conr-quality-"))
    data = _data(root, args.sizes)
    main_model = load_model(args.weights)
    models = {"model": main_model}
    if main_model.cfg.family == "lookup":
        models.update(_ablation(main_model))
    for path in args.compare:
        models[Path(path).stem] = load_model(path)

    results: dict[str, dict] = {}
    for key in [f"held_{s}" for s in args.sizes] + ["styles_256"]:
        chars = read_data([data[key]])
        table: dict[str, dict] = {}
        for name, model in models.items():
            r = evaluate_frames(Renderer(model, device="cpu"), chars, progress=False, images=True,
                                baselines=("copy", "flat", "udp_nn") if name == "model" else ())
            table[name] = {**r["overall"]["model"], "sheet_udp_l1": r["parser"]["sheet_udp_l1"]}
            if name == "model":
                table.update({b: r["overall"][b] for b in ("copy", "flat", "udp_nn")})
        results[key] = table
    dance = read_data([data["dance"]])
    flicker: dict[str, float] = {}
    speed: dict[str, float] = {}
    for name, model in models.items():
        r = evaluate_frames(Renderer(model, device="cpu"), dance, progress=False, stability=True,
                            baselines=("copy", "udp_nn") if name == "model" else ())
        flicker[name] = r["stability"]["model"]
        if name == "model":
            flicker.update({b: r["stability"][b] for b in ("copy", "udp_nn")})
        speed[name] = _speed(Renderer(model, device="cpu"), data["dance"])

    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; data in {root}")
    for key, table in results.items():
        styles = ", ".join(HELD_OUT_STYLES if key.startswith("styles") else TRAINED_STYLES)
        print(f"\n{key}: 6 held-out characters (seed 900123), 4 poses each, at {key.split('_')[1]} px, "
              f"styles {styles}")
        head = (f"{'method':<24}{'right px':>10}{'SSIM':>8}{'L1':>9}{'L1 in':>8}{'sheet UDP':>11}{'flicker':>9}"
                f"{'frames/s':>10}")
        print(head)
        print("-" * len(head))
        for name, m in table.items():
            fl = f"{flicker[name]:.2f}" if name in flicker and key.startswith("held_256") else ""
            fps = f"{speed[name]:.2f}" if name in speed and key.startswith("held_256") else ""
            udp = f"{m['sheet_udp_l1']:.4f}" if "sheet_udp_l1" in m else ""
            print(f"{name:<24}{m['right_pixels']:>10.3f}{m['ssim']:>8.3f}{m['l1_rgb']:>9.4f}{m['l1_inside']:>8.3f}"
                  f"{udp:>11}{fl:>9}{fps:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps({"quality": results, "flicker": flicker, "frames_per_s": speed},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
