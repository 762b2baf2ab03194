"""Motions (per-frame local joint rotations) and procedural ones for the humanoid skeleton.

Local rotations act in each joint's rest frame; the procedural skeleton's rest frames are
world-aligned (T-pose, facing +Z, left on +X), so for it: X bends a leg forward (negative) or
a knee backward (positive), Z lowers the left arm (negative) and the right arm (positive),
Y bends the left elbow forward (negative) and the right elbow forward (positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from conr.engine.procedural import HUMANOID_BONES
from conr.engine.transforms import euler_to_matrix


@dataclass
class Motion:
    joint_names: list[str]
    rotations: Tensor  # (T, J, 3, 3) local rotations on top of the rest pose
    root_translation: Tensor  # (T, 3) offset of the root from its rest position
    fps: float = 30.0

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def for_skeleton(self, names: list[str]) -> tuple[Tensor, list[str]]:
        """(T, J', 3, 3) rotations reordered for a skeleton with `names`; also the motion's unknown joints."""
        out = torch.eye(3).expand(self.num_frames, len(names), 3, 3).clone()
        index = {n: i for i, n in enumerate(names)}
        missing = []
        for j, n in enumerate(self.joint_names):
            if n in index:
                out[:, index[n]] = self.rotations[:, j]
            else:
                missing.append(n)
        return out, missing


# Joint limits in degrees, (min, max) per X, Y, Z local axis, for the left side; mirrored for the right.
JOINT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "hips": ((-10, 10), (-30, 30), (-8, 8)),
    "spine": ((-10, 25), (-20, 20), (-10, 10)),
    "chest": ((-10, 15), (-20, 20), (-8, 8)),
    "neck": ((-15, 20), (-30, 30), (-10, 10)),
    "head": ((-20, 20), (-35, 35), (-15, 15)),
    "leftShoulder": ((0, 0), (-10, 10), (-5, 15)),
    "leftUpperArm": ((-60, 60), (-40, 40), (-80, 60)),
    "leftLowerArm": ((0, 0), (-120, 0), (0, 0)),
    "leftHand": ((-30, 30), (-20, 20), (-40, 40)),
    "leftUpperLeg": ((-80, 25), (-20, 20), (-5, 30)),
    "leftLowerLeg": ((0, 110), (0, 0), (0, 0)),
    "leftFoot": ((-25, 30), (-10, 10), (-10, 10)),
    "leftToes": ((0, 0), (0, 0), (0, 0)),
}


def _limits(name: str) -> tuple[tuple[float, float], ...]:
    if name.startswith("right"):
        lx, ly, lz = JOINT_LIMITS["left" + name[5:]]
        # Mirroring across x flips the sign of Y and Z rotations.
        return lx, (-ly[1], -ly[0]), (-lz[1], -lz[0])
    return JOINT_LIMITS[name]


def _motion_from_degrees(euler: np.ndarray, root: np.ndarray, fps: float) -> Motion:
    """(T, J, 3) XYZ Euler degrees over HUMANOID_BONES -> Motion (R = Rx @ Ry @ Rz)."""
    rot = euler_to_matrix(torch.tensor(np.radians(euler), dtype=torch.float32), "XYZ")
    return Motion(list(HUMANOID_BONES), rot, torch.tensor(root, dtype=torch.float32), fps)


def _empty(frames: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    return np.zeros((frames, len(HUMANOID_BONES), 3)), np.zeros((frames, 3)), {n: i for i, n in enumerate(HUMANOID_BONES)}


def _arms_down(e: np.ndarray, j: dict[str, int], angle: float = 68.0) -> None:
    e[:, j["leftUpperArm"], 2] -= angle
    e[:, j["rightUpperArm"], 2] += angle
    e[:, j["leftLowerArm"], 1] -= 10
    e[:, j["rightLowerArm"], 1] += 10


def t_pose(frames: int | None = None, fps: float = 30.0) -> Motion:
    """The rest pose: arms straight out to the sides."""
    e, root, _ = _empty(frames or 1)
    return _motion_from_degrees(e, root, fps)


def stand(frames: int | None = None, fps: float = 30.0) -> Motion:
    """Relaxed A-pose, the pose of a character sheet."""
    e, root, j = _empty(frames or 1)
    _arms_down(e, j, 62.0)
    return _motion_from_degrees(e, root, fps)


def walk(frames: int | None = None, fps: float = 30.0, cycle_s: float = 1.0) -> Motion:
    """A walk cycle in place (the root bobs but does not travel); default one cycle."""
    frames = frames or max(1, round(fps * cycle_s))
    e, root, j = _empty(frames)
    _arms_down(e, j)
    ph = 2 * np.pi * np.arange(frames) / (fps * cycle_s)
    for side, s in (("left", 1), ("right", -1)):
        p = ph if s == 1 else ph + np.pi
        e[:, j[f"{side}UpperLeg"], 0] = -28 * np.sin(p)
        e[:, j[f"{side}LowerLeg"], 0] = 30 * np.clip(np.sin(p - 1.2), 0, None) + 5
        e[:, j[f"{side}Foot"], 0] = -8 * np.sin(p)
        # Arms swing against the legs: rotation about X of the lowered arm.
        e[:, j[f"{side}UpperArm"], 0] = 22 * np.sin(p)
        e[:, j[f"{side}LowerArm"], 1] += -s * (12 + 10 * np.sin(p))
    e[:, j["hips"], 1] = 6 * np.sin(ph)
    e[:, j["chest"], 1] = -8 * np.sin(ph)
    root[:, 1] = -0.015 * np.abs(np.cos(ph))
    return _motion_from_degrees(e, root, fps)


def wave(frames: int | None = None, fps: float = 30.0) -> Motion:
    """Right hand raised and waving twice a second; the other arm rests. Default one second."""
    frames = frames or max(1, round(fps))
    e, root, j = _empty(frames)
    _arms_down(e, j)
    t = 2 * np.pi * np.arange(frames) / fps * 2.0
    e[:, j["rightUpperArm"], 2] = -40  # raised above the shoulder line
    e[:, j["rightUpperArm"], 0] = -15
    e[:, j["rightLowerArm"], 2] = -70 + 25 * np.sin(t)
    e[:, j["head"], 2] = 6 * np.sin(t / 2)
    e[:, j["head"], 1] = -10
    return _motion_from_degrees(e, root, fps)


def dance(frames: int | None = None, fps: float = 30.0, loop_s: float = 2.0) -> Motion:
    """A two-second loop: hips sway, arms pump up in turn, knees bounce on the beat. Default one loop."""
    frames = frames or max(1, round(fps * loop_s))
    e, root, j = _empty(frames)
    _arms_down(e, j)
    t = 2 * np.pi * np.arange(frames) / (fps * loop_s)
    beat = np.abs(np.sin(2 * t))
    e[:, j["hips"], 2] = 8 * np.sin(t)
    e[:, j["spine"], 2] = -6 * np.sin(t)
    e[:, j["chest"], 1] = 12 * np.sin(t)
    for side, s, p in (("left", 1, 0.0), ("right", -1, np.pi)):
        up = 0.5 + 0.5 * np.sin(t + p)
        e[:, j[f"{side}UpperArm"], 2] += s * 110 * up
        e[:, j[f"{side}LowerArm"], 1] += -s * 60 * (1 - up)
        e[:, j[f"{side}UpperLeg"], 0] = -18 * beat
        e[:, j[f"{side}LowerLeg"], 0] = 30 * beat
        e[:, j[f"{side}Foot"], 0] = -8 * beat
    root[:, 1] = -0.045 * beat
    root[:, 0] = 0.03 * np.sin(t)
    e[:, j["head"], 2] = 10 * np.sin(2 * t)
    return _motion_from_degrees(e, root, fps)


def random_poses(frames: int = 8, seed: int = 0, fps: float = 30.0) -> Motion:
    """Independent poses drawn within the joint limits (leaning towards the middle of each range)."""
    rng = np.random.default_rng(seed)
    e, root, j = _empty(frames)
    for name, i in j.items():
        lim = np.array(_limits(name))  # (3, 2)
        u = rng.beta(2.0, 2.0, size=(frames, 3))
        e[:, i] = lim[:, 0] + u * (lim[:, 1] - lim[:, 0])
    # Arms hang lower than the T-pose most of the time: shift the shoulders' raise angle down.
    e[:, j["leftUpperArm"], 2] -= 45.0
    e[:, j["rightUpperArm"], 2] += 45.0
    return _motion_from_degrees(e, root, fps)


def sheet_poses(frames: int = 4, seed: int = 0, fps: float = 30.0) -> Motion:
    """Poses an artist might draw a sheet in: the A-pose moved a little at every joint (arms raised or
    lowered, a step, a lean, the head turned), within the joint limits."""
    rng = np.random.default_rng(seed)
    e, root, j = _empty(frames)
    _arms_down(e, j, 62.0)
    for name, i in j.items():
        lim = np.array(_limits(name))  # (3, 2)
        e[:, i] = np.clip(e[:, i] + rng.normal(0, 1, (frames, 3)) * (lim[:, 1] - lim[:, 0]) * 0.15,
                          lim[:, 0] - 62.0 * (name.endswith("UpperArm")), lim[:, 1] + 62.0 * (name.endswith("UpperArm")))
    return _motion_from_degrees(e, root, fps)


PROCEDURAL = {"stand": stand, "walk": walk, "wave": wave, "dance": dance}


def procedural_motion(name: str, frames: int | None = None, seed: int = 0, fps: float = 30.0) -> Motion:
    if name == "random":
        return random_poses(frames or 8, seed, fps)
    if name not in PROCEDURAL:
        raise KeyError(name)
    return PROCEDURAL[name](frames, fps)

