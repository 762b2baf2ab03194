"""MediaPipe's 33 body landmarks, and where each sits on our humanoid skeleton.

The pose landmarker (BlazePose) reports 33 points per frame. To turn them into joint rotations we
need to know where each point is on our skeleton: `MARKERS` attaches every landmark to a joint
with an offset in that joint's rest frame (the procedural skeleton's rest frames are
world-aligned: T-pose, facing +Z, left on +X, 1 unit tall). `markers` computes the landmarks
of any pose of that skeleton, which is how the solver's rest frames are built and how tests
make landmarks with a known answer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from conr.engine.procedural import HUMANOID_BONES

NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
INDEX = {n: i for i, n in enumerate(NAMES)}

# Left side and centre: (joint, offset in the joint's rest frame). The right side mirrors X.
_LEFT: dict[str, tuple[str, tuple[float, float, float]]] = {
    "nose": ("head", (0.0, 0.10, 0.11)),
    "left_eye_inner": ("head", (0.015, 0.13, 0.095)),
    "left_eye": ("head", (0.03, 0.13, 0.09)),
    "left_eye_outer": ("head", (0.045, 0.13, 0.08)),
    "left_ear": ("head", (0.075, 0.11, 0.0)),
    "mouth_left": ("head", (0.02, 0.06, 0.095)),
    "left_shoulder": ("leftUpperArm", (0.0, 0.0, 0.0)),
    "left_elbow": ("leftLowerArm", (0.0, 0.0, 0.0)),
    "left_wrist": ("leftHand", (0.0, 0.0, 0.0)),
    "left_pinky": ("leftHand", (0.07, 0.0, -0.025)),
    "left_index": ("leftHand", (0.08, 0.0, 0.02)),
    "left_thumb": ("leftHand", (0.04, 0.0, 0.04)),
    "left_hip": ("leftUpperLeg", (0.0, 0.0, 0.0)),
    "left_knee": ("leftLowerLeg", (0.0, 0.0, 0.0)),
    "left_ankle": ("leftFoot", (0.0, 0.0, 0.0)),
    "left_heel": ("leftFoot", (0.0, -0.05, -0.05)),
    "left_foot_index": ("leftToes", (0.0, 0.0, 0.05)),
}


def _marker_table() -> tuple[list[int], Tensor]:
    joints, offsets = [], []
    for name in NAMES:
        if name in _LEFT:
            joint, off = _LEFT[name]
        else:
            mirror = name.replace("right", "left")
            joint, (x, y, z) = _LEFT[mirror]
            joint, off = joint.replace("left", "right"), (-x, y, z)
        joints.append(HUMANOID_BONES.index(joint))
        offsets.append(off)
    return joints, torch.tensor(np.array(offsets), dtype=torch.float64)


MARKER_JOINTS, MARKER_OFFSETS = _marker_table()


def markers(globals_: Tensor) -> Tensor:
    """(..., J, 4, 4) global transforms of the humanoid skeleton -> (..., 33, 3) landmark positions."""
    g = globals_.double()[..., MARKER_JOINTS, :, :]  # (..., 33, 4, 4)
    return (g[..., :3, :3] @ MARKER_OFFSETS.to(g.device)[..., None])[..., 0] + g[..., :3, 3]


def from_mediapipe_world(points: np.ndarray) -> np.ndarray:
    """MediaPipe world landmarks (x right in the image, y down, z away from the camera; metres, origin
    between the hips) -> our frame (Y up, +Z towards the camera, a person facing it has left on +X)."""
    return points * np.array([1.0, -1.0, -1.0])
