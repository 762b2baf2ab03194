"""Shared building blocks: instance-normalised ResNet encoders and the U-Net decoder on top.

Submodule names follow the original release's checkpoints (`backbone.4.0.bn1.norm.weight`, ...),
so that loading its weights is a straight copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


def derived_weight(owner: nn.Module, slot: str, weight: Tensor, make: Callable[[], T], key: object = None) -> T:
    """A value computed from `weight` (a split, a transform), kept on `owner` between inference
    calls. It is made again when the weight is replaced, moved or changed in place (version counter;
    in-place changes through `weight.data` bypass that counter and are not seen)."""
    if torch.is_grad_enabled():  # training: the value must carry the weight's gradient
        return make()
    stamp = (weight.data_ptr(), weight._version, weight.dtype, weight.device, key)
    cached = owner.__dict__.get(slot)
    if cached is not None and cached[0] is weight and cached[1] == stamp:
        return cached[2]
    value = make()
    owner.__dict__[slot] = (weight, stamp, value)
    return value


class InstanceNorm(nn.Module):
    """Affine instance norm; wrapped so the parameters sit at `<name>.norm.weight` as in the checkpoints."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, eps=1e-5, affine=True, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), InstanceNorm(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = InstanceNorm(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = InstanceNorm(width)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 bottleneck with a residual (ResNet-50 and up)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = InstanceNorm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = InstanceNorm(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = InstanceNorm(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResUNetConfig:
    """A ResNet encoder (stem + 4 stages) with a U-Net decoder of transposed convolutions."""

    in_channels: int = 3
    out_channels: int = 4
    block: Literal["basic", "bottleneck"] = "bottleneck"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    stem_width: int = 64
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    # 'max': the usual 3x3 max pool; 'conv': a learned strided 3x3 convolution in its place.
    stem_pool: Literal["max", "conv"] = "conv"
    decoder_filters: tuple[int, ...] = (512, 384, 256, 128, 32)

    @property
    def expansion(self) -> int:
        return Bottleneck.expansion if self.block == "bottleneck" else BasicBlock.expansion

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the features the encoder returns, deepest first: stage 4, 3, 2, 1, stem."""
        return [w * self.expansion for w in reversed(self.widths)] + [self.stem_width]


class ResNetEncoder(nn.Sequential):
    """Stem (0 conv, 1 norm, 2 relu, 3 pool) and four stages (4..7), indexed as in the checkpoints."""

    def __init__(self, cfg: ResUNetConfig):
        block = Bottleneck if cfg.block == "bottleneck" else BasicBlock
        pool: nn.Module
        if cfg.stem_pool == "conv":
            pool = nn.Conv2d(cfg.stem_width, cfg.stem_width, 3, 2, 1, bias=False)
        else:
            pool = nn.MaxPool2d(3, 2, 1)
        stages: list[nn.Module] = []
        c_in = cfg.stem_width
        for i, (n, width) in enumerate(zip(cfg.layers, cfg.widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c_in, width, stride))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        super().__init__(
            nn.Conv2d(cfg.in_channels, cfg.stem_width, 7, 2, 3, bias=False),
            InstanceNorm(cfg.stem_width),
            nn.ReLU(inplace=True),
            pool,
            *stages,
        )

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        """Return [stage4, stage3, stage2, stage1, stem] features; strides 32, 16, 8, 4, 2."""
        feats: list[Tensor] = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i == 2 or i >= 4:
                feats.append(x)
        return feats[::-1]


class UpsampleBlock(nn.Module):
    """x2 transposed convolution, then a 3x3 convolution over [upsampled, skip]."""

    def __init__(self, c_in: int, c_out: int, skip_in: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)
        self.bn1 = InstanceNorm(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out + skip_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = InstanceNorm(c_out)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.relu(self.bn1(self.up(x)))
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.relu(self.bn2(self.conv2(x)))


class ResUNet(nn.Module):
    """ResNet encoder + U-Net decoder. The decoder is optional at run time (`decode=False`)."""

    def __init__(self, cfg: ResUNetConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetEncoder(cfg)
        feats = cfg.feature_channels  # deepest first
        skips = feats[1:] + [0]  # the last block upsamples to full size with no skip
        filters_in = [feats[0], *cfg.decoder_filters[:-1]]
        self.upsample_blocks = nn.ModuleList(
            UpsampleBlock(c_in, c_out, skip)
            for c_in, c_out, skip in zip(filters_in, cfg.decoder_filters, skips)
        )
        self.final_conv = nn.Conv2d(cfg.decoder_filters[-1], cfg.out_channels, 1)

    def forward(self, x: Tensor, decode: bool = True) -> tuple[Tensor | None, list[Tensor]]:
        """Return (decoder output or None, encoder features deepest first)."""
        feats = self.backbone(x)
        if not decode:
            return None, feats
        y = feats[0]
        for block, skip in zip(self.upsample_blocks, [*feats[1:], None]):
            y = block(y, skip)
        return self.final_conv(y), feats


# Input normalisation of both encoders (the original's constants).
INPUT_MEAN = 0.6
INPUT_STD = 0.2970


def normalize_input(x: Tensor) -> Tensor:
    return (x - INPUT_MEAN) / INPUT_STD


__all__ = [
    "InstanceNorm",
    "BasicBlock",
    "Bottleneck",
    "ResUNetConfig",
    "ResNetEncoder",
    "UpsampleBlock",
    "ResUNet",
    "normalize_input",
]
