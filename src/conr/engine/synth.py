"""Synthetic training data: procedural characters, their sheets, UDP pose sequences and targets.

Layout of an output folder (built in a temporary sibling folder and renamed into place at the
end, so an interrupted run leaves nothing half-written):

    manifest.json
    char_0000/sheet/view_00.png ...   RGBA character sheet (A-pose, several yaw angles)
    char_0000/sheet/view_00.npz ...   the sheet views' UDP (ground truth for the UDP parser)
    char_0000/udp/00000.npz ...       UDP frames of the motion (key 'i', float32 (H, W, 4))
    char_0000/target/00000.png ...    ground-truth RGBA of the same frames
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from conr.engine.motions import procedural_motion, stand
from conr.engine.procedural import character
from conr.engine.scene import SHEET_YAWS, camera_dict, pose_by_motion, sequence_camera, write_frames, write_sheet
from conr.engine.renderer import CelStyle
from conr.engine.udp import UDPNormalizer
from conr.errors import ConrError
from conr.io import atomic_dir, atomic_write_bytes, check_new_dir

MOTIONS = ("walk", "wave", "dance", "random", "stand")
MANIFEST_VERSION = 1


def synthesize(
    out_dir: str | Path,
    seed: int = 0,
    count: int = 1,
    motion: str = "random",
    frames: int | None = None,
    size: int = 512,
    views: int = 4,
    projection: str = "perspective",
    yaw: float = 0.0,
    detail: float = 1.0,
    targets: bool = True,
    overwrite: bool = False,
    device: str = "cpu",
    style: CelStyle | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Write `count` characters (seeds seed, seed+1, ...) with sheets, UDP frames and targets; return the manifest."""
    out = Path(out_dir)
    if motion not in MOTIONS:
        raise ConrError(f"unknown motion {motion!r}", hint=f"use one of: {', '.join(MOTIONS)}")
    if not 1 <= views <= len(SHEET_YAWS):
        raise ConrError(f"--sheet-views must be between 1 and {len(SHEET_YAWS)}, got {views}")
    if not 16 <= size <= 8192:
        raise ConrError(f"size must be between 16 and 8192, got {size}")
    if count < 1 or (frames is not None and frames < 1):
        raise ConrError("--characters and --poses-per-character must be at least 1")
    check_new_dir(out, overwrite)
    with atomic_dir(out) as tmp:
        manifest = _build(tmp, seed, count, motion, frames, size, views, projection, yaw, detail, targets, device,
                          style, log)
        atomic_write_bytes(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def _build(root: Path, seed: int, count: int, motion_name: str, frames: int | None, size: int, views: int,
           projection: str, yaw: float, detail: float, targets: bool, device: str, style: CelStyle | None,
           log: Callable[[str], None]) -> dict:
    chars = []
    for k in range(count):
        cseed = seed + k
        cid = f"char_{k:04d}"
        spec, mesh = character(cseed, detail)
        norm = UDPNormalizer.from_vertices(mesh.rest_vertices())
        log(f"{cid}: seed {cseed}, {spec.hair_style} hair, {mesh.num_faces} triangles")

        # Sheet: one A-pose, several views, each framed on its own.
        sheet_pose, _ = pose_by_motion(mesh, stand())
        sheet = write_sheet(mesh, sheet_pose[0], size, views, root / cid / "sheet", projection, device=device,
                            normalizer=norm, style=style)

        motion = procedural_motion(motion_name, frames, seed=cseed)
        posed, _ = pose_by_motion(mesh, motion)
        cam = sequence_camera(posed, size, yaw=yaw, projection=projection)
        udp_names, rgba_names = write_frames(mesh, posed, cam, norm, root / cid / "udp",
                                             root / cid / "target" if targets else None, device, style)
        chars.append({
            "id": cid,
            "seed": cseed,
            "spec": spec.to_dict(),
            "triangles": mesh.num_faces,
            "udp_normalizer": norm.to_dict(),
            "sheet": sheet,
            "motion": {"name": motion_name, "frames": motion.num_frames, "fps": motion.fps},
            "camera": camera_dict(cam),
            "udp": [f"udp/{n}" for n in udp_names],
            "target": [f"target/{n}" for n in rgba_names],
        })
    return {"version": MANIFEST_VERSION, "generator": "conr synth", "seed": seed, "size": size,
            "projection": projection, "torch": torch.__version__, "characters": chars}
