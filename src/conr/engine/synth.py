"""Synthetic training data: procedural characters, their sheets, UDP pose sequences and targets.

Layout of an output folder (built in a temporary sibling folder and renamed into place at the
end, so an interrupted run leaves nothing half-written):

    manifest.json
    char_0000/sheet/view_00.png ...   RGBA character sheet (A-pose, T-pose or posed; several yaw angles)
    char_0000/sheet/view_00.npz ...   the sheet views' UDP (ground truth for the UDP parser)
    char_0000/udp/00000.npz ...       UDP frames of the motion (key 'i', float32 (H, W, 4))
    char_0000/target/00000.png ...    ground-truth RGBA of the same frames
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

import numpy as np

from conr.engine.motions import Motion, procedural_motion, sheet_poses, stand, t_pose
from conr.engine.procedural import character
from conr.engine.scene import SHEET_YAWS, camera_dict, pose_by_motion, sequence_camera, write_frames, write_sheet
from conr.engine.renderer import CelStyle
from conr.engine.styles import STYLES, draw_style
from conr.engine.udp import UDPNormalizer
from conr.errors import ConrError
from conr.files.io import atomic_dir, atomic_write_bytes, check_new_dir

MOTIONS = ("walk", "wave", "dance", "random", "stand")
SHEET_POSES = ("a", "t", "posed")
MAX_CHARACTERS = 100_000
MAX_POSES = 10_000
MAX_DETAIL = 4.0  # tessellation factor: 4 already gives ~125,000 triangles a character
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
    styles: tuple[str, ...] = STYLES,
    style_seed: int = 0,
    sheet_pose: str = "a",
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Write `count` characters (seeds seed, seed+1, ...) with sheets, UDP frames and targets; return the manifest.

    Each character is drawn in a style from `styles` (picked with its parameters from the character's
    seed and `style_seed`), unless `style` fixes one shading for all (then sheets are clean renders).
    `sheet_pose`: 'a' (A-pose), 't' (T-pose) or 'posed' (each view in its own pose and turn)."""
    out = Path(out_dir)
    if motion not in MOTIONS:
        raise ConrError(f"unknown motion {motion!r}", hint=f"use one of: {', '.join(MOTIONS)}")
    if not 1 <= views <= len(SHEET_YAWS):
        raise ConrError(f"--sheet-views must be between 1 and {len(SHEET_YAWS)}, got {views}")
    if not 16 <= size <= 8192:
        raise ConrError(f"size must be between 16 and 8192, got {size}")
    if count < 1 or (frames is not None and frames < 1):
        raise ConrError("--characters and --poses-per-character must be at least 1")
    if count > MAX_CHARACTERS or (frames is not None and frames > MAX_POSES):
        raise ConrError(f"--characters is capped at {MAX_CHARACTERS} and --poses-per-character at {MAX_POSES} "
                        f"(got {count} and {frames})", hint="make a large data set in several runs with other --seed values")
    if not (np.isfinite(yaw) and -360.0 <= yaw <= 360.0):
        raise ConrError(f"--yaw must be a number of degrees between -360 and 360, got {yaw}")
    if not (np.isfinite(detail) and 0.1 <= detail <= MAX_DETAIL):
        raise ConrError(f"--detail must be between 0.1 and {MAX_DETAIL:g}, got {detail}",
                        hint="1 is the default tessellation; 2 doubles it")
    if sheet_pose not in SHEET_POSES:
        raise ConrError(f"unknown sheet pose {sheet_pose!r}", hint=f"use one of: {', '.join(SHEET_POSES)}")
    if not 0 <= style_seed < 2 ** 32:
        raise ConrError(f"--style-seed must be between 0 and {2 ** 32 - 1}, got {style_seed}")
    if not styles or any(n not in STYLES for n in styles):
        raise ConrError(f"unknown style in {', '.join(styles) or 'an empty list'}", hint=f"use: {', '.join(STYLES)}")
    check_new_dir(out, overwrite)
    with atomic_dir(out) as tmp:
        manifest = _build(tmp, seed, count, motion, frames, size, views, projection, yaw, detail, targets, device,
                          style, tuple(styles), style_seed, sheet_pose, log)
        atomic_write_bytes(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def _build(root: Path, seed: int, count: int, motion_name: str, frames: int | None, size: int, views: int,
           projection: str, yaw: float, detail: float, targets: bool, device: str, fixed: CelStyle | None,
           styles: tuple[str, ...], style_seed: int, sheet_pose: str, log: Callable[[str], None]) -> dict:
    chars = []
    for k in range(count):
        cseed = seed + k
        cid = f"char_{k:04d}"
        spec, mesh = character(cseed, detail)
        norm = UDPNormalizer.from_vertices(mesh.rest_vertices())
        look = draw_style(cseed, styles, style_seed)
        style = fixed if fixed is not None else look.shading
        log(f"{cid}: seed {cseed}, {spec.hair_style} hair, {spec.outfit}, {look.name if fixed is None else 'fixed'} "
            f"style, {mesh.num_faces} triangles")

        # Sheet: several views, each framed on its own.
        pose, yaws = _sheet_poses(sheet_pose, views, cseed)
        posed_sheet, _ = pose_by_motion(mesh, pose)
        sheet = write_sheet(mesh, posed_sheet if sheet_pose == "posed" else posed_sheet[0], size, views,
                            root / cid / "sheet", projection, device=device, normalizer=norm, style=style, yaws=yaws,
                            cutout=None if fixed is not None else look.cutout)

        motion = procedural_motion(motion_name, frames, seed=cseed)
        posed, _ = pose_by_motion(mesh, motion)
        cam = sequence_camera(posed, size, yaw=yaw, projection=projection)
        udp_names, rgba_names = write_frames(mesh, posed, cam, norm, root / cid / "udp",
                                             root / cid / "target" if targets else None, device, style)
        chars.append({
            "id": cid,
            "seed": cseed,
            "spec": spec.to_dict(),
            "style": look.to_dict() if fixed is None else {"name": "fixed", "shading": asdict(fixed)},
            "sheet_pose": sheet_pose,
            "triangles": mesh.num_faces,
            "udp_normalizer": norm.to_dict(),
            "sheet": sheet,
            "motion": {"name": motion_name, "frames": motion.num_frames, "fps": motion.fps},
            "camera": camera_dict(cam),
            "udp": [f"udp/{n}" for n in udp_names],
            "target": [f"target/{n}" for n in rgba_names],
        })
    return {"version": MANIFEST_VERSION, "generator": "conr synth", "seed": seed, "size": size,
            "projection": projection, "styles": list(styles) if fixed is None else ["fixed"], "style_seed": style_seed,
            "torch": torch.__version__, "characters": chars}


def _sheet_poses(kind: str, views: int, seed: int) -> tuple[Motion, list[float]]:
    """The sheet's pose(s) and view angles: an A-pose, the rest T-pose, or per view a pose and a turn."""
    yaws = list(SHEET_YAWS[:views])
    if kind == "a":
        return stand(), yaws
    if kind == "t":
        return t_pose(), yaws
    rng = np.random.default_rng([seed, 0x5E7])
    turn = rng.uniform(-25, 25, views)
    return sheet_poses(views, seed=seed + 104729), [y + float(t) for y, t in zip(yaws, turn)]
