"""The target pose encoder: multi-scale features of the target UDP (surface XYZ * A, A)."""

from __future__ import annotations

from torch import Tensor

from conr.models.layers import ResUNet, normalize_input


class TargetPoseEncoder(ResUNet):
    """Only the encoder runs; the U-Net decoder exists because the released checkpoint has it."""

    def forward(self, sudp_a: Tensor) -> list[Tensor]:  # type: ignore[override]
        """sudp_a (N, 4, H, W) -> features deepest first."""
        _, feats = super().forward(normalize_input(sudp_a), decode=False)
        return feats
