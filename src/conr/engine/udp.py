"""Ultra-Dense Pose (UDP) frames: each pixel holds the rest-pose XYZ of the surface seen there.

Normalisation rule (one per character, the same for every frame and view): the rest-pose
(bind-pose) axis-aligned bounding box is centred at 0.5 and divided by its longest side,
    u = (p - centre) / extent + 0.5,
so all three axes share one scale (the shape is not stretched), every rest vertex lands in
[0, 1], and the longest axis (the height, for a standing figure) spans exactly [0, 1].
Frame layout (what `conr render` reads): float32 (H, W, 4), channels 0-2 = u * visibility,
channel 3 = visibility; pixels with no surface are 0 in all four channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from conr.engine.rasterizer import Fragments, interpolate


@dataclass(frozen=True)
class UDPNormalizer:
    centre: tuple[float, float, float]
    extent: float

    @classmethod
    def from_vertices(cls, rest_vertices: Tensor) -> "UDPNormalizer":
        lo = rest_vertices.min(0).values.double()
        hi = rest_vertices.max(0).values.double()
        extent = float((hi - lo).max())
        if extent <= 0:
            raise ValueError("rest-pose vertices have zero extent; cannot normalise a UDP")
        return cls(tuple(((lo + hi) / 2).tolist()), extent)

    def encode(self, points: Tensor) -> Tensor:
        c = torch.tensor(self.centre, dtype=points.dtype, device=points.device)
        return (points - c) / self.extent + 0.5

    def decode(self, udp_xyz: Tensor) -> Tensor:
        c = torch.tensor(self.centre, dtype=udp_xyz.dtype, device=udp_xyz.device)
        return (udp_xyz - 0.5) * self.extent + c

    def to_dict(self) -> dict:
        return {"rule": "(p - centre) / extent + 0.5", "centre": list(self.centre), "extent": self.extent}


def udp_from_fragments(fragments: Fragments, faces: Tensor, rest_vertices: Tensor, normalizer: UDPNormalizer) -> Tensor:
    """(H, W, 4) float32 UDP frame from rasterised fragments and the mesh's rest-pose vertices."""
    coords = normalizer.encode(rest_vertices.float()).clamp(0, 1)
    xyz = interpolate(fragments, faces, coords)
    vis = fragments.mask.to(xyz.dtype)[..., None]
    return torch.cat([xyz * vis, vis], dim=-1).float()


def udp_picture(udp: "np.ndarray") -> "np.ndarray":
    """(H, W, 4) float UDP frame -> (H, W, 3) uint8 picture: rest-pose XYZ as RGB, black where empty."""
    import numpy as np

    xyz = np.clip(udp[..., :3], 0, 1) * (udp[..., 3:4] > 0)
    return (xyz * 255).round().astype(np.uint8)
