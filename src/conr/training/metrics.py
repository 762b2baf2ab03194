"""Image metrics of predicted frames against the ground truth, per frame, in the network's crop.

Colours are compared over white (`rgb + 1 - alpha`, RGB premultiplied), as the frames are seen, so
a transparent pixel counts as white whatever its stored RGB. All functions take batches
(B, 4, S, S) of premultiplied RGBA in [0, 1] and return one value per frame, (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ("l1_rgb", "ssim", "l1_alpha", "psnr", "l1_inside", "right_pixels")
HIGHER_IS_BETTER = {"l1_rgb": False, "ssim": True, "l1_alpha": False, "psnr": True, "l1_inside": False,
                    "right_pixels": True}

# A perfect prediction has PSNR +inf; capping the MSE at 1e-10 keeps means and JSON finite (100 dB).
PSNR_MAX = 100.0
SILHOUETTE = 0.5  # true alpha above this is the character's silhouette
RIGHT_TOLERANCE = 0.1  # a pixel's colour is right when every channel is within this of the truth


def over_white(rgba: Tensor) -> Tensor:
    """(B, 4, H, W) premultiplied -> (B, 3, H, W) composited over white."""
    return rgba[:, :3] + (1 - rgba[:, 3:4])


def _gaussian(size: int, sigma: float, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()  # (size,)


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM (Wang et al. 2004) of (B, C, H, W) images in [0, 1]: Gaussian window, K1 0.01, K2 0.03,
    the map taken where the window fits wholly (no padding), averaged over channels and pixels -> (B,)."""
    # float64: the variances are differences of near-equal means, which float32 blurs by ~1e-4.
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian(window, sigma, x)
    # The 2-D Gaussian is separable: a row pass and a column pass, one group per channel.
    gx = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    gy = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).float()


def frame_metrics(pred: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """pred, truth (B, 4, S, S) premultiplied RGBA -> {metric: (B,)} for every name in METRICS."""
    pred, truth = pred.float(), truth.float()
    pw, tw = over_white(pred), over_white(truth)  # (B, 3, S, S)
    err = (pw - tw).abs()
    inside = (truth[:, 3] > SILHOUETTE).float()  # (B, S, S)
    # Samples always show some surface (SampleSet refuses empty frames); the clamp only avoids 0/0.
    n_inside = inside.flatten(1).sum(1).clamp_min(1)
    right = (err <= RIGHT_TOLERANCE).all(dim=1).float()  # (B, S, S)
    mse = (err * err).flatten(1).mean(1).clamp_min(10 ** (-PSNR_MAX / 10))
    return {
        "l1_rgb": err.flatten(1).mean(1),
        "ssim": ssim(pw, tw),
        "l1_alpha": (pred[:, 3] - truth[:, 3]).abs().flatten(1).mean(1),
        "psnr": 10 * torch.log10(1 / mse),
        "l1_inside": (err.mean(1) * inside).flatten(1).sum(1) / n_inside,
        "right_pixels": (right * inside).flatten(1).sum(1) / n_inside,
    }


def parser_metrics(pred: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """The UDP parser's prediction against the true UDP, both (B, 4, S, S) (XYZ times visibility,
    visibility): L1 of XYZ where the body is truly visible, and the IoU of the visible areas."""
    vis_t = truth[:, 3] > SILHOUETTE
    vis_p = pred[:, 3] > SILHOUETTE
    err = (pred[:, :3] - truth[:, :3]).abs().mean(1)
    l1 = (err * vis_t).flatten(1).sum(1) / vis_t.flatten(1).sum(1).clamp_min(1)
    iou = (vis_t & vis_p).flatten(1).sum(1) / (vis_t | vis_p).flatten(1).sum(1).clamp_min(1)
    return {"udp_l1": l1, "visibility_iou": iou.float()}


def temporal_change(prev: Tensor, cur: Tensor, prev_udp: Tensor, cur_udp: Tensor,
                    still: float = 0.004) -> float | None:
    """Flicker: the mean colour change (over white, L1 per channel) between two consecutive frames
    (1, 4, H, W) at the pixels whose body point stays put (visible in both, UDP within `still`),
    where a steady renderer changes little; None if no pixel stays put. Compare with the truth's."""
    vis = (prev_udp[:, 3] > SILHOUETTE) & (cur_udp[:, 3] > SILHOUETTE)
    moved = (prev_udp[:, :3] - cur_udp[:, :3]).abs().amax(1)
    keep = vis & (moved < still)
    if not bool(keep.any()):
        return None
    change = (over_white(prev.float()) - over_white(cur.float())).abs().mean(1)
    return float(change[keep].mean())
