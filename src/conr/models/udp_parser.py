"""The UDP parser (paper Sec. 3.2): predicts Ultra-Dense Pose from an image and provides the
multi-scale features of the character sheet that the CINN shader warps."""

from __future__ import annotations

from torch import Tensor

from conr.models.layers import ResUNet, normalize_input


class UDPParser(ResUNet):
    def forward(self, images: Tensor, decode: bool = True) -> tuple[Tensor | None, list[Tensor]]:  # type: ignore[override]
        """images (N, 3, H, W) premultiplied RGB in [0, 1] -> (UDP (N, 4, H, W) in [0, 1] or None, features)."""
        udp, feats = super().forward(normalize_input(images), decode=decode)
        return (None if udp is None else udp.clamp(0, 1)), feats
