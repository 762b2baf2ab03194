"""The RGBA decoder: turns the shader's final fused message into a premultiplied RGBA image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResBlock(nn.Module):
    """Pre-activation residual block whose 'norms' are learned 1x1 convolutions."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.norm1 = nn.Conv2d(c, c, 1)
        self.norm2 = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class RGBADecoder(nn.Module):
    def __init__(self, channels: int = 64, num_blocks: int = 1):
        super().__init__()
        self.conv_rgba = nn.Sequential(nn.Conv2d(channels, 4, 3, 1, 1))
        self.bottleneck = nn.Sequential()
        for i in range(num_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock(channels))

    def forward(self, message: Tensor) -> Tensor:
        """message (N, C, H, W) -> RGBA (N, 4, H, W), RGB premultiplied by A, all in [0, 1]."""
        out = torch.sigmoid(self.conv_rgba(self.bottleneck(message)))
        rgb, a = out[:, :3], out[:, 3:4]
        return torch.cat([rgb * a, a], dim=1)
