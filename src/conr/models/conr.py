"""CoNR: the composition of the UDP parser, target pose encoder, CINN shader and RGBA decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from conr.models.config import CoNRConfig
from conr.models.rgba_decoder import RGBADecoder
from conr.models.shader import CINNShader
from conr.models.target_pose_encoder import TargetPoseEncoder
from conr.models.udp_parser import UDPParser

# The four parts, named as the original release's weight files.
PARTS = ("udpparsernet", "target_pose_encoder", "shader", "rgbadecodernet")


@dataclass
class CharacterSheet:
    """A character sheet encoded once and reused for every frame."""

    reference: Tensor  # (1, V, 4, H, W): RGB premultiplied by A (again: the original shades that), A
    features: list[Tensor]  # parser features, deepest first, each (1, V, C, h, w)
    udp: Tensor | None  # (V, 4, H, W) the parser's UDP of each view, when asked for

    @property
    def views(self) -> int:
        return self.reference.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "CharacterSheet":
        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return CharacterSheet(mv(self.reference), [mv(f) for f in self.features],
                              None if self.udp is None else mv(self.udp))


class CoNR(nn.Module):
    def __init__(self, cfg: CoNRConfig):
        super().__init__()
        self.cfg = cfg
        self.udpparsernet = UDPParser(cfg.parser)
        self.target_pose_encoder = TargetPoseEncoder(cfg.pose_encoder)
        self.shader = CINNShader(cfg.shader)
        self.rgbadecodernet = RGBADecoder(cfg.decoder_channels, cfg.decoder_blocks)

    def part(self, name: str) -> nn.Module:
        if name not in PARTS:
            raise KeyError(name)
        return getattr(self, name)

    def encode_sheet(self, images: Tensor, masks: Tensor, with_udp: bool = False) -> CharacterSheet:
        """images (V, 3, H, W) premultiplied RGB, masks (V, 1, H, W), in [0, 1]."""
        udp, feats = self.udpparsernet(images, decode=with_udp)
        reference = torch.cat([masks * images, masks], dim=1).unsqueeze(0)
        return CharacterSheet(reference, [f.unsqueeze(0) for f in feats], udp)

    def parse_pose(self, images: Tensor) -> Tensor:
        """Pose images (B, 3, H, W), premultiplied RGB -> predicted target UDP (B, 4, H, W)."""
        udp, _ = self.udpparsernet(images, decode=True)
        assert udp is not None
        return udp

    @staticmethod
    def target_input(udp: Tensor, alpha: Tensor | None = None) -> Tensor:
        """The pose encoder's input (B, 4, H, W): surface XYZ * A and A (A from the UDP if not given)."""
        a = udp[:, 3:4] if alpha is None else alpha
        return torch.cat([udp[:, 0:3] * a, a], dim=1)

    def render(self, sheet: CharacterSheet, target: Tensor, trace: list[dict[str, Tensor]] | None = None) -> Tensor:
        """target (B, 4, H, W) from `target_input` -> RGBA (B, 4, H, W), RGB premultiplied.
        `trace` collects the shader's per-level flows and warped views (see CINNShader.forward)."""
        target_feats = self.target_pose_encoder(target)
        message = self.shader(target_feats, sheet.reference, sheet.features, trace)
        return self.rgbadecodernet(message)
