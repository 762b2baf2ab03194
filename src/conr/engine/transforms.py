"""Rotation and rigid-transform helpers shared by the skeleton, the formats and the motions.

Conventions: column vectors (`p' = M @ p`), quaternions stored (x, y, z, w) as glTF does,
angles in radians. Everything is batched over leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """Rotation by `angle` (...) about the named axis 'X', 'Y' or 'Z'. Returns (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "X":
        rows = (one, zero, zero, zero, c, -s, zero, s, c)
    elif axis == "Y":
        rows = (c, zero, s, zero, one, zero, -s, zero, c)
    elif axis == "Z":
        rows = (c, -s, zero, s, c, zero, zero, zero, one)
    else:
        raise ValueError(f"axis must be X, Y or Z, got {axis!r}")
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(angles: Tensor, order: str) -> Tensor:
    """R = R_order[0](a0) @ R_order[1](a1) @ R_order[2](a2), the BVH channel convention.

    `angles` is (..., 3) in the same order as `order` (e.g. 'ZXY').
    """
    mats = [axis_rotation(ax, angles[..., i]) for i, ax in enumerate(order)]
    return mats[0] @ mats[1] @ mats[2]


def matrix_to_euler(m: Tensor, order: str) -> Tensor:
    """Inverse of `euler_to_matrix`: (..., 3, 3) rotations to (..., 3) angles in radians, in `order`.

    For R = R_i(a) R_j(b) R_k(c), b lies in [-pi/2, pi/2] and a, c in (-pi, pi]. At gimbal lock
    (|b| = pi/2) only a + c or a - c is defined; there (to rounding) c = 0 and a takes the whole turn.
    """
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"order must be a permutation of 'XYZ', got {order!r}")
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) rotation matrices, got {tuple(m.shape)}")
    i, j, k = ("XYZ".index(ax) for ax in order)
    # Even permutations (XYZ, YZX, ZXY) rotate e_i -> e_j -> e_k positively; odd ones flip the signs.
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    cos_b = torch.hypot(m[..., i, i], m[..., i, j])  # = |cos b|, from the first row's other entries
    b = torch.atan2(s * m[..., i, k], cos_b)
    # At gimbal lock the usual pair for a vanishes; there take c = 0, when column j of R is R_i(a) e_j.
    locked = cos_b < torch.finfo(m.dtype).eps
    a = torch.where(locked, torch.atan2(s * m[..., k, j], m[..., j, j]), torch.atan2(-s * m[..., j, k], m[..., k, k]))
    # c from row j of R_i(a)^T R = R_j(b) R_k(c), which does not shrink with cos b: it absorbs any
    # error in a near the lock, so the angles always rebuild R (M. Day, "Extracting Euler Angles from a Rotation Matrix").
    ca, sa = torch.cos(a), torch.sin(a)
    mji = ca * m[..., j, i] + s * sa * m[..., k, i]
    mjj = ca * m[..., j, j] + s * sa * m[..., k, j]
    c = torch.atan2(s * mji, mjj)
    return torch.stack([a, b, c], dim=-1)


def quat_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternions (x, y, z, w), normalised here, to (..., 3, 3) rotation matrices."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(m: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices to (..., 4) unit quaternions (x, y, z, w), w >= 0."""
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Each candidate is accurate where its denominator is large; pick the best per item.
    cands = torch.stack(
        [
            torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1], 1 + m00 + m11 + m22], -1),
            torch.stack([1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]], -1),
            torch.stack([m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1], m[..., 0, 2] - m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22, m[..., 1, 0] - m[..., 0, 1]], -1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    best = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1).argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:4] < 0, -q, q)


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """(..., 3) rotation vectors (axis * angle) to (..., 3, 3) via Rodrigues' formula."""
    angle = v.norm(dim=-1, keepdim=True)
    axis = v / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """Smallest rotation (..., 3, 3) turning direction a (..., 3) onto direction b (..., 3)."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    # Opposite directions: any axis perpendicular to a will do.
    helper = torch.where(a[..., :1].abs() < 0.9, torch.tensor([1.0, 0, 0], dtype=a.dtype, device=a.device),
                         torch.tensor([0, 1.0, 0], dtype=a.dtype, device=a.device))
    fallback = torch.cross(a, helper.expand_as(a), dim=-1)
    axis = torch.where(sin < 1e-8, fallback, axis)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return axis_angle_to_matrix(axis * angle)


def compose(rotation: Tensor | None = None, translation: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """Build (..., 4, 4) transforms T @ R @ S from optional (..., 3, 3), (..., 3), (..., 3) parts."""
    ref = next(t for t in (rotation, translation, scale) if t is not None)
    batch = ref.shape[:-2] if ref is rotation else ref.shape[:-1]
    out = torch.eye(4, dtype=ref.dtype, device=ref.device).repeat(*batch, 1, 1)
    rs = rotation if rotation is not None else torch.eye(3, dtype=ref.dtype, device=ref.device).expand(*batch, 3, 3)
    if scale is not None:
        rs = rs * scale[..., None, :]
    out[..., :3, :3] = rs
    if translation is not None:
        out[..., :3, 3] = translation
    return out


def transform_points(m: Tensor, p: Tensor) -> Tensor:
    """Apply (..., 4, 4) transforms to (..., N, 3) points."""
    return p @ m[..., :3, :3].transpose(-1, -2) + m[..., None, :3, 3]
