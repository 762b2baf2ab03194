"""Inverse kinematics: cyclic coordinate descent (CCD) as MMD uses it for leg IK, batched over frames."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from conr.engine.formats.pmx import IKChain, Inherit, MmdRig
from conr.engine.formats.vmd import VmdMotion
from conr.engine.skeleton import Skeleton
from conr.engine.transforms import axis_angle_to_matrix, axis_rotation, matrix_to_quat, quat_to_matrix


def _chain_path(skel: Skeleton, chain: IKChain) -> list[int]:
    """Joints from the topmost link down to the target, parents first."""
    links = {l.joint for l in chain.links}
    path = [chain.target]
    j = skel.parents[chain.target]
    while j >= 0:
        path.append(j)
        if j in links and not (links - set(path)):
            break
        j = skel.parents[j]
    return path[::-1]


def solve_ik(skel: Skeleton, local: Tensor, chains: list[IKChain]) -> Tensor:
    """Rotate each chain's links so its target reaches its IK bone. local: (T, J, 4, 4), updated copy."""
    local = local.clone()
    for chain in chains:
        glob = skel.global_from_local(local)
        goal = glob[:, chain.bone, :3, 3]  # (T, 3)
        path = _chain_path(skel, chain)
        if not chain.links or path[0] not in {l.joint for l in chain.links}:
            continue  # the links are not ancestors of the target: nothing sensible to solve
        top_parent = skel.parents[path[0]]
        base = glob[:, top_parent] if top_parent >= 0 else torch.eye(4).expand_as(glob[:, 0])
        for _ in range(chain.iterations):
            for link in chain.links:
                g = _path_globals(base, local, path)
                eff = g[chain.target][:, :3, 3]
                lg = g[link.joint]
                rot_t = lg[:, :3, :3].transpose(-1, -2)
                v1 = (rot_t @ (eff - lg[:, :3, 3])[..., None])[..., 0]
                v2 = (rot_t @ (goal - lg[:, :3, 3])[..., None])[..., 0]
                n1, n2 = v1.norm(dim=-1, keepdim=True), v2.norm(dim=-1, keepdim=True)
                ok = (n1 > 1e-8) & (n2 > 1e-8)
                a, b = v1 / n1.clamp_min(1e-8), v2 / n2.clamp_min(1e-8)
                axis = torch.linalg.cross(a, b)
                angle = torch.atan2(axis.norm(dim=-1, keepdim=True), (a * b).sum(-1, keepdim=True))
                angle = angle.clamp(max=chain.limit) * ok
                delta = axis_angle_to_matrix(axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12) * angle)
                new = local[:, link.joint, :3, :3] @ delta
                if link.lower is not None:
                    new = _limit(new, link.lower, link.upper)
                local[:, link.joint, :3, :3] = new
    return local


def _path_globals(base: Tensor, local: Tensor, path: list[int]) -> dict[int, Tensor]:
    out, g = {}, base
    for j in path:
        g = g @ local[:, j]
        out[j] = g
    return out


def _limit(rot: Tensor, lower, upper) -> Tensor:
    """Clamp a rotation to angle limits. A hinge (one free axis) keeps only its axis' angle; other
    limited links are clamped per X, Y, Z Euler angle."""
    lower = torch.as_tensor(lower, dtype=rot.dtype)
    upper = torch.as_tensor(upper, dtype=rot.dtype)
    free = (upper - lower).abs() > 1e-6
    if int(free.sum()) == 1:
        ax = int(torch.nonzero(free)[0])
        i, k = [(1, 2), (2, 0), (0, 1)][ax]
        angle = torch.atan2(rot[..., k, i], rot[..., i, i])
        angle = angle.clamp(float(lower[ax]), float(upper[ax]))
        return axis_rotation("XYZ"[ax], angle)
    # R = Rx @ Ry @ Rz: recover X, Y, Z, clamp, rebuild.
    y = torch.asin(rot[..., 0, 2].clamp(-1, 1))
    x = torch.atan2(-rot[..., 1, 2], rot[..., 2, 2])
    z = torch.atan2(-rot[..., 0, 1], rot[..., 0, 0])
    x, y, z = (v.clamp(float(lo), float(hi)) for v, lo, hi in zip((x, y, z), lower, upper))
    return axis_rotation("X", x) @ axis_rotation("Y", y) @ axis_rotation("Z", z)


def apply_inherit(skel: Skeleton, local: Tensor, inherits: list[Inherit]) -> Tensor:
    """MMD 'inherit' (付与) bones: add a weighted copy of another bone's local rotation / translation."""
    local = local.clone()
    rest = skel.rest_local.to(local)
    for inh in inherits:
        src = local[:, inh.source]
        if inh.rotation:
            q = matrix_to_quat(src[:, :3, :3])  # w >= 0, so the angle is in [0, pi]
            angle = 2 * torch.atan2(q[:, :3].norm(dim=-1, keepdim=True), q[:, 3:])
            axis = q[:, :3] / q[:, :3].norm(dim=-1, keepdim=True).clamp_min(1e-12)
            part = axis_angle_to_matrix(axis * angle * inh.weight)
            local[:, inh.joint, :3, :3] = part @ local[:, inh.joint, :3, :3]
        if inh.translation:
            local[:, inh.joint, :3, 3] = local[:, inh.joint, :3, 3] + inh.weight * (src[:, :3, 3] - rest[inh.source, :3, 3])
    return local


def pose_mmd(skel: Skeleton, rig: MmdRig, vmd: VmdMotion, frames: np.ndarray | None = None) -> tuple[Tensor, list[str]]:
    """Global transforms (T, J, 4, 4) of a PMX skeleton driven by a VMD motion at the given frame
    numbers (default all), with inherited rotation and IK; also the VMD's bone names the model lacks."""
    f = np.arange(vmd.num_frames, dtype=float) if frames is None else np.asarray(frames, float)
    local = skel.rest_local.expand(len(f), -1, -1, -1).clone()
    used: set[str] = set()
    for j, bone in enumerate(skel.names):
        name = vmd.track_for(bone)
        if name is None or name in used:
            continue
        used.add(name)
        pos, quat = vmd.sample(name, f)
        local[:, j, :3, :3] = quat_to_matrix(torch.tensor(quat, dtype=torch.float32))
        local[:, j, :3, 3] = local[:, j, :3, 3] + torch.tensor(pos, dtype=torch.float32)
    local = apply_inherit(skel, local, rig.inherit)
    for chain in rig.ik:
        on = torch.tensor(vmd.ik_enabled(skel.names[chain.bone], f))
        if bool(on.any()):
            local = torch.where(on[:, None, None, None], solve_ik(skel, local, [chain]), local)
    missing = [n for n in vmd.tracks if n not in used]
    return skel.global_from_local(local), missing
