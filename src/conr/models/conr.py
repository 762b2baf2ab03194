"""CoNR: the composition of the UDP parser, target pose encoder, CINN shader and RGBA decoder, or,
in the correspondence-first family, of the UDP parser, explicit matching and the lookup shader."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conr.models.config import CoNRConfig
from conr.models.lookup_shader import LINE_BANDS, LookupShader, sheet_ink
from conr.models.matching import VISIBLE, SurfaceIndex, inner_surface
from conr.models.rgba_decoder import RGBADecoder
from conr.models.shader import CINNShader
from conr.models.target_pose_encoder import TargetPoseEncoder
from conr.models.udp_parser import UDPParser

# The four parts, named as the original release's weight files.
PARTS = ("udpparsernet", "target_pose_encoder", "shader", "rgbadecodernet")
# The correspondence-first family's parts.
LOOKUP_PARTS = ("udpparsernet", "shader")
# A sheet view's mirrored reading is kept when its mean X is this close to the plain one's (UDP units).
MIRROR_AGREEMENT = 0.02


def parts_of(cfg: CoNRConfig) -> tuple[str, ...]:
    return LOOKUP_PARTS if cfg.family == "lookup" else PARTS


@dataclass
class CharacterSheet:
    """A character sheet encoded once and reused for every frame."""

    reference: Tensor  # (1, V, 4, H, W): RGB premultiplied by A (twice in the CINN family: the original shades that), A
    features: list[Tensor]  # parser features, deepest first, each (1, V, C, h, w); empty in the lookup family
    udp: Tensor | None  # (V, 4, H, W) the parser's UDP of each view, when asked for (always in the lookup family)
    index: SurfaceIndex | None = None  # the lookup family's k-d trees over `udp`
    ink: Tensor | None = None  # (1, 6 [+ edge profile]) the sheet's lines (lookup_shader.sheet_ink), if read

    @property
    def views(self) -> int:
        return self.reference.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "CharacterSheet":
        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return CharacterSheet(mv(self.reference), [mv(f) for f in self.features],
                              None if self.udp is None else mv(self.udp), self.index,
                              None if self.ink is None else mv(self.ink))


class CoNR(nn.Module):
    def __init__(self, cfg: CoNRConfig):
        super().__init__()
        self.cfg = cfg
        self.udpparsernet = UDPParser(cfg.parser)
        if cfg.lookup is not None:
            self.shader = LookupShader(cfg.lookup)
            return
        assert cfg.pose_encoder is not None and cfg.shader is not None
        self.target_pose_encoder = TargetPoseEncoder(cfg.pose_encoder)
        self.shader = CINNShader(cfg.shader)
        self.rgbadecodernet = RGBADecoder(cfg.decoder_channels, cfg.decoder_blocks)

    @property
    def parts(self) -> tuple[str, ...]:
        return parts_of(self.cfg)

    def part(self, name: str) -> nn.Module:
        if name not in self.parts:
            raise KeyError(name)
        return getattr(self, name)

    def parse(self, images: Tensor) -> Tensor:
        """UDP (N, 4, H, W) of premultiplied RGB images (N, 3, H, W); the lookup family's parser reads
        them at its own size and its UDP is resized back (bilinear: UDP is smooth on the body)."""
        size = images.shape[-1]
        work = self.cfg.lookup.parser_size if self.cfg.lookup is not None else size
        small = images if work == size else F.interpolate(images, size=(work, work), mode="area")
        udp, _ = self.udpparsernet(small, decode=True)
        assert udp is not None
        if work != size:
            udp = F.interpolate(udp, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return udp

    def parse_sheet(self, images: Tensor) -> Tensor:
        """The UDP of sheet views (V, 4, H, W): in the lookup family what all matching goes through (the
        CINN family reads them once, as `parse` does). With `parser_ensemble`, the mean of ten readings: the views shifted by half a parser pixel each way
        (the parser reads a 2x downsampled image; its errors depend on where the pixel grid falls) and
        the same mirrored, whose X is 1 - X (a body is symmetric about its UDP box's centre, x = 0.5).
        A view whose mirrored reading disagrees on the whole (the parser tells a side view's left from
        its right less surely mirrored: X moves by 0.06-0.18 on those) keeps its plain readings.
        Measured on validation characters (seeds 710000, through `conr render`'s defaults at 256 px,
        the bundled weights): right pixels 0.577 to 0.588; in the styles never trained on, 0.613 to 0.621.
        Each view is read with a transparent margin, its box filling `parser_zoom` of the frame
        (`LookupShaderConfig.parser_zoom`), and its UDP cut back out."""
        if self.cfg.lookup is None:
            return self.parse(images)
        h, w = images.shape[-2:]
        pad = max(0, round(w * (1 / self.cfg.lookup.parser_zoom - 1) / 2))
        if pad > 0:  # premultiplied RGB is zero where transparent
            images = F.pad(images, (pad, pad, pad, pad))
        udp = self._read_ensemble(images) if self.cfg.lookup.parser_ensemble else self.parse(images)
        return udp[..., pad:pad + h, pad:pad + w]

    def _read_ensemble(self, images: Tensor) -> Tensor:
        assert self.cfg.lookup is not None
        size, work = images.shape[-1], self.cfg.lookup.parser_size
        d = max(1, round(size / work / 2))

        def shifted(x: Tensor) -> Tensor:
            total = self.parse(x)
            for dy, dx in ((d, d), (-d, -d), (d, -d), (-d, d)):
                total = total + torch.roll(self.parse(torch.roll(x, (dy, dx), (-2, -1))), (-dy, -dx), (-2, -1))
            return total / 5

        udp = shifted(images)
        mirrored = shifted(images.flip(-1)).flip(-1)
        mirrored = torch.cat([1 - mirrored[:, :1], mirrored[:, 1:]], 1)
        both = (udp[:, 3] > VISIBLE) & (mirrored[:, 3] > VISIBLE)
        offset = torch.stack([(u[0][b] - m[0][b]).mean() if bool(b.any()) else u.new_tensor(1.0)
                              for u, m, b in zip(udp, mirrored, both)])
        agrees = (offset.abs() < MIRROR_AGREEMENT).to(udp.dtype)[:, None, None, None]
        return udp + agrees * (mirrored - udp) / 2

    def encode_sheet(self, images: Tensor, masks: Tensor, with_udp: bool = False,
                     udp: Tensor | None = None) -> CharacterSheet:
        """images (V, 3, H, W) premultiplied RGB, masks (V, 1, H, W), in [0, 1]. In the lookup family
        `udp` (V, 4, H, W) gives the views' UDP instead of the parser's reading: their true UDP, to
        measure what the parser costs (benchmarks/bench_errors.py)."""
        if self.cfg.lookup is not None:
            udp = self.parse_sheet(images) if udp is None else udp.to(images)
            # Only what the sheet really shows can be copied: the parser's visibility within the alpha.
            vis = torch.minimum(udp[:, 3:4], masks)
            udp = torch.cat([udp[:, :3] * (vis > 0.5), vis], 1)
            index = SurfaceIndex(inner_surface(udp, self.cfg.lookup.edge_margin),
                                 depth_squeeze=self.cfg.lookup.depth_squeeze)
            reference = torch.cat([images, masks], 1).unsqueeze(0)
            cfg = self.cfg.lookup  # the lines are read once per sheet, not per frame
            ink = sheet_ink(reference, LINE_BANDS if cfg.line_width else 0) if cfg.ink else None
            return CharacterSheet(reference, [], udp, index, ink)
        udp, feats = self.udpparsernet(images, decode=with_udp)
        reference = torch.cat([masks * images, masks], dim=1).unsqueeze(0)
        return CharacterSheet(reference, [f.unsqueeze(0) for f in feats], udp)

    def parse_pose(self, images: Tensor) -> Tensor:
        """Pose images (B, 3, H, W), premultiplied RGB -> predicted target UDP (B, 4, H, W), read as the
        sheet views are (`parse_sheet`: the ensemble in the lookup family). A pose read once misplaces
        what the sheet read ten times places well; measured on validation characters (seed 710000,
        poses given as images, the bundled weights): right pixels 0.507 to 0.517, in the styles never
        trained on 0.558 to 0.568, for about 1.7x the time per frame."""
        return self.parse_sheet(images)

    @staticmethod
    def target_input(udp: Tensor, alpha: Tensor | None = None) -> Tensor:
        """The pose encoder's input (B, 4, H, W): surface XYZ * A and A (A from the UDP if not given)."""
        a = udp[:, 3:4] if alpha is None else alpha
        return torch.cat([udp[:, 0:3] * a, a], dim=1)

    def render(self, sheet: CharacterSheet, target: Tensor, trace: list[dict[str, Tensor]] | None = None) -> Tensor:
        """target (B, 4, H, W) from `target_input` -> RGBA (B, 4, H, W), RGB premultiplied.
        `trace` collects the shader's per-level flows and warped views (see CINNShader.forward), or
        the lookup shader's corrected flows and view weights."""
        if self.cfg.lookup is not None:
            coords, distance = match(sheet, target)
            info: dict[str, Tensor] | None = {} if trace is not None else None
            assert sheet.udp is not None
            out = self.shader(target, sheet.reference, sheet.udp.unsqueeze(0), coords, distance, info, sheet.ink)
            if trace is not None:
                trace.append({**(info or {}), "initial_coords": coords, "distance": distance})
            return out
        target_feats = self.target_pose_encoder(target)
        message = self.shader(target_feats, sheet.reference, sheet.features, trace)
        return self.rgbadecodernet(message)


def match(sheet: CharacterSheet, target: Tensor) -> tuple[Tensor, Tensor]:
    """Every target pixel's match in every sheet view: the matched sheet pixels (x, y) (B, V, 2, H, W)
    and distances (B, V, 1, H, W), +inf where the view does not show that surface point."""
    assert sheet.index is not None and sheet.udp is not None
    a = target[:, 3:4].float()
    xyz = target[:, :3].float() / a.clamp_min(1e-6)
    coords, distances = [], []
    for k in range(target.shape[0]):
        c, d = sheet.index.coords(torch.cat([xyz[k], a[k]]))
        coords.append(c)
        distances.append(d)
    return torch.stack(coords).to(target.device), torch.stack(distances).to(target.device)

