"""From a video of a person to a motion of our humanoid skeleton (what `conr motion` writes as BVH).

Steps: landmarks per frame (`estimator`), frames without a person filled from their neighbours,
One Euro smoothing, joint rotations (`solve`), then the root:
- facing and lean come with the hips' rotation;
- sideways travel follows the hips across the image, in metres from the body's own size there;
- height keeps the lowest foot on the floor in every frame, so standing feet neither sink nor
  float (jumps are lost: a single camera cannot tell a jump from a step towards it);
- depth (towards or away from the camera) is not recovered and stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from conr.engine.procedural import HUMANOID_BONES, humanoid_skeleton
from conr.engine.skeleton import Skeleton
from conr.errors import ConrError
from conr.motion.estimator import PoseTrack, open_video, track_frames
from conr.motion.filters import OneEuro, fill_gaps, runs
from conr.motion.landmarks import INDEX, markers
from conr.motion.sides import choose_sides, swapped, untwist_legs
from conr.motion.solve import solve_rotations

# BVH joint names other tools and our own reader recognise (Mixamo / CMU style).
BVH_NAMES = {
    "hips": "Hips", "spine": "Spine", "chest": "Chest", "neck": "Neck", "head": "Head",
    "leftShoulder": "LeftShoulder", "leftUpperArm": "LeftArm", "leftLowerArm": "LeftForeArm", "leftHand": "LeftHand",
    "leftUpperLeg": "LeftUpLeg", "leftLowerLeg": "LeftLeg", "leftFoot": "LeftFoot", "leftToes": "LeftToeBase",
}
BVH_NAMES.update({"right" + k[4:]: "Right" + v[4:] for k, v in list(BVH_NAMES.items()) if k.startswith("left")})
# Our skeleton is about 1.55 units from the soles to the top of the head; BVH is written in
# centimetres for a figure about 1.6 m tall.
BVH_SCALE = 105.0
_FEET = [INDEX[f"{s}_{p}"] for s in ("left", "right") for p in ("heel", "foot_index", "ankle")]
_LEGS = [("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
         ("right_knee", "right_ankle")]
_TORSO = [("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
          ("left_hip", "right_hip")]


@dataclass
class CapturedMotion:
    skeleton: Skeleton  # humanoid_skeleton(): HUMANOID_BONES order
    rotations: Tensor  # (T, J, 3, 3) local rotations on top of the rest pose
    root_translation: Tensor  # (T, 3) in skeleton units
    fps: float
    track: PoseTrack
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.rotations.shape[0])

    def globals(self) -> Tensor:
        """(T, J, 4, 4) global transforms of the skeleton in every frame."""
        return self.skeleton.forward(self.rotations.float(), self.root_translation.float())

    def save_bvh(self, path: str | Path) -> None:
        from conr.engine.formats.bvh import save_bvh

        save_bvh(path, self.skeleton, self.rotations.float(), self.root_translation.float(), self.fps,
                 names=[BVH_NAMES[n] for n in HUMANOID_BONES], scale=BVH_SCALE)


def _lengths(points: np.ndarray, pairs: list[tuple[str, str]]) -> np.ndarray:
    """(T,) summed lengths of the segments between the named landmarks."""
    return sum(np.linalg.norm(points[:, INDEX[a]] - points[:, INDEX[b]], axis=-1) for a, b in pairs)


def _gap_warning(found: np.ndarray) -> str | None:
    missing = runs(~found)
    if not missing:
        return None
    count = int((~found).sum())
    spans = ", ".join(f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in missing[:8])
    more = f" and {len(missing) - 8} more stretches" if len(missing) > 8 else ""
    return f"no person found in {count} of {len(found)} frames ({spans}{more}); filled from their neighbours"


def motion_from_track(track: PoseTrack, smooth: OneEuro | None = OneEuro()) -> CapturedMotion:
    """Joint rotations and root motion of `humanoid_skeleton()` from a landmark track."""
    if not track.found.any():
        raise ConrError("no person was found in any frame",
                        hint="the whole body should be in view, lit, and not too small in the frame")
    warnings = [w for w in [_gap_warning(track.found)] if w]
    world, image = track.world.copy(), track.image.copy()
    flip = choose_sides(world, track.found)
    world[flip], image[flip] = swapped(world[flip], image[flip])
    untwist_legs(world, image)
    world, image = fill_gaps(world, track.found), fill_gaps(image, track.found)
    if smooth is not None:
        world, image = smooth(world, track.fps), smooth(image, track.fps)
    rotations = solve_rotations(torch.from_numpy(world))

    skel, _ = humanoid_skeleton()
    rest = markers(skel.rest_global()).numpy()[None]
    # Metres per pixel from the body's own size in the image; skeleton units per metre from the legs.
    metres_per_px = np.median(_lengths(world, _TORSO) / np.maximum(_lengths(image, _TORSO), 1e-6))
    units_per_metre = _lengths(rest, _LEGS)[0] / max(float(np.median(_lengths(world, _LEGS))), 1e-6)
    hips_x = (image[:, INDEX["left_hip"], 0] + image[:, INDEX["right_hip"], 0]) / 2
    root = torch.zeros(len(world), 3, dtype=torch.float64)
    root[:, 0] = torch.from_numpy((hips_x - hips_x[0]) * metres_per_px * units_per_metre)
    feet = markers(skel.forward(rotations.float(), root.float()))[:, _FEET, 1]  # (T, 6) heights
    floor = float(rest[0, _FEET, 1].min())
    root[:, 1] = floor - feet.min(dim=1).values
    return CapturedMotion(skel, rotations, root, track.fps, track, warnings)


def capture(video: str | Path, fps: float | None = None, frame_range: tuple[int | None, int | None] | None = None,
            smooth: OneEuro | None = OneEuro(), progress: Callable[[int], None] = lambda n: None
            ) -> CapturedMotion:
    """The motion of the person in `video` (frames A to B-1 of `frame_range`, at `fps`)."""
    info, frames = open_video(video, fps, frame_range)
    try:
        track = track_frames(frames, info.fps, progress)
        return motion_from_track(track, smooth)
    except ConrError as e:
        raise ConrError(e.problem, e.path or video, e.hint) from None
