"""Evaluation: a model's metrics on held-out frames beside the baselines that need no learning.

The frames are `SampleSet` samples without augmentation (the crops rendering uses, the first
`views` sheet views in order). Metrics are computed per frame (conr.training.metrics), then
averaged per character and over all frames.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from conr.errors import ConrError
from conr.models import CharacterSheet, CoNR
from conr.training.baselines import BASELINES
from conr.training.data import Character, SampleKey, SampleSet
from conr.training.metrics import HIGHER_IS_BETTER, METRICS, frame_metrics, parser_metrics


def _pick(n: int, max_frames: int | None) -> list[int]:
    """Positions of all n items, or of `max_frames` spread evenly, so every character keeps a share."""
    if max_frames is not None and max_frames < 1:
        raise ConrError(f"--max-frames {max_frames}: need at least 1")
    if max_frames is None or max_frames >= n:
        return list(range(n))
    return np.linspace(0, n - 1, max_frames).round().astype(int).tolist()


def _check(model: CoNR | None, ds: SampleSet, size: int, views: int) -> None:
    if not 1 <= views <= ds.max_views:
        raise ConrError(f"--views {views}: the characters have {ds.max_views} sheet views at most",
                        hint=f"use 1 to {ds.max_views}")
    if model is not None and (size <= 0 or size % 128):
        # The shader's coarsest level works at 1/32 of the size and downsamples by 4 more.
        raise ConrError(f"--size {size} is not a positive multiple of 128", hint="use 128 or 256")


@torch.inference_mode()
def _encode(model: CoNR, sample: dict[str, torch.Tensor], device: torch.device) -> CharacterSheet:
    # Without augmentation every sample of a character holds the same sheet crops: encode it once.
    return model.encode_sheet(sample["sheet_rgb"].to(device), sample["sheet_alpha"].to(device))


@torch.inference_mode()
def _render(model: CoNR, sheet: CharacterSheet, batch: list[dict[str, torch.Tensor]],
            device: torch.device) -> torch.Tensor:
    """Frames of the sheet's character -> (B, 4, S, S) on the CPU."""
    udp = torch.stack([s["target_udp"] for s in batch]).to(device)  # (B, 4, S, S)
    alpha = torch.stack([s["target_alpha"] for s in batch]).to(device)  # (B, 1, S, S)
    return model.render(sheet, CoNR.target_input(udp, alpha)).float().cpu()


@torch.inference_mode()
def _render_images(model: CoNR, sheet: CharacterSheet, batch: list[dict[str, torch.Tensor]],
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Image mode: the true target images go through the UDP parser, whose UDP poses the render.
    Returns the frames and the parsed UDP, (B, 4, S, S) each, on the CPU."""
    images = torch.stack([s["target_rgba"][:3] for s in batch]).to(device)  # premultiplied RGB
    udp = model.parse_pose(images)
    return model.render(sheet, CoNR.target_input(udp)).float().cpu(), udp.float().cpu()


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def evaluate(model: CoNR | None, characters: Sequence[Character], size: int, views: int,
             device: str | torch.device = "cpu", max_frames: int | None = None, progress: bool = True,
             batch_size: int = 8, *, data: Sequence[str] = (), weights: str | None = None) -> dict:
    """Metrics of `model` (if given) and of every baseline on the characters' frames.

    Returns {"size", "views", "data", "weights", "frames", "characters", "parser" (the UDP parser on the
    target images: udp_l1, visibility_iou; None without a model),
    "overall": {method: {metric: mean over frames}}, "per_character": {name: {method: {metric: ...}}}}.
    `data` and `weights` are only recorded, to say where the numbers came from.
    """
    from tqdm import tqdm

    ds = SampleSet(characters, size, jitter=None, flow=False)
    _check(model, ds, size, views)
    device = torch.device(device)
    if model is not None:
        model = model.eval().to(device)
    methods = (["model", "model_image"] if model is not None else []) + list(BASELINES)

    by_char: dict[int, list[int]] = defaultdict(list)  # character -> positions in ds.items
    for pos in _pick(len(ds.items), max_frames):
        by_char[ds.items[pos][0]].append(pos)
    # scores[character][method][metric]: one value per frame
    scores: dict[int, dict[str, dict[str, list[float]]]] = {
        c: {m: {k: [] for k in METRICS} for m in methods} for c in by_char}

    parser_scores: dict[str, list[float]] = {"udp_l1": [], "visibility_iou": []}
    bar = tqdm(total=sum(map(len, by_char.values())), desc="evaluating", unit="frame", disable=not progress,
               file=sys.stderr)
    for c, positions in by_char.items():
        sheet = None
        for start in range(0, len(positions), batch_size):
            batch = [ds[SampleKey(p, views, None)] for p in positions[start:start + batch_size]]
            truth = torch.stack([s["target_rgba"] for s in batch])  # (B, 4, S, S)
            preds = {name: torch.stack([f(s) for s in batch]) for name, f in BASELINES.items()}
            if model is not None:
                if sheet is None:
                    sheet = _encode(model, batch[0], device)
                preds["model"] = _render(model, sheet, batch, device)
                preds["model_image"], parsed = _render_images(model, sheet, batch, device)
                udp_truth = torch.stack([s["target_udp"] for s in batch])
                for metric, values in parser_metrics(parsed, udp_truth).items():
                    parser_scores[metric].extend(values.tolist())
            for name, pred in preds.items():
                for metric, values in frame_metrics(pred, truth).items():
                    scores[c][name][metric].extend(values.tolist())
            bar.update(len(batch))
    bar.close()

    def summary(per: list[dict[str, dict[str, list[float]]]]) -> dict[str, dict[str, float]]:
        return {m: {k: _mean([v for p in per for v in p[m][k]]) for k in METRICS} for m in methods}

    return {
        "size": size, "views": views, "data": [str(d) for d in data], "weights": weights,
        "frames": sum(map(len, by_char.values())), "characters": len(by_char),
        "overall": summary(list(scores.values())),
        "per_character": {characters[c].name: summary([scores[c]]) for c in by_char},
        "parser": {k: _mean(v) for k, v in parser_scores.items()} if model is not None else None,
    }


def format_table(result: dict) -> str:
    """The overall metrics, a row per method, then right_pixels and l1_inside per character."""
    methods = list(result["overall"])
    arrows = {k: "↑" if HIGHER_IS_BETTER[k] else "↓" for k in METRICS}
    width = max(len(m) for m in methods) + 2
    head = "".join(f"{k + arrows[k]:>14}" for k in METRICS)
    lines = [f"{result['frames']} frames of {result['characters']} characters, size {result['size']}, "
             f"{result['views']} views", "", f"{'method':<{width}}{head}"]
    for m in methods:
        lines.append(f"{m:<{width}}" + "".join(f"{result['overall'][m][k]:>14.4f}" for k in METRICS))
    if result.get("parser"):
        p = result["parser"]
        lines += ["", "model: UDP from the true UDP frames; model_image: UDP parsed from the true target images",
                  f"UDP parser on the target images: XYZ L1 {p['udp_l1']:.4f} where visible, "
                  f"visibility IoU {p['visibility_iou']:.4f}"]

    lines += ["", "per character: right_pixels↑ / l1_inside↓"]
    name_w = max(len(n) for n in result["per_character"]) + 2
    lines.append(f"{'character':<{name_w}}" + "".join(f"{m:>19}" for m in methods))
    for name, per in result["per_character"].items():
        cells = "".join(f" {per[m]['right_pixels']:>9.3f} / {per[m]['l1_inside']:>6.3f}" for m in methods)
        lines.append(f"{name:<{name_w}}{cells}")
    return "\n".join(lines)
