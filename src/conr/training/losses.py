"""The training objective: every term is averaged per sample first, then over the batch, so that
N processes with B/N samples each compute the same gradient as one process with B samples."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from conr.training.metrics import RIGHT_TOLERANCE, SILHOUETTE, over_white

_EPS = 1e-6


@dataclass(frozen=True)
class LossWeights:
    rgba: float = 1.0  # L1 on the rendered premultiplied RGBA
    alpha: float = 0.5  # binary cross-entropy on its alpha: guards against the all-transparent collapse
    parser: float = 1.0  # UDP parser: L1 on visible XYZ + BCE on visibility, sheet views and targets
    parser_targets: float = 1.0  # the target images' share of it (the lookup family matches through the sheets')
    flow: float = 0.1  # the shader's per-view flows against the UDP correspondences, every level
    warp: float = 1.0  # L1 of the views' fused warped RGBA (the shader's last warp) against the truth
    ssim: float = 0.0  # 1 - SSIM of the RGB over white: structure (edges, patterns), needs no weights
    right: float = 0.0  # a soft count of the silhouette's wrong pixels (right_loss): the "right pixels" metric
    lines: float = 0.0  # the line head's outline width and colour against the manifest's (line_loss)

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(LossWeights)]


def _per_sample(x: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of x (N, ...) per sample, over the pixels where weight > 0 (all if None): (N,)."""
    if weight is None:
        return x.flatten(1).mean(1)
    weight = weight.expand_as(x)
    return (x * weight).flatten(1).sum(1) / (weight.flatten(1).sum(1) + _EPS)


def _bce(p: Tensor, target: Tensor) -> Tensor:
    # Straight-through clamp: the value stays a probability, the gradient still flows outside [0, 1].
    q = p + (p.clamp(1e-4, 1 - 1e-4) - p).detach()
    return -(target * torch.log(q) + (1 - target) * torch.log(1 - q))


def _visibility_loss(p: Tensor, target: Tensor, eps: float = 1e-4) -> Tensor:
    """BCE of the parser's unclamped visibility (which rendering clamps to [0, 1]): no gradient once a
    pixel is past the clamp on the right side (the straight-through `_bce` kept pushing those, all of
    them, for ever, and fine-tuning drifted), a linear pull back where it is past it on the wrong side."""
    q = p.clamp(eps, 1 - eps)
    bce = -(target * torch.log(q) + (1 - target) * torch.log(1 - q))
    wrong = target * F.relu(eps - p) + (1 - target) * F.relu(p - (1 - eps))
    return bce + wrong


def parser_loss(raw: Tensor, label: Tensor) -> Tensor:
    """raw (N, 4, H, W) the parser's unclamped output, label (N, 4, H, W) -> (N,): L1 on XYZ where the
    body is visible plus BCE on visibility."""
    vis = label[:, 3:4]
    xyz = _per_sample((raw[:, :3] - label[:, :3]).abs(), vis)
    return xyz + _per_sample(_visibility_loss(raw[:, 3:4], vis))


def flow_loss(flows: list[Tensor], truth: Tensor, cap: float | None = None) -> Tensor:
    """flows: each level's (B, V, 2, h, w) flow in pixels of its size; truth (B, V, 3, S, S): the
    correspondence flow in pixels of S and where it is valid. L1 in each level's pixels, mean over
    levels: coarse levels learn where the body parts are, fine ones where each pixel goes. `cap`
    (pixels of S) bounds each pixel's error: farther than a shader can move a match is no lesson. -> (B,)"""
    b, v, _, s, _ = truth.shape
    t = truth.flatten(0, 1)
    total = truth.new_zeros(b)
    for flow in flows:
        h = flow.shape[-1]
        k = s // h
        valid = F.avg_pool2d(t[:, 2:3], k) if k > 1 else t[:, 2:3]
        target = (F.avg_pool2d(t[:, :2], k) if k > 1 else t[:, :2]) / valid.clamp_min(_EPS) / k
        err = (flow.flatten(0, 1).float() - target).abs().sum(1, keepdim=True)
        if cap is not None:
            err = err.clamp(max=cap * h / s)
        mask = (valid > 0.5).float()
        per_view = (err * mask).flatten(1).sum(1).view(b, v)
        count = mask.flatten(1).sum(1).view(b, v)
        total = total + per_view.sum(1) / (count.sum(1) + _EPS)
    return total / max(len(flows), 1)


def ssim_map(x: Tensor, y: Tensor, window: int = 7) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a uniform window, per pixel: (N, C, H, W)."""
    pad = window // 2
    mu = lambda t: F.avg_pool2d(F.pad(t, [pad] * 4, mode="replicate"), window, 1)  # noqa: E731
    mx, my = mu(x), mu(y)
    sxx, syy, sxy = mu(x * x) - mx * mx, mu(y * y) - my * my, mu(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def right_loss(pred: Tensor, truth: Tensor) -> Tensor:
    """A smooth count of the wrong pixels (N,): per pixel of the true silhouette, 1 - exp(-(e / t)^2)
    of its largest channel error over white e, t the metric's tolerance. L1 and SSIM are content with a
    colour between two candidates (a blend of a lit and a shadowed view, a half-way shading gain),
    which is wrong in both; this term is not, and it lets go of pixels that are far off either way."""
    err = (over_white(pred) - over_white(truth)).abs().amax(1, keepdim=True)
    wrong = 1 - torch.exp(-(err / RIGHT_TOLERANCE) ** 2)
    return _per_sample(wrong, (truth[:, 3:4] > SILHOUETTE).float())


def line_loss(width: Tensor, colour: Tensor, outline: Tensor) -> Tensor:
    """(B,) cross-entropy of the line head's width weights (B, W) against the true width rounded to
    half a pixel, plus the L1 of its colour (B, 3) where there is a line; outline (B, 4) is the
    sample's (width px, r, g, b), width -1 where the data does not say (no loss)."""
    known = outline[:, 0] >= 0
    target = torch.round(2 * outline[:, 0]).clamp(0, width.shape[1] - 1).long()
    target = torch.where(outline[:, 0] > 0, target.clamp_min(1), target)  # a thin line is still a line
    ce = -torch.log(width.clamp_min(1e-6).gather(1, target.clamp_min(0)[:, None]))[:, 0]
    l1 = (colour - outline[:, 1:4]).abs().mean(1) * (outline[:, 0] > 0)
    return (ce + l1) * known


def training_loss(weights: LossWeights, out: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every term per sample (B,) and their weighted sum "total"; `out` holds the model's outputs
    (see `conr.training.step.forward`)."""
    truth = batch["target_rgba"]
    b, v = batch["sheet_udp"].shape[:2]
    terms: dict[str, Tensor] = {}
    if "rgba" in out:  # not when the parser is trained alone
        rgba = out["rgba"].float()
        terms["rgba"] = _per_sample((rgba - truth).abs())
        terms["alpha"] = _per_sample(_bce(rgba[:, 3:4], truth[:, 3:4]))
        if "flow" in batch:
            terms["flow"] = flow_loss(out["flows"], batch["flow"], out.get("flow_cap"))
        if "warped" in out:
            terms["warp"] = _per_sample((out["warped"].float() - truth).abs())
        if weights.ssim > 0:
            terms["ssim"] = 1 - _per_sample(ssim_map(over_white(rgba), over_white(truth)))
        if weights.right > 0:
            terms["right"] = right_loss(rgba, truth)
    if "line_width" in out and "outline" in batch and (weights.lines > 0 or "rgba" not in out):
        terms["lines"] = line_loss(out["line_width"].float(), out["line_colour"].float(), batch["outline"].float())
    if "sheet_udp" in out:
        sheet = parser_loss(out["sheet_udp"].float(), batch["sheet_udp"].flatten(0, 1)).view(b, v).mean(1)
        terms["parser"] = sheet
        if "target_udp" in out:
            terms["parser"] = sheet + weights.parser_targets * parser_loss(out["target_udp"].float(), batch["target_udp"])
    total = sum(getattr(weights, k) * t for k, t in terms.items())
    terms = {k: t.mean() for k, t in terms.items()}
    terms["total"] = total.mean()  # type: ignore[union-attr]
    return terms
