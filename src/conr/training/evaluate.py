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


# ---------------------------------------------------------------- at the frames' own size


def _udp_tensor(path) -> torch.Tensor:
    from conr.files.udp import read_udp

    return torch.from_numpy(np.ascontiguousarray(read_udp(path).transpose(2, 0, 1)))


def _frame_sheet(char: Character, views: int) -> dict[str, torch.Tensor]:
    """The sheet part of a frame-size sample (read once per character): images and exact UDP, no crop."""
    from conr.files.io import read_rgba
    from conr.render.preprocess import premultiply, to_unit

    sheet = torch.stack([to_unit(premultiply(read_rgba(img))) for img, _ in char.sheet[:views]])
    return {"sheet_rgb": sheet[:, :3], "sheet_alpha": sheet[:, 3:4],
            "sheet_udp": torch.stack([_udp_tensor(u) for _, u in char.sheet[:views]])}


def _frame_sample(sheet: dict[str, torch.Tensor], char: Character, frame: int) -> dict[str, torch.Tensor]:
    """A sample at the frames' own size, with no crop: what the baselines see beside `conr render`."""
    from conr.files.io import read_rgba
    from conr.render.preprocess import premultiply, to_unit

    udp_path, rgba_path = char.frames[frame]
    target_udp = _udp_tensor(udp_path)
    if tuple(sheet["sheet_rgb"].shape[-2:]) != tuple(target_udp.shape[-2:]):
        raise ConrError("the sheet views and frames differ in size, so the baselines cannot be drawn at frame "
                        "size", rgba_path, "evaluate data made by `conr synth` (one size for all images)")
    return {**sheet, "target_udp": target_udp, "target_alpha": target_udp[3:4],
            "target_rgba": to_unit(premultiply(read_rgba(rgba_path, what="target image")))}


def evaluate_frames(renderer, characters: Sequence[Character], views: int | None = None,
                    baselines: Sequence[str] = ("copy", "udp_nn"), max_frames: int | None = None,
                    progress: bool = True, images: bool = False, stability: bool = False) -> dict:
    """What a user gets: every target frame rendered by `renderer` (a conr.render.pipeline.Renderer, as
    `conr render` runs it) from the character's sheet images and UDP frames, compared with the
    ground truth at the frames' own size, beside baselines drawn at the same size. With `stability`
    (the frames are a motion, not independent poses), also their temporal stability: the colour change
    between consecutive frames where the body stays put, over the truth's (metrics.temporal_change).
    With `images`, also "model_image": the target images given as pose images (the parser reads
    them), and the parser's UDP error on the sheet views and on the target images.

    Returns {"size" (the renderer's), "frame_size", "views", "frames", "characters",
    "overall": {method: {metric: mean}}, "per_character": {...}, "stability": {method: ratio},
    "parser": {"sheet_udp_l1", "sheet_visibility_iou", "udp_l1", "visibility_iou"} (with `images`)}."""
    from tqdm import tqdm

    from conr.render.pipeline import PoseSource
    from conr.training.metrics import temporal_change

    views = views or min(len(c.sheet) for c in characters)
    methods = ["model", *(["model_image"] if images else []), *baselines]
    parser_scores: dict[str, list[float]] = defaultdict(list)
    by_char = {c: list(range(len(ch.frames))) for c, ch in enumerate(characters)}
    if max_frames is not None:
        by_char = defaultdict(list)
        flat = [(c, f) for c, ch in enumerate(characters) for f in range(len(ch.frames))]
        for pos in _pick(len(flat), max_frames):
            by_char[flat[pos][0]].append(flat[pos][1])
    scores = {c: {m: {k: [] for k in METRICS} for m in methods} for c in by_char}
    changes: dict[str, list[float]] = {m: [] for m in [*methods, "truth"]}
    bar = tqdm(total=sum(map(len, by_char.values())), desc="evaluating", unit="frame", disable=not progress,
               file=sys.stderr)
    frame_size = None
    for c, frames in by_char.items():
        char = characters[c]
        sheet = renderer.load_sheet([img for img, _ in char.sheet[:views]])
        sheet_images = _frame_sheet(char, views)
        poses = [PoseSource(char.frames[f][0], "udp") for f in frames]
        rendered_images = iter(())
        if images:
            rendered_images = renderer.render(sheet, [PoseSource(char.frames[f][1], "image") for f in frames],
                                              save_udp=True)
            for name, values in _sheet_parser_metrics(renderer, char, views).items():
                parser_scores[name].extend(values)
        previous: dict[str, torch.Tensor] = {}
        prev_udp, prev_f = None, None
        for f, rendered in zip(frames, renderer.render(sheet, poses)):
            sample = _frame_sample(sheet_images, char, f)
            truth = sample["target_rgba"][None]
            frame_size = tuple(truth.shape[-2:])

            def unit(frame) -> torch.Tensor:
                return torch.from_numpy(frame.rgba).permute(2, 0, 1)[None].float() / 255.0

            preds = {"model": unit(rendered)}
            if images:
                from_image = next(rendered_images)
                preds["model_image"] = unit(from_image)
                parsed = torch.from_numpy(from_image.udp).permute(2, 0, 1)[None]
                for name, values in parser_metrics(parsed, sample["target_udp"][None]).items():
                    parser_scores[name].extend(values.tolist())
            preds.update({name: BASELINES[name](sample)[None] for name in baselines})
            for name, pred in preds.items():
                for metric, values in frame_metrics(pred, truth).items():
                    scores[c][name][metric].extend(values.tolist())
            now = {**preds, "truth": truth}
            if stability and prev_udp is not None and prev_f == f - 1:
                for name, pred in now.items():
                    value = temporal_change(previous[name], pred, prev_udp[None], sample["target_udp"][None])
                    if value is not None:
                        changes[name].append(value)
            previous, prev_udp, prev_f = now, sample["target_udp"], f
            bar.update(1)
    bar.close()

    def summary(per: list[dict[str, dict[str, list[float]]]]) -> dict[str, dict[str, float]]:
        return {m: {k: _mean([v for p in per for v in p[m][k]]) for k in METRICS} for m in methods}

    stability = None
    if changes["truth"]:
        truth_change = _mean(changes["truth"])
        stability = {m: _mean(changes[m]) / max(truth_change, 1e-9) for m in methods}
    return {
        "size": renderer.size, "frame_size": list(frame_size or ()), "views": views,
        "frames": sum(map(len, by_char.values())), "characters": len(by_char),
        "overall": summary(list(scores.values())),
        "per_character": {characters[c].name: summary([scores[c]]) for c in by_char},
        "stability": stability,
        "parser": {k: _mean(v) for k, v in parser_scores.items()} if images else None,
    }


def true_sheet_views(renderer, char: Character, views: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first `views` sheet views prepared as `renderer` prepares them (its sheet size and crops):
    premultiplied RGB (V, 3, S, S) and alpha (V, 1, S, S) on the renderer's device, and the views'
    true UDP in the same crops (V, 4, S, S), on the CPU."""
    from conr.files.io import read_rgba
    from conr.render.preprocess import prepare_image, prepare_udp
    from conr.files.udp import read_udp

    imgs = [read_rgba(img) for img, _ in char.sheet[:views]]
    size = renderer.sheet_size(imgs)
    prepared = [prepare_image(i, size) for i in imgs]
    labels = torch.stack([prepare_udp(read_udp(u), size, p.crop).label for p, (_, u) in zip(prepared, char.sheet)])
    rgb = torch.stack([p.rgb for p in prepared]).to(renderer.device)
    alpha = torch.stack([p.alpha for p in prepared]).to(renderer.device)
    return rgb, alpha, labels


@torch.inference_mode()
def _sheet_parser_metrics(renderer, char: Character, views: int) -> dict[str, list[float]]:
    """The UDP parser on the sheet views, in the crops rendering reads them at (what the lookup family
    matches through): XYZ L1 where visible and visibility IoU, one value per view."""
    rgb, _, labels = true_sheet_views(renderer, char, views)
    udp = renderer.model.parse_sheet(rgb).float().cpu()
    scores = parser_metrics(udp, labels)
    return {"sheet_udp_l1": scores["udp_l1"].tolist(), "sheet_visibility_iou": scores["visibility_iou"].tolist()}


def format_frames_table(result: dict) -> str:
    methods = list(result["overall"])
    shown = ("right_pixels", "ssim", "l1_rgb", "l1_inside")
    arrows = {k: "↑" if HIGHER_IS_BETTER[k] else "↓" for k in shown}
    size = "x".join(map(str, result["frame_size"]))
    lines = [f"{result['frames']} frames of {result['characters']} characters at their own size ({size}), "
             f"{result['views']} views; the model runs at {result['size']} px", "",
             f"{'method':<12}" + "".join(f"{k + arrows[k]:>15}" for k in shown)
             + ("   change/truth" if result.get("stability") else "")]
    for m in methods:
        row = f"{m:<12}" + "".join(f"{result['overall'][m][k]:>15.4f}" for k in shown)
        if result.get("stability"):
            row += f"{result['stability'][m]:>15.2f}"
        lines.append(row)
    if result.get("parser"):
        p = result["parser"]
        lines += ["", "model: from the UDP frames; model_image: from the target images (the parser reads them)",
                  f"UDP parser, XYZ L1 where visible / visibility IoU: sheet views {p['sheet_udp_l1']:.4f} / "
                  f"{p['sheet_visibility_iou']:.4f}, target images {p['udp_l1']:.4f} / {p['visibility_iou']:.4f}"]
    return "\n".join(lines)
