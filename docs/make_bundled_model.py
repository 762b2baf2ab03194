"""Make the bundled model: a `conr train` run's weights in float16, with their model card.

    .venv/bin/python docs/make_bundled_model.py RUN --card card.json --out src/conr/assets/NAME.safetensors

The card (JSON: name, data, training, hardware, wall time...) is completed with the architecture,
the step and held-out metrics measured here as a user gets them (`conr eval` at the frames' own
size, through `conr render`'s defaults) on `conr synth --seed 900123 --characters 6
--poses-per-character 4 --sheet-views 4` at 256 px, in the styles it trained on and (the same
characters) in the held-out styles (conr.engine.styles.HELD_OUT_STYLES), and stored in the file's metadata
(`model_card`). The weights are evaluated after the float16 round trip, as they ship.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a `conr train` run folder or a .safetensors file")
    ap.add_argument("--card", required=True, help="JSON file with what the run cannot say about itself")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None, help="held-out data to reuse (made here when not given)")
    args = ap.parse_args()

    from conr.engine.styles import HELD_OUT_STYLES, TRAINED_STYLES
    from conr.engine.synth import synthesize
    from conr.render.pipeline import Renderer
    from conr.training.data import read_data
    from conr.training.evaluate import evaluate_frames
    from conr.render.weights import load_model, save_safetensors, training_meta

    model = load_model(args.run)
    meta = training_meta(args.run)
    half = load_model(args.run)
    for p in half.parameters():
        p.data = p.data.half()
    card = json.loads(Path(args.card).read_text())
    card.update({"preset": meta.get("preset"), "image_size": model.cfg.image_size, "step": meta.get("step"),
                 "dtype": "float16 (loaded as float32)"})
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "heldout"
    if not data.exists():
        synthesize(data, seed=900123, count=6, frames=4, size=256, views=4, styles=TRAINED_STYLES)
    restyled = data.parent / f"{data.name}_styles"
    if not restyled.exists():
        synthesize(restyled, seed=900123, count=6, frames=4, size=256, views=4, styles=HELD_OUT_STYLES)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_safetensors(half, path)
        shipped = load_model(path)  # float32 again, with float16's rounding
    result = evaluate_frames(Renderer(shipped, device="cpu"), read_data([data]), progress=False, images=True,
                             baselines=("copy", "flat", "udp_nn"))
    styles = evaluate_frames(Renderer(shipped, device="cpu"), read_data([restyled]), progress=False, images=True,
                             baselines=("copy", "udp_nn"))
    held = "conr synth --seed 900123 --characters 6 --poses-per-character 4 --sheet-views 4 --size 256 --styles"
    card["heldout"] = {
        "data": f"{held} {','.join(TRAINED_STYLES)}",
        "measured": "conr eval at the frames' own size (256 px), conr render's defaults",
        **{k: result[k] for k in ("frame_size", "views", "frames", "overall", "parser")},
    }
    card["heldout_styles"] = {
        "data": f"{held} {','.join(HELD_OUT_STYLES)} (the same characters in styles never trained on)",
        **{k: styles[k] for k in ("overall", "parser")},
    }
    save_safetensors(half, args.out, {"model_card": json.dumps(card)})
    print(json.dumps(card["heldout"]["overall"], indent=1))
    print(f"parser: {card['heldout']['parser']}")
    print("held-out styles:", json.dumps(card["heldout_styles"]["overall"], indent=1), card["heldout_styles"]["parser"])
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
