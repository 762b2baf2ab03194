"""Winograd F(4x4, 3x3) convolutions for float32 inference on the CPU.

The shader's largest levels spend most of a frame in 3x3 convolutions and in 4x4 stride-2
transposed convolutions over 224 channels. Winograd's minimal filtering (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016) computes a 4x4 output tile of a 3x3
convolution with 36 multiplications per channel pair instead of 144: the tiles are transformed,
multiplied as 36 independent matrix products (which BLAS runs near peak), and transformed back.

The transposed convolutions stay direct: as a 3x3 convolution with one set of output channels per
phase they need 1.8x fewer multiplications, but the larger transforms ate the gain (measured).

The result differs from the direct convolution by float32 rounding only (a few times the direct
convolution's own rounding error); tests/test_winograd.py measures it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conr.models.layers import derived_weight

# Interpolation points 0, +-1, +-2 and infinity (Lavin & Gray, Sec. 4.2).
_BT = torch.tensor([
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
], dtype=torch.float64)
_G = torch.tensor([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
], dtype=torch.float64)
_AT = torch.tensor([
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
], dtype=torch.float64)
# Both 2D transforms as one matrix on the flattened (row-major) 6x6 tile: one GEMM each.
_INPUT_T = torch.kron(_BT, _BT).float()  # (36, 36)
_OUTPUT_T = torch.kron(_AT, _AT).float()  # (16, 36)

TILE = 4
_MIN_PIXELS = 32 * 32  # below this the direct convolution is as fast (measured on 2 cores)
_CHUNK_BYTES = 256 * 2**20  # bound on the transformed input and product held at once

_enabled = os.environ.get("CONR_WINOGRAD", "1") != "0"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Use the direct convolutions inside this block (to measure against them)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def usable(x: Tensor) -> bool:
    """Winograd pays off for float32 inference on the CPU on large enough feature maps. GPUs pick
    their own algorithms (cuDNN), and training needs the direct convolutions' gradients."""
    return (_enabled and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_grad_enabled() and x.shape[-2] * x.shape[-1] >= _MIN_PIXELS)


def transform_weight(weight: Tensor) -> Tensor:
    """(K, C, 3, 3) convolution weight -> (36, K, C): G w G^T for every channel pair."""
    g = _G.to(weight.device)
    u = torch.einsum("ai,kcij,bj->abkc", g, weight.double(), g)  # (6, 6, K, C)
    return u.reshape(36, *weight.shape[:2]).float().contiguous()


def conv3x3(x: Tensor, u: Tensor, bias: Tensor | None) -> Tensor:
    """3x3 convolution, stride 1, zero padding 1, with the weight transformed by `transform_weight`:
    x (N, C, H, W) -> (N, K, H, W)."""
    n, c, h, w = x.shape
    k = u.shape[1]
    th, tw = -(-h // TILE), -(-w // TILE)
    # Zero padding 1 on top and left; at the far sides, enough for whole tiles.
    xp = F.pad(x, (1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    out = x.new_empty(n, k, h, w)
    step = max(1, _CHUNK_BYTES // (36 * th * tw * (c + k) * 4))
    in_t, out_t = _INPUT_T.to(x.device), _OUTPUT_T.to(x.device)
    for start in range(0, n, step):
        part = xp[start:start + step]
        m = part.shape[0]
        tiles = part.unfold(2, 6, TILE).unfold(3, 6, TILE)  # (m, C, th, tw, 6, 6)
        tiles = tiles.permute(4, 5, 1, 0, 2, 3).reshape(36, -1)  # (36, C*m*th*tw)
        v = (in_t @ tiles).view(36, c, m * th * tw)
        prod = torch.bmm(u, v)  # (36, K, m*th*tw): one matrix product per tile position
        y = (out_t @ prod.view(36, -1)).view(TILE, TILE, k, m, th, tw)
        y = y.permute(3, 2, 4, 0, 5, 1)  # (m, K, th, 4, tw, 4)
        target = out[start:start + m]
        if (h, w) == (th * TILE, tw * TILE):
            target = target.view(m, k, th, TILE, tw, TILE)  # write the tiles in place: one pass
        else:
            y = y.reshape(m, k, th * TILE, tw * TILE)[:, :, :h, :w]
        if bias is None:
            target.copy_(y)
        else:
            torch.add(y, bias.view(-1, *[1] * (y.dim() - 2)), out=target)
    return out


def _transformed(conv: nn.Conv2d) -> Tensor:
    return derived_weight(conv, "_winograd_cache", conv.weight, lambda: transform_weight(conv.weight.detach()))


def apply(layers: nn.Sequential, x: Tensor) -> Tensor:
    """Run a stack of layers, taking the Winograd path for every 3x3 stride-1 convolution where
    it pays off."""
    for layer in layers:
        if usable(x) and _is_conv3x3(layer):
            x = conv3x3(x, _transformed(layer), layer.bias)
        else:
            x = layer(x)
    return x


def _is_conv3x3(layer: nn.Module) -> bool:
    return (type(layer) is nn.Conv2d and layer.kernel_size == (3, 3) and layer.stride == (1, 1)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros")
