"""Model + motion -> a folder of UDP frames (what `conr render` reads), via retargeting.

Output folder (built beside the target and renamed into place when complete):
    0.npz, 1.npz ...     UDP frames, key 'i', float32 (H, W, 4)
    rgba/0.png ...       optional cel-shaded RGBA of the same frames
    sheet/view_00.png    optional character sheet of the model
    poses.json           model, motion, frame rate, camera, UDP normalisation, warnings

The model is a file, or a procedural character (`procedural_model`); a bone map (`--bone-map`)
names the humanoid bones of a model or motion whose bone names are not recognised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from conr.engine.formats import MOTION_SUFFIXES, Model, load_model
from conr.engine.formats.pmx import MmdRig
from conr.engine.motions import PROCEDURAL
from conr.engine.procedural import HUMANOID_BONES, character, humanoid_skeleton
from conr.engine.retarget import (BONE_MAP_HINT, apply_bone_map, bone_list, check_bone_map, facing_yaw,
                                  match_humanoid, read_bone_map, retarget)
from conr.engine.camera import Camera
from conr.engine.renderer import CelStyle
from conr.engine.scene import (SHEET_YAWS, camera_dict, cameras_from_file, frame_corners, orbit_cameras, posed_frames,
                               sequence_camera, write_frames, write_sheet)
from conr.engine.skeleton import Skeleton
from conr.engine.udp import UDPNormalizer
from conr.errors import ConrError
from conr.files.io import atomic_dir, atomic_write_bytes, check_new_dir

PROCEDURAL_NAMES = tuple(PROCEDURAL) + ("random",)
MAX_SIZE = 8192  # the largest frame conr.files.io reads back


@dataclass
class MotionSource:
    """A motion as global transforms of its own skeleton, before retargeting."""

    rest: torch.Tensor  # (J, 4, 4) global rest transforms
    globals: torch.Tensor  # (T, J, 4, 4)
    bones: dict[str, int]  # canonical name -> joint index
    fps: float
    name: str
    warnings: list[str]
    path: Path | None = None  # the motion file; None for a built-in motion
    joint_names: list[str] | None = None  # the file's joints, which a bone map may name


@dataclass
class DirectMotion:
    """A motion already expressed on the model's own skeleton (its own animation, or VMD on PMX)."""

    globals: torch.Tensor  # (T, J, 4, 4)
    fps: float
    name: str
    warnings: list[str]


# The built-in motions are made frame by frame up to the end asked for (about 7 kB a frame).
MAX_PROCEDURAL_FRAMES = 100_000


def check_procedural_frames(name: str, end: int | None) -> None:
    """Refuse a built-in motion made up to an end frame past MAX_PROCEDURAL_FRAMES (they loop, so any
    end is possible; memory grows with it)."""
    if end is not None and end > MAX_PROCEDURAL_FRAMES:
        raise ConrError(f"the built-in motion {name!r} is made up to its last frame, here {end:,}, and at most "
                        f"{MAX_PROCEDURAL_FRAMES:,} frames are made",
                        hint=f"end the range at {MAX_PROCEDURAL_FRAMES:,} or before (the built-in motions loop)")


def procedural_source(name: str, frames: int | None, seed: int, fps: float | None = None) -> MotionSource:
    from conr.engine.motions import procedural_motion

    skel, _ = humanoid_skeleton()
    check_procedural_frames(name, frames)
    m = procedural_motion(name, frames, seed, fps or 30.0)
    g = skel.forward(m.rotations, m.root_translation)
    return MotionSource(skel.rest_global(), g, {b: i for i, b in enumerate(HUMANOID_BONES)}, m.fps, name, [])


def procedural_model(seed: int, detail: float = 1.0) -> Model:
    """The procedural character of `seed` (character 0 of `conr synth --seed SEED`) as a model; its
    path, `procedural:SEED`, only names it in messages and poses.json."""
    _, mesh = character(seed, detail)
    humanoid = {b: mesh.skeleton.index(b) for b in HUMANOID_BONES}
    return Model(mesh, humanoid, [], Path(f"procedural:{seed}"))


FrameRange = tuple[int | None, int | None]


def load_motion_source(spec: str, model: Model, fps: float | None, frame_range: FrameRange | None, seed: int,
                       animation: str | None, bone_map: dict[str, str] | None = None) -> MotionSource | DirectMotion:
    """Either a source to retarget, or a motion on the model's own skeleton; `frame_range` (A, B)
    picks output frames A to B-1 (at the output frame rate). `bone_map` (our bone -> joint name)
    overrides the humanoid bones matched by name in a motion file; a file source without hips is
    returned as it is (make_poses reports it)."""
    if animation is not None and not spec.lower().endswith((".glb", ".gltf", ".vrm")):
        raise ConrError(f"--animation {animation!r} picks an animation of a glTF motion file, but the motion is "
                        f"{spec!r}", hint="leave --animation out, or give a .glb/.gltf/.vrm file with animations")
    if spec in PROCEDURAL_NAMES:
        # Built-in motions loop: make as many frames as the range asks for.
        end = frame_range[1] if frame_range else None
        src = procedural_source(spec, end, seed, fps)
        pick = _pick_range(np.arange(src.globals.shape[0]), frame_range, spec)
        src.globals = src.globals[torch.as_tensor(pick)]
        return src
    path = Path(spec)
    suffix = path.suffix.lower()
    if not path.exists():
        raise ConrError("motion file not found", path=path,
                        hint=f"give a {', '.join(MOTION_SUFFIXES)} file, a video, or one of: {', '.join(PROCEDURAL_NAMES)}")
    from conr.motion.estimator import VIDEO_SUFFIXES

    if suffix in VIDEO_SUFFIXES:
        # A video of a person: their motion, estimated as `conr motion` does.
        from conr.motion.capture import capture

        captured = capture(path, fps, frame_range)
        return MotionSource(captured.skeleton.rest_global(), captured.globals(),
                            {b: i for i, b in enumerate(HUMANOID_BONES)}, captured.fps, path.name, captured.warnings)
    if suffix == ".bvh":
        from conr.engine.formats.bvh import load_bvh

        bvh = load_bvh(path)
        pick = _pick_range(_resample(bvh.num_frames, bvh.fps, fps), frame_range, path)
        names = bvh.skeleton.names
        bones = apply_bone_map(names, match_humanoid(names), bone_map or {})
        notes = []
        unknown = [n for i, n in enumerate(names) if i not in bones.values() and bvh.channels[i]]
        if unknown and "hips" in bones:
            notes.append(f"{path.name}: ignored {len(unknown)} joints with no humanoid equivalent: {', '.join(unknown)}")
        return MotionSource(bvh.skeleton.rest_global(), bvh.global_transforms(pick).float(), bones,
                            fps or bvh.fps, path.name, notes, path, list(names))
    if suffix == ".vmd":
        from conr.engine.formats.vmd import VMD_FPS, load_vmd
        from conr.engine.ik import pose_mmd

        vmd = load_vmd(path)
        if model.rig is None:
            raise ConrError("VMD motions can only drive PMX models", path=path,
                            hint="use a .pmx model, or a BVH / glTF motion for this model")
        pick = _pick_range(_resample(vmd.num_frames, VMD_FPS, fps), frame_range, path)
        g, missing = pose_mmd(model.mesh.skeleton, model.rig, vmd, pick)
        notes = [f"{model.path.name}: the motion moves bones the model lacks: {', '.join(missing)}"] if missing else []
        return DirectMotion(g, fps or VMD_FPS, path.name, notes)
    if suffix in (".glb", ".gltf", ".vrm"):
        same = path.resolve() == model.path.resolve()
        src_model = model if same else load_model(path)
        if not src_model.animations:
            raise ConrError("the file has no animations", path=path, hint="export it with its animation, or use a BVH")
        idx = _pick_animation(src_model, animation, path)
        anim = src_model.animations[idx]
        if not anim.keyed:
            raise ConrError(f"animation {anim.name!r} has no keyframes", path=path,
                            hint="export the animation with its keys, or pick another with --animation")
        pick = _pick_range(_resample(anim.local.shape[0], anim.fps, fps), frame_range, path)
        g = src_model.mesh.skeleton.global_from_local(anim.local[torch.as_tensor(pick)])
        if same:
            return DirectMotion(g, fps or anim.fps, f"{path.name}#{anim.name}", [])
        # The motion file's own texture warnings are of no concern here.
        names = src_model.mesh.skeleton.names
        return MotionSource(src_model.mesh.skeleton.rest_global(), g,
                            apply_bone_map(names, src_model.humanoid, bone_map or {}), fps or anim.fps,
                            f"{path.name}#{anim.name}", [], path, list(names))
    raise ConrError(f"unsupported motion format {suffix or '(no extension)'!r}", path=path,
                    hint=f"use one of {', '.join(MOTION_SUFFIXES)} or a procedural motion: {', '.join(PROCEDURAL_NAMES)}")


def _pick_animation(model: Model, animation: str | None, path: Path) -> int:
    if animation is None:
        return 0
    names = [a.name for a in model.animations]
    if animation in names:
        return names.index(animation)
    if animation.isdigit() and int(animation) < len(names):
        return int(animation)
    raise ConrError(f"no animation named {animation!r}", path=path, hint=f"available: {', '.join(names)}")


def _pick_range(idx: np.ndarray, frame_range: FrameRange | None, motion: str | Path) -> np.ndarray:
    """Output frames A to B-1 of the source frame indices `idx`, or a clear error outside them."""
    if frame_range is None:
        return idx
    a = 0 if frame_range[0] is None else frame_range[0]
    b = len(idx) if frame_range[1] is None else frame_range[1]
    if not 0 <= a < b <= len(idx):
        raise ConrError(f"frame range {a}:{b} is outside the motion, which has {len(idx)} frames (0 to {len(idx) - 1})",
                        path=motion, hint=f"use --frames A:B with 0 <= A < B <= {len(idx)}")
    return idx[a:b]


def _resample(count: int, src_fps: float, fps: float | None) -> np.ndarray:
    """Source frame indices for the output frames (nearest frame at the output rate)."""
    if fps is None or abs(fps - src_fps) < 1e-6:
        idx = np.arange(count)
    else:
        span = (count - 1) / src_fps * fps
        n = max(1, int(np.floor(span * (1 + 1e-4) + 1e-6)) + 1)  # files round the frame time (1/120 -> 0.008333)
        idx = np.clip(np.round(np.arange(n) * src_fps / fps).astype(int), 0, count - 1)
    return idx


def _follow_inherited(skel: Skeleton, g: torch.Tensor, rig: MmdRig) -> torch.Tensor:
    """PMX deform bones that copy another bone's rotation (足D from 足 ...) follow the retargeted pose."""
    from conr.engine.ik import apply_inherit

    if not rig.inherit:
        return g
    parents = torch.stack([g[:, p] if p >= 0 else torch.eye(4).expand_as(g[:, 0]) for p in skel.parents], 1)
    local = torch.linalg.inv(parents) @ g
    return skel.global_from_local(apply_inherit(skel, local, rig.inherit))


def _sheet_pose(model: Model) -> torch.Tensor:
    """(V, 3) the model in the relaxed A-pose of a character sheet (its rest pose if it has no hips)."""
    mesh = model.mesh
    if "hips" not in model.humanoid:
        return mesh.rest_vertices()
    src = procedural_source("stand", 1, 0)
    g, _ = retarget(src.rest, src.globals, src.bones, mesh.skeleton, model.humanoid)
    if model.rig is not None:
        g = _follow_inherited(mesh.skeleton, g, model.rig)
    return mesh.pose(g)[0]


def _check_bone_map_found(bone_map: dict[str, str], map_path: Path | None, model: Model,
                          src: MotionSource | DirectMotion) -> None:
    """Every bone the map names must be in the model or the motion file: a typo is an error, not a no-op."""
    motion_names = src.joint_names if isinstance(src, MotionSource) and src.joint_names else []
    known = set(model.mesh.skeleton.names) | set(motion_names)
    lost = [f"{ours} -> {theirs!r}" for ours, theirs in bone_map.items() if theirs not in known]
    if not lost:
        return
    found = f"{model.path.name} has {bone_list(model.mesh.skeleton.names)}"
    if motion_names:
        found += f"; {src.path.name} has {bone_list(motion_names)}"
    where = "neither in the model nor in the motion" if motion_names else "not in the model"
    raise ConrError(f"the bone map names bones that are {where}: {', '.join(lost)}", path=map_path,
                    hint=f"use the bones' names as the files spell them. {found}")


def _require_hips(model: Model, src: MotionSource) -> None:
    if "hips" not in model.humanoid:
        names = model.mesh.skeleton.names
        raise ConrError(f"cannot find the model's hips bone to retarget onto; its {len(names)} bones are: "
                        f"{bone_list(names)}", path=model.path, hint=f"use a VRM, or {BONE_MAP_HINT}")
    if "hips" not in src.bones:
        names = src.joint_names or []
        raise ConrError(f"no hips bone recognised in the motion's skeleton; its {len(names)} joints are: "
                        f"{bone_list(names)}", path=src.path, hint=f"rename the root joint to Hips, or {BONE_MAP_HINT}")


def _require_skin(model: Model) -> None:
    """Refuse a model whose mesh no humanoid bone moves (no skin): every frame would be the same."""
    parents = model.mesh.skeleton.parents
    moving = torch.zeros(len(parents), dtype=torch.bool)
    for j in model.humanoid.values():
        moving[j] = True
    for j, p in enumerate(parents):  # parents come first: a bone below a humanoid bone moves too
        if p >= 0 and moving[p]:
            moving[j] = True
    bound = (model.mesh.weights > 0) & moving[model.mesh.joints]
    if not bool(bound.any()):
        raise ConrError("no vertex of the model is bound to its humanoid bones (the file has no skin, or its "
                        "skin is on other bones): a motion would leave every frame the same", path=model.path,
                        hint="export the model with its armature and skin weights (glTF: a skin with JOINTS_0 / "
                             "WEIGHTS_0; Blender: keep the Armature modifier)")


def make_poses(
    model: str | Path | Model,
    motion: str,
    out_dir: str | Path,
    size: int = 512,
    fps: float | None = None,
    frame_range: FrameRange | None = None,
    camera: str = "front",
    yaw: float = 0.0,
    projection: str = "perspective",
    rgba: bool = False,
    sheet_views: int = 0,
    animation: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    device: str = "cpu",
    style: CelStyle | None = None,
    warn: Callable[[str], None] = lambda s: None,
    max_frames: int | None = None,
    bone_map: str | Path | dict[str, str] | None = None,
) -> dict:
    """`model` is a model file or a built `Model` (e.g. `procedural_model(seed)`). `bone_map` is a
    --bone-map JSON file or its dict (our bone -> the model's or motion file's bone name); it
    overrides the bones matched by name. `max_frames` keeps the first frames of a longer motion (a
    server's cap), with a warning."""
    out = Path(out_dir)
    check_new_dir(out, overwrite)
    if not 0 <= sheet_views <= len(SHEET_YAWS):
        raise ConrError(f"--sheet must be between 0 and {len(SHEET_YAWS)} views, got {sheet_views}")
    if not 16 <= size <= MAX_SIZE:
        raise ConrError(f"--size must be between 16 and {MAX_SIZE}, got {size}")
    map_path = None if bone_map is None or isinstance(bone_map, dict) else Path(bone_map)
    bones = read_bone_map(map_path) if map_path is not None else check_bone_map(bone_map or {})
    if not isinstance(model, Model):
        model = load_model(model)
    if bones:
        model = replace(model, humanoid=apply_bone_map(model.mesh.skeleton.names, model.humanoid, bones))
    for w in model.warnings:
        warn(f"{model.path.name}: {w}")
    src = load_motion_source(motion, model, fps, frame_range, seed, animation, bones)
    if bones:
        _check_bone_map_found(bones, map_path, model, src)
    if max_frames is not None and src.globals.shape[0] > max_frames:
        warn(f"the motion has {src.globals.shape[0]} frames; kept the first {max_frames}")
        src.globals = src.globals[:max_frames]
    mesh = model.mesh
    for w in src.warnings:
        warn(w)
    if isinstance(src, DirectMotion):
        g, out_fps, motion_name = src.globals, src.fps, src.name
    else:
        _require_hips(model, src)
        _require_skin(model)
        g, missing = retarget(src.rest, src.globals, src.bones, mesh.skeleton, model.humanoid)
        if model.rig is not None:
            g = _follow_inherited(mesh.skeleton, g, model.rig)
        if missing:
            warn(f"{model.path.name}: the motion moves bones the model lacks: {', '.join(missing)}")
        out_fps, motion_name = src.fps, src.name
    # Long motions of large models: keep only each frame's box for framing, pose again to render.
    corners = torch.cat([frame_corners(v[None]) for v in posed_frames(mesh, g)])
    norm = UDPNormalizer.from_vertices(mesh.rest_vertices())
    # Yaw 0 looks at the model's front, whichever way the file has it face (VRM 0.x and MMD face -Z).
    front = facing_yaw(mesh.skeleton.rest_global()[:, :3, 3], model.humanoid)
    if camera == "front":
        cams: Camera | list[Camera] = sequence_camera(corners, size, yaw=yaw + front, projection=projection)
    elif camera == "orbit":
        cams = orbit_cameras(corners, size, corners.shape[0], yaw + front, projection=projection)
    else:
        cams = cameras_from_file(Path(camera), size, corners, corners.shape[0])

    with atomic_dir(out) as tmp:
        udp, rgba_files = write_frames(mesh, posed_frames(mesh, g), cams, norm, tmp, tmp / "rgba" if rgba else None,
                                       device, style)
        sheet = []
        if sheet_views:
            sheet = write_sheet(mesh, _sheet_pose(model), size, sheet_views, tmp / "sheet", projection, front, device,
                                normalizer=norm, style=style)
        manifest = {"version": 1, "generator": "conr poses", "model": str(model.path), "motion": motion_name,
                    "fps": out_fps, "frames": udp, "rgba": [f"rgba/{n}" for n in rgba_files], "size": size,
                    "camera": camera_dict(cams) if isinstance(cams, Camera) else [camera_dict(c) for c in cams],
                    "udp_normalizer": norm.to_dict(), "triangles": mesh.num_faces,
                    "humanoid_bones": sorted(model.humanoid), "sheet": sheet}
        atomic_write_bytes(tmp / "poses.json", json.dumps(manifest, indent=1).encode())
    return manifest
