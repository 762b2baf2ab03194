"""Landmarks -> joint rotations of our humanoid skeleton.

Each solved joint gets a frame built from two directions that move rigidly with it: a primary one
along the bone and a secondary one across it (the hip line, the shoulder line, the ears, the plane
of a bent elbow or knee, the palm, the sole). The joint's global rotation is the rotation taking
its rest frame (the same two directions on the rest skeleton) to the observed one; local rotations
follow from the parents'. Two landmarks cannot tell a twist along a straight limb, so where the
elbow or knee is nearly straight the plane's normal fades into the parent's (no extra twist).

What the landmarks cannot separate is shared evenly: the turn from the hips to the shoulders
between spine and chest, the turn from the shoulders to the head between neck and head. The
shoulder (clavicle) joints stay at rest. The toes follow the foot.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from conr.engine.procedural import HUMANOID_BONES, humanoid_skeleton
from conr.engine.transforms import matrix_to_quat, quat_to_matrix
from conr.motion.landmarks import INDEX, markers

# Below this elbow or knee bend the plane of the limb is unreliable and fades out.
_HINGE_SURE = math.sin(math.radians(15.0))
# The elbow's hinge axis is the upper arm's +Y on the left, -Y on the right (a forward bend); the
# knee's is -X on both sides (a backward bend).
_ARM_HINGE = {"left": (0.0, 1.0, 0.0), "right": (0.0, -1.0, 0.0)}
_LEG_HINGE = (-1.0, 0.0, 0.0)


def _unit(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _frame(primary: Tensor, secondary: Tensor) -> Tensor:
    """(..., 3) x2 -> (..., 3, 3) orthonormal frame: columns along primary, secondary (made
    perpendicular) and their cross product."""
    e1 = _unit(primary)
    e2 = _unit(secondary - (secondary * e1).sum(-1, keepdim=True) * e1)
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)


def _rotation(primary: Tensor, secondary: Tensor, rest_primary: Tensor, rest_secondary: Tensor) -> Tensor:
    """The rotation taking the rest pair of directions onto the observed pair: (..., 3, 3)."""
    return _frame(primary, secondary) @ _frame(rest_primary, rest_secondary).transpose(-1, -2)


def _half(r: Tensor) -> Tensor:
    """The rotation half-way from identity to `r` (same axis, half the angle)."""
    q = matrix_to_quat(r)  # (x, y, z, w) with w >= 0
    q = q + torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=q.dtype)
    return quat_to_matrix(q)


def _hinge(distal: Tensor, proximal: Tensor, fallback: Tensor) -> Tensor:
    """The bend axis of a limb (distal x proximal), faded into `fallback` where the limb is straight."""
    n = torch.linalg.cross(distal, proximal)
    sine = n.norm(dim=-1, keepdim=True) / (distal.norm(dim=-1, keepdim=True) * proximal.norm(dim=-1, keepdim=True)
                                           ).clamp_min(1e-12)
    w = (sine / _HINGE_SURE).clamp(0, 1)
    return w * _unit(n) + (1 - w) * fallback


def solve_rotations(points: Tensor) -> Tensor:
    """(T, 33, 3) landmarks in our frame (Y up, facing +Z) -> (T, J, 3, 3) local rotations of
    `humanoid_skeleton()`'s joints (HUMANOID_BONES order), on top of its rest pose. Scale-free."""
    points = points.double()
    skel, _ = humanoid_skeleton()
    rest = markers(skel.rest_global())  # (33, 3)
    frames = points.shape[0]

    def at(name: str, rest_pose: bool = False) -> Tensor:
        return rest[INDEX[name]] if rest_pose else points[:, INDEX[name]]

    def mid(a: str, b: str, rest_pose: bool = False) -> Tensor:
        return (at(a, rest_pose) + at(b, rest_pose)) / 2

    def solved(p: Tensor, s: Tensor, p0: Tensor, s0: Tensor) -> Tensor:
        return _rotation(p, s, p0.expand_as(p), s0.expand_as(s))

    g: dict[str, Tensor] = {}
    up = mid("left_shoulder", "right_shoulder") - mid("left_hip", "right_hip")
    up0 = mid("left_shoulder", "right_shoulder", True) - mid("left_hip", "right_hip", True)
    # Hip landmarks are guessed under skirts and coats: where the hips look much narrower than the
    # skeleton's (against the torso's length), the shoulder line steers the hips' direction instead.
    hip_line, hip_line0 = at("left_hip") - at("right_hip"), at("left_hip", True) - at("right_hip", True)
    shoulder_line = at("left_shoulder") - at("right_shoulder")
    width = (hip_line.norm(dim=-1, keepdim=True) / up.norm(dim=-1, keepdim=True).clamp_min(1e-12)) / \
        (hip_line0.norm() / up0.norm())
    trust = (2 * width).clamp(0, 1)
    hip_dir = trust * _unit(hip_line) + (1 - trust) * _unit(shoulder_line)
    g["hips"] = solved(hip_dir, up, hip_line0, up0)
    chest = solved(at("left_shoulder") - at("right_shoulder"), up,
                   at("left_shoulder", True) - at("right_shoulder", True), up0)
    g["spine"] = g["hips"] @ _half(g["hips"].transpose(-1, -2) @ chest)
    g["chest"] = chest
    ears, ears0 = mid("left_ear", "right_ear"), mid("left_ear", "right_ear", True)
    head = solved(at("left_ear") - at("right_ear"), at("nose") - ears,
                  at("left_ear", True) - at("right_ear", True), at("nose", True) - ears0)
    g["neck"] = chest @ _half(chest.transpose(-1, -2) @ head)
    g["head"] = head

    for side in ("left", "right"):
        def lm(name: str, rest_pose: bool = False) -> Tensor:
            return at(f"{side}_{name}", rest_pose)

        g[f"{side}Shoulder"] = chest
        hinge0 = torch.tensor(_ARM_HINGE[side], dtype=torch.float64)
        upper, fore = lm("elbow") - lm("shoulder"), lm("wrist") - lm("elbow")
        upper0, fore0 = lm("elbow", True) - lm("shoulder", True), lm("wrist", True) - lm("elbow", True)
        hinge = _hinge(fore, upper, (chest @ hinge0[:, None])[..., 0])
        g[f"{side}UpperArm"] = solved(upper, hinge, upper0, hinge0)
        g[f"{side}LowerArm"] = solved(fore, (g[f"{side}UpperArm"] @ hinge0[:, None])[..., 0], fore0, hinge0)
        palm = (lm("index") + lm("pinky")) / 2 - lm("wrist")
        palm0 = (lm("index", True) + lm("pinky", True)) / 2 - lm("wrist", True)
        g[f"{side}Hand"] = solved(palm, lm("index") - lm("pinky"), palm0, lm("index", True) - lm("pinky", True))

        knee0 = torch.tensor(_LEG_HINGE, dtype=torch.float64)
        thigh, shin = lm("knee") - lm("hip"), lm("ankle") - lm("knee")
        thigh0, shin0 = lm("knee", True) - lm("hip", True), lm("ankle", True) - lm("knee", True)
        hinge = _hinge(shin, thigh, (g["hips"] @ knee0[:, None])[..., 0])
        g[f"{side}UpperLeg"] = solved(thigh, hinge, thigh0, knee0)
        g[f"{side}LowerLeg"] = solved(shin, (g[f"{side}UpperLeg"] @ knee0[:, None])[..., 0], shin0, knee0)
        # The heel landmark is too unsure to roll the foot: its sideways axis follows the knee's.
        sole, sole0 = lm("foot_index") - lm("ankle"), lm("foot_index", True) - lm("ankle", True)
        g[f"{side}Foot"] = solved(sole, (g[f"{side}LowerLeg"] @ knee0[:, None])[..., 0], sole0, knee0)
        g[f"{side}Toes"] = g[f"{side}Foot"]

    local = torch.empty(frames, len(HUMANOID_BONES), 3, 3, dtype=torch.float64)
    for j, name in enumerate(HUMANOID_BONES):
        p = skel.parents[j]
        local[:, j] = g[name] if p < 0 else g[HUMANOID_BONES[p]].transpose(-1, -2) @ g[name]
    return local
