"""Surface tilt from a UDP map: how far the visible surface turns away from the camera, per pixel.

A UDP map sends each image pixel to the rest-pose body point it shows. Over a rigid body part and
under an orthographic camera, the rest-space steps of one pixel right and one pixel down are the
camera-space steps (1, 0, z_x) and (0, 1, z_y) rotated and scaled, so their Gram matrix is
s^2 (I + g g^T), g = (z_x, z_y) the depth gradient. The ratio of its eigenvalues is the normal's
camera-facing part (cos tilt = 1 / sqrt(1 + |g|^2)), its major axis the direction the surface turns
away, up to sign: which way the normal points in the image plane is not in the UDP. The features
are sign-free for that reason (the doubled angle).

Why the lookup shader reads them: cel shading follows the camera-space normal (conr synth's light
moves with the view, and artists light each view of a sheet alike), so a copied pixel keeps the
shading of the view it came from, which is right only where that view saw the surface turned as
the target does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from conr.models.matching import VISIBLE

TILT_FEATURES = 3  # cos tilt, sin^2 tilt * cos 2phi, sin^2 tilt * sin 2phi


def _step(x: Tensor, ok: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """One-pixel rest-space step along `dim` (-1: right, -2: down), the smaller of the two one-sided
    differences: across an occlusion edge (an arm before the body) one side jumps, the other does not."""
    def shift(t: Tensor, k: int) -> Tensor:  # t at the neighbour k pixels along dim, zero past the edge
        pad = [0, 0, 0, 0]
        i = 0 if dim == -1 else 2
        pad[i + (1 if k > 0 else 0)] = abs(k)
        n = t.shape[dim]
        cut = t.narrow(dim, max(k, 0), n - abs(k))
        return F.pad(cut, pad)

    fwd, bwd = shift(x, 1) - x, x - shift(x, -1)
    ok_f, ok_b = ok & shift(ok, 1), ok & shift(ok, -1)
    nf = torch.where(ok_f, (fwd * fwd).sum(1, keepdim=True), torch.inf)
    nb = torch.where(ok_b, (bwd * bwd).sum(1, keepdim=True), torch.inf)
    step = torch.where(nf <= nb, fwd, bwd)
    return step, ok_f | ok_b


def tilt(udp: Tensor, smooth: int = 2) -> Tensor:
    """(N, 4, H, W) UDP (surface XYZ, premultiplied by visibility or not, and visibility) -> (N, 3, H, W)
    tilt features (TILT_FEATURES), zero where the surface is not visible. The Gram matrix is averaged
    over a (2 smooth + 1)-px square first: a parser's UDP is noisy pixel to pixel."""
    a = udp[:, 3:4]
    ok = a > VISIBLE
    x = torch.where(ok, udp[:, :3] / a.clamp_min(1e-6), 0.0)
    ju, ok_u = _step(x, ok, -1)
    jv, ok_v = _step(x, ok, -2)
    valid = (ok_u & ok_v).to(x.dtype)  # each already within the surface
    gram = torch.cat([(ju * ju).sum(1, keepdim=True), (ju * jv).sum(1, keepdim=True),
                      (jv * jv).sum(1, keepdim=True)], 1) * valid
    if smooth > 0:
        k = 2 * smooth + 1
        gram = F.avg_pool2d(gram, k, 1, smooth) / F.avg_pool2d(valid, k, 1, smooth).clamp_min(1e-6)
    ga, gb, gc = gram.unbind(1)
    half_trace = (ga + gc) / 2
    disc = (((ga - gc) / 2) ** 2 + gb * gb).sqrt()
    major, minor = half_trace + disc, (half_trace - disc).clamp_min(0)
    cos = (minor / major.clamp_min(1e-12)).sqrt()
    angle = torch.atan2(2 * gb, ga - gc)  # twice the major axis' angle: the sign-free direction
    sin2 = 1 - cos * cos
    feats = torch.stack([cos, sin2 * torch.cos(angle), sin2 * torch.sin(angle)], 1)
    return feats * ok.to(x.dtype)
