"""A joint hierarchy and forward kinematics (FK).

Joints are stored parents-first, so one pass from the root composes every global transform.
A pose is a set of local rotations applied on top of each joint's rest local transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from conr.engine.transforms import compose


@dataclass
class Skeleton:
    names: list[str]
    parents: list[int]  # parents[j] < j, -1 for a root
    rest_local: Tensor  # (J, 4, 4) each joint's rest transform relative to its parent

    def __post_init__(self) -> None:
        if len(self.names) != len(self.parents) or self.rest_local.shape != (len(self.names), 4, 4):
            raise ValueError("names, parents and rest_local must describe the same joints")
        for j, p in enumerate(self.parents):
            if p >= j:
                raise ValueError(f"joint {self.names[j]!r} comes before its parent; joints must be parents-first")

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def find(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None

    @classmethod
    def from_offsets(cls, names: list[str], parents: list[int], offsets: Tensor) -> "Skeleton":
        """A skeleton whose rest joints are unrotated and placed at (J, 3) offsets from their parents."""
        return cls(list(names), list(parents), compose(translation=offsets.float()))

    def global_from_local(self, local: Tensor) -> Tensor:
        """Compose (..., J, 4, 4) local transforms down the hierarchy into global ones."""
        out: list[Tensor] = []
        for j, p in enumerate(self.parents):
            out.append(local[..., j, :, :] if p < 0 else out[p] @ local[..., j, :, :])
        return torch.stack(out, dim=-3)

    def rest_global(self) -> Tensor:
        """(J, 4, 4) global rest transforms."""
        return self.global_from_local(self.rest_local)

    def rest_positions(self) -> Tensor:
        """(J, 3) joint positions in the rest pose."""
        return self.rest_global()[:, :3, 3]

    def forward(self, rotations: Tensor, root_translation: Tensor | None = None) -> Tensor:
        """FK: (..., J, 3, 3) local rotations on top of the rest pose -> (..., J, 4, 4) global transforms.

        `root_translation` (..., 3) moves the roots, in their parent (world) frame.
        """
        batch = rotations.shape[:-3]
        local = self.rest_local.to(rotations).expand(*batch, -1, -1, -1).clone()
        local[..., :3, :3] = local[..., :3, :3] @ rotations
        if root_translation is not None:
            for j, p in enumerate(self.parents):
                if p < 0:
                    local[..., j, :3, 3] = local[..., j, :3, 3] + root_translation
        return self.global_from_local(local)

    def identity_pose(self, frames: int | None = None) -> Tensor:
        """Rotations of the rest pose: (J, 3, 3), or (frames, J, 3, 3)."""
        eye = torch.eye(3).expand(self.num_joints, 3, 3)
        return eye.clone() if frames is None else eye.expand(frames, -1, -1, -1).clone()
