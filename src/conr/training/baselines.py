"""Predictions that need no learning, to put a model's metrics in proportion.

Each takes one sample of `SampleSet` (see conr.training.data) and returns premultiplied RGBA
(4, S, S). They are given the target's silhouette (`target_alpha`, from its UDP), which the model
is given too, but never the target's colours:

- copy: the front view stretched into the target's bounding box (what "no pose change" scores);
- flat: the silhouette filled with the sheet's mean colour (what knowing only the shape scores);
- udp_nn: every pixel coloured by the sheet pixel that shows the same body point, found through the
  sheets' exact UDP labels, which a model never sees; a strong upper reference.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from conr.training.correspondence import nearest_surface
from conr.training.metrics import SILHOUETTE

Baseline = Callable[[dict[str, Tensor]], Tensor]


def _box(alpha: Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right), end-exclusive, of alpha (S, S) > SILHOUETTE."""
    ys, xs = (alpha > SILHOUETTE).nonzero(as_tuple=True)
    if ys.numel() == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def copy_front(sample: dict[str, Tensor]) -> Tensor:
    """Sheet view 0 (the front view), its box resized onto the target's box, zero elsewhere."""
    rgba = torch.cat([sample["sheet_rgb"][0], sample["sheet_alpha"][0]])  # (4, S, S), premultiplied
    out = torch.zeros_like(rgba)
    src, dst = _box(sample["sheet_alpha"][0, 0]), _box(sample["target_alpha"][0])
    if src is None or dst is None:
        return out
    patch = rgba[None, :, src[0]:src[1], src[2]:src[3]]
    # Premultiplied colour and alpha resample together without dark fringes.
    resized = F.interpolate(patch, size=(dst[1] - dst[0], dst[3] - dst[2]), mode="bilinear",
                            align_corners=False, antialias=True)
    out[:, dst[0]:dst[1], dst[2]:dst[3]] = resized[0].clamp(0, 1)
    return out


def flat_colour(sample: dict[str, Tensor]) -> Tensor:
    """The target silhouette filled with the mean straight colour of all opaque sheet pixels."""
    alpha = sample["sheet_alpha"]  # (V, 1, S, S)
    opaque = (alpha > SILHOUETTE).expand_as(sample["sheet_rgb"])  # (V, 3, S, S)
    straight = sample["sheet_rgb"] / alpha.clamp_min(1e-6)
    mean = (straight * opaque).sum((0, 2, 3)) / opaque[:, 0].sum().clamp_min(1)  # (3,)
    a = sample["target_alpha"]  # (1, S, S)
    return torch.cat([mean.clamp(0, 1).view(3, 1, 1) * a, a])


def udp_nearest(sample: dict[str, Tensor]) -> Tensor:
    """Each visible target pixel takes the straight colour of the sheet pixel, over all views, whose
    UDP is nearest its own; alpha is the target's, and 0 where no view shows a match."""
    rgb, alpha = sample["sheet_rgb"], sample["sheet_alpha"]  # (V, 3, S, S), (V, 1, S, S)
    v, _, s, _ = rgb.shape
    index, distance = nearest_surface(sample["target_udp"], sample["sheet_udp"])  # (V, S, S) each
    best_dist, best_view = distance.min(0)  # (S, S)
    flat = best_view * (s * s) + index.gather(0, best_view[None])[0]  # (S, S) into V * S * S
    straight = (rgb / alpha.clamp_min(1e-6)).clamp(0, 1)  # matched edge pixels may be part-transparent
    colour = straight.permute(1, 0, 2, 3).reshape(3, v * s * s)[:, flat.flatten()].view(3, s, s)
    a = sample["target_alpha"] * torch.isfinite(best_dist).float()  # (1, S, S)
    return torch.cat([colour * a, a])


BASELINES: dict[str, Baseline] = {"copy": copy_front, "flat": flat_colour, "udp_nn": udp_nearest}
