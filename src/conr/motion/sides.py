"""Telling the person's left from right when the pose landmarker is unsure.

From one camera, a body seen from the front and the same body seen from the back with depth
reversed (and left and right swapped) project to the same picture. The landmarker sometimes
picks the wrong one, and can flip between them from one frame to the next, most of all on drawn
characters: arms and legs would then swap sides in the middle of a move. Each frame is given the
reading, as reported or swapped and depth-reversed, that keeps the body moving least between
frames (a shortest path over the two readings), with a slight preference for facing the camera
where both read the same.
"""

from __future__ import annotations

import numpy as np

from conr.motion.landmarks import INDEX, NAMES

_SWAP = np.array([INDEX[n.replace("left", "@").replace("right", "left").replace("@", "right")] for n in NAMES])
# Metres: how much movement facing the camera is worth, where continuity cannot decide.
_FACING_PRIOR = 0.03


def swapped(world: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The other reading of landmarks, (..., 33, 3) world and (..., 33, 2) image: left and right
    exchanged, depth reversed."""
    return _other_world(world), image[..., _SWAP, :]


def _other_world(world: np.ndarray) -> np.ndarray:
    return world[..., _SWAP, :] * np.array([1.0, 1.0, -1.0])


def facing_z(world: np.ndarray) -> np.ndarray:
    """(..., 33, 3) -> (...) the Z of the torso's forward direction (+1: facing the camera)."""
    i = INDEX
    left = world[..., i["left_shoulder"], :] - world[..., i["right_shoulder"], :] + \
        world[..., i["left_hip"], :] - world[..., i["right_hip"], :]
    up = world[..., i["left_shoulder"], :] + world[..., i["right_shoulder"], :] - \
        world[..., i["left_hip"], :] - world[..., i["right_hip"], :]
    forward = np.cross(left, up)
    return forward[..., 2] / np.maximum(np.linalg.norm(forward, axis=-1), 1e-9)


_LEG_PARTS = ("hip", "knee", "ankle", "heel", "foot_index")
_LEGS_SWAPPED = np.arange(len(NAMES))
for _p in _LEG_PARTS:
    _LEGS_SWAPPED[[INDEX[f"left_{_p}"], INDEX[f"right_{_p}"]]] = INDEX[f"right_{_p}"], INDEX[f"left_{_p}"]


def untwist_legs(world: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Swap the leg labels, in place, of frames whose hip line points against the shoulder line (a
    torso cannot turn half-way round: the landmarker mixed up the legs alone). Returns that mask."""
    i = INDEX
    hips = world[:, i["left_hip"]] - world[:, i["right_hip"]]
    shoulders = world[:, i["left_shoulder"]] - world[:, i["right_shoulder"]]
    bad = (hips * shoulders).sum(-1) < 0
    for a in (world, image):
        a[bad] = a[bad][:, _LEGS_SWAPPED]
    return bad


def choose_sides(world: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(T,) bool: frames whose landmarks should be swapped (see the module's docstring)."""
    idx = np.flatnonzero(found)
    swap = np.zeros(len(found), bool)
    if len(idx) == 0:
        return swap
    readings = np.stack([world[idx], _other_world(world[idx])])  # (2, n, 33, 3)
    unary = _FACING_PRIOR * np.maximum(0.0, -facing_z(readings))  # (2, n)
    cost = unary[:, 0].copy()
    back = np.zeros((len(idx), 2), int)
    for t in range(1, len(idx)):
        # move[a, b]: mean landmark travel from reading a at the previous frame to reading b now
        move = np.linalg.norm(readings[:, None, t - 1] - readings[None, :, t], axis=-1).mean(-1)
        total = cost[:, None] + move
        back[t] = total.argmin(0)
        cost = total.min(0) + unary[:, t]
    state = int(cost.argmin())
    for t in range(len(idx) - 1, -1, -1):
        swap[idx[t]] = state == 1
        state = back[t, state]
    return swap
