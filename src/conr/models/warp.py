"""Backward warping by dense flow fields, in pixels, always computed in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _base_grid(h: int, w: int, device: torch.device) -> Tensor:
    xs = torch.linspace(-1.0, 1.0, w, device=device).view(1, 1, 1, w).expand(1, 1, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=device).view(1, 1, h, 1).expand(1, 1, h, w)
    return torch.cat([xs, ys], dim=1)  # (1, 2, H, W)


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Sample x (N, C, H, W) at p + flow(p); flow (N, 2, H, W) in pixels (x, y). Border padding."""
    h, w = x.shape[-2:]
    with torch.autocast(device_type=x.device.type, enabled=False):
        flow = flow.float()
        norm = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], dim=1)
        grid = (_base_grid(h, w, x.device) + norm).permute(0, 2, 3, 1)  # (N, H, W, 2)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def sample(x: Tensor, coords: Tensor) -> Tensor:
    """Sample x (N, C, h, w) at pixel positions coords (N, 2, H, W) (x, y; pixel centres at whole
    numbers), bilinear, border padding: the output has the size of coords, whatever x's size."""
    h, w = x.shape[-2:]
    with torch.autocast(device_type=x.device.type, enabled=False):
        coords = coords.float()
        grid = torch.stack([coords[:, 0] / max(w - 1.0, 1.0) * 2 - 1, coords[:, 1] / max(h - 1.0, 1.0) * 2 - 1], -1)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def pixel_grid(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 2, H, W): every pixel's own position (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys])[None]


def warp_groups(x: Tensor, flow: Tensor) -> Tensor:
    """Warp channel groups by their own flows: flow (N, 2G, H, W) moves G equal slices of x (N, C, H, W)."""
    n, c, h, w = x.shape
    groups = flow.shape[1] // 2
    if flow.shape[1] % 2 or c % groups or flow.shape[0] != n or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"cannot warp {tuple(x.shape)} by flow {tuple(flow.shape)}")
    out = warp(x.reshape(n * groups, c // groups, h, w), flow.reshape(n * groups, 2, h, w))
    return out.view(n, c, h, w)


def rescale_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a flow field to `size` and scale its vectors by the same factor (taken from the width)."""
    factor = size[1] / flow.shape[-1]
    if factor == 1:
        return flow
    with torch.autocast(device_type=flow.device.type, enabled=False):
        up = F.interpolate(flow.float(), scale_factor=factor, mode="bilinear", align_corners=False,
                           recompute_scale_factor=False)
    return up * factor
