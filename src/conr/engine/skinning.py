"""Skinned meshes and linear blend skinning (LBS)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from conr.engine.skeleton import Skeleton


@dataclass
class SkinnedMesh:
    """A triangle mesh bound to a skeleton; `vertices` are the bind (rest) pose the UDP encodes."""

    vertices: Tensor  # (V, 3) float32 bind-pose positions
    faces: Tensor  # (F, 3) int64, counter-clockwise seen from outside
    joints: Tensor  # (V, K) int64 joint indices
    weights: Tensor  # (V, K) float32, rows sum to 1
    skeleton: Skeleton
    face_colors: Tensor  # (F, 3) float32 base colour in [0, 1]
    face_unlit: Tensor | None = None  # (F,) bool: drawn without shading (eyes, highlights)
    inverse_bind: Tensor | None = None  # (J, 4, 4); default: inverse of the rest globals
    warnings: list[str] = field(default_factory=list)
    outward_winding: bool = False  # faces are counter-clockwise seen from outside (so insides can be told)
    uv: Tensor | None = None  # (V, 2) texture coordinates, origin at the image's top-left
    textures: list[Tensor] = field(default_factory=list)  # (H, W, 4) uint8 RGBA images
    face_texture: Tensor | None = None  # (F,) int64 index into `textures`, -1 for flat colour
    face_tint: Tensor | None = None  # (F, 3) colour factor multiplying the texture
    face_alpha_cutoff: Tensor | None = None  # (F,) texel alpha below this is a hole (cut-out); 0 = opaque
    _rest: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.face_unlit is None:
            self.face_unlit = torch.zeros(self.faces.shape[0], dtype=torch.bool)
        if self.inverse_bind is None:
            self.inverse_bind = torch.linalg.inv(self.skeleton.rest_global())

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def rest_vertices(self) -> Tensor:
        """(V, 3) the mesh in the skeleton's rest pose: the coordinates a UDP encodes."""
        if self._rest is None:
            self._rest = self.pose(self.skeleton.rest_global())
        return self._rest

    def skin_matrices(self, global_transforms: Tensor) -> Tensor:
        """(..., J, 4, 4) posed globals -> (..., J, 4, 4) bind-to-posed transforms."""
        return global_transforms @ self.inverse_bind.to(global_transforms)

    def pose(self, global_transforms: Tensor) -> Tensor:
        """LBS: (..., J, 4, 4) posed global joint transforms -> (..., V, 3) posed vertices."""
        return linear_blend_skinning(self.vertices, self.joints, self.weights, self.skin_matrices(global_transforms))

    def pose_frames(self, global_transforms: Tensor, budget: int = 1 << 24) -> Tensor:
        """(T, J, 4, 4) -> (T, V, 3), a few frames at a time so that large models stay within memory
        (the per-vertex blended matrices take V * K * 12 floats per frame)."""
        per_frame = max(1, self.vertices.shape[0] * self.joints.shape[1] * 12)
        step = max(1, budget // per_frame)
        frames = [self.pose(global_transforms[i:i + step]) for i in range(0, global_transforms.shape[0], step)]
        return torch.cat(frames) if frames else torch.zeros(0, *self.vertices.shape)


def linear_blend_skinning(vertices: Tensor, joints: Tensor, weights: Tensor, skin: Tensor) -> Tensor:
    """v' = sum_k w_k * M[j_k] @ v for (V, 3) vertices, (V, K) joints/weights and (..., J, 4, 4) skin."""
    blended = (skin[..., joints, :3, :] * weights[..., None, None].to(skin)).sum(-3)  # (..., V, 3, 4)
    v = vertices.to(skin)
    return (blended[..., :3] @ v[..., None]).squeeze(-1) + blended[..., 3]
