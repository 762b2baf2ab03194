"""Posing a skinned mesh by a motion, framing it, and writing UDP / RGBA frame sequences."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from conr.engine.camera import Camera, fit_camera, view_direction
from conr.engine.motions import Motion
from conr.engine.renderer import CelStyle, render_rgba, render_udp, to_uint8
from conr.engine.skinning import SkinnedMesh
from conr.engine.udp import UDPNormalizer
from conr.files.io import atomic_save_npz, atomic_write_png


def pose_sequence(mesh: SkinnedMesh, rotations: Tensor, root_translation: Tensor) -> Tensor:
    """(T, V, 3) posed vertices for (T, J, 3, 3) local rotations and (T, 3) root offsets."""
    return mesh.pose_frames(mesh.skeleton.forward(rotations, root_translation))


def pose_by_motion(mesh: SkinnedMesh, motion: Motion) -> tuple[Tensor, list[str]]:
    """Posed vertices for a motion whose joints are named like the mesh's; also the unknown joint names."""
    rot, missing = motion.for_skeleton(mesh.skeleton.names)
    return pose_sequence(mesh, rot, motion.root_translation), missing


def frame_corners(posed: Tensor) -> Tensor:
    """(T, V, 3) -> (T, 8, 3): the corners of each frame's bounding box, all that framing needs."""
    lo, hi = posed.min(-2).values, posed.max(-2).values  # (T, 3)
    pick = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.bool, device=posed.device)
    return torch.where(pick, hi[:, None], lo[:, None])


def sequence_camera(posed: Tensor, size: int, yaw: float = 0.0, pitch: float = 5.0, projection: str = "perspective") -> Camera:
    """One fixed camera that keeps the whole (T, V, 3) sequence in frame (the figure does not jump).

    Only each frame's bounding-box corners are used, so passing `frame_corners(posed)` (cheap to
    keep for long sequences) gives the same camera."""
    return fit_camera(frame_corners(posed), size, size, view_direction(yaw, pitch), projection)


def orbit_cameras(corners: Tensor, size: int, count: int, yaw: float = 0.0, pitch: float = 5.0,
                  projection: str = "perspective", fov_y: float = 25.0, margin: float = 0.08) -> list[Camera]:
    """`count` cameras circling the character once (starting at `yaw`), all at one distance that keeps
    every frame's box in view from every angle, so the figure keeps its size as the view turns."""
    pts = corners.reshape(-1, 3).double().cpu()
    centre = (pts.min(0).values + pts.max(0).values) / 2
    radius = float((pts - centre).norm(dim=-1).max().clamp_min(1e-6))
    yaws = [yaw + 360.0 * k / max(count, 1) for k in range(count)]
    half = 0.0
    for y in yaws[:: max(1, count // 16)] + [yaw + a for a in range(0, 360, 45)]:
        d = torch.tensor(view_direction(y, pitch), dtype=torch.float64)
        probe = Camera(tuple((centre + d * radius * 4).tolist()), tuple(centre.tolist()), size, size, "orthographic")
        view = probe.view_matrix(torch.float64)
        cam = (pts - centre) @ view[:3, :3].T
        half = max(half, float(cam[:, :2].abs().max()))
    half /= 1 - 2 * margin
    cams = []
    for y in yaws:
        d = torch.tensor(view_direction(y, pitch), dtype=torch.float64)
        if projection == "orthographic":
            eye = centre + d * radius * 4
            cams.append(Camera(tuple(eye.tolist()), tuple(centre.tolist()), size, size, "orthographic",
                               ortho_height=2 * half, near=radius * 0.5, far=radius * 8))
        else:
            dist = half / math.tan(math.radians(fov_y) / 2) + radius
            eye = centre + d * dist
            cams.append(Camera(tuple(eye.tolist()), tuple(centre.tolist()), size, size, "perspective", fov_y=fov_y,
                               near=max(dist - radius * 2, 1e-3), far=dist + radius * 2))
    return cams


def cameras_from_file(path: Path, size: int, corners: Tensor, count: int) -> list[Camera]:
    """Cameras from a JSON file: one camera for every frame, or {"frames": [one per frame]}.

    A camera is {"eye": [x, y, z], "target": [x, y, z], "up": [0, 1, 0] (optional),
    "projection": "perspective" (default) or "orthographic", "fov_y": degrees (default 30),
    "ortho_height": world units (orthographic), "near" / "far" (optional)}, in the model's world
    (Y up, the character facing +Z; MMD models are mirrored into it).
    """
    import json

    from conr.errors import ConrError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConrError("camera file not found", path=path, hint="give front, orbit or a JSON camera file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConrError(f"camera file is not valid JSON ({err})", path=path) from None
    entries = doc["frames"] if isinstance(doc, dict) and "frames" in doc else [doc] * count
    if not isinstance(entries, list) or len(entries) != count:
        n = len(entries) if isinstance(entries, list) else 0
        raise ConrError(f"camera file has {n} cameras for {count} frames", path=path,
                        hint="give one camera, or a 'frames' list with one camera per output frame")
    pts = corners.reshape(-1, 3).double().cpu()
    centre = (pts.min(0).values + pts.max(0).values) / 2
    radius = float((pts - centre).norm(dim=-1).max().clamp_min(1e-6))
    cams = []
    for k, e in enumerate(entries):
        try:
            eye = tuple(float(v) for v in e["eye"])
            target = tuple(float(v) for v in e["target"])
            up = tuple(float(v) for v in e.get("up", (0.0, 1.0, 0.0)))
            if len(eye) != 3 or len(target) != 3 or len(up) != 3:
                raise ValueError("eye, target and up need three numbers each")
            numbers = [*eye, *target, *up, float(e.get("fov_y", 30.0))]
            if not all(math.isfinite(v) for v in numbers):
                raise ValueError("eye, target, up and fov_y must be finite numbers (not nan or inf)")
            if eye == target:
                raise ValueError("eye and target are the same point: the camera looks nowhere")
            dist = float(torch.tensor(eye, dtype=torch.float64).sub(centre).norm())
            cams.append(Camera(eye, target, size, size, str(e.get("projection", "perspective")),
                               fov_y=float(e.get("fov_y", 30.0)), ortho_height=float(e.get("ortho_height", 2 * radius)),
                               up=up, near=float(e.get("near", max(dist - radius * 2, 1e-3))),
                               far=float(e.get("far", dist + radius * 2))))
        except (KeyError, TypeError, ValueError) as err:
            raise ConrError(f"camera {k} in the camera file is malformed ({err})", path=path,
                            hint='each camera needs "eye" and "target" as [x, y, z]') from None
    return cams


def posed_frames(mesh: SkinnedMesh, global_transforms: Tensor, step: int = 8) -> Iterator[Tensor]:
    """(V, 3) posed vertices frame by frame, skinning a few frames at a time (nothing kept)."""
    for i in range(0, global_transforms.shape[0], step):
        yield from mesh.pose_frames(global_transforms[i:i + step])


def write_frames(
    mesh: SkinnedMesh,
    posed: Iterable[Tensor],
    camera: Camera | Sequence[Camera],
    normalizer: UDPNormalizer,
    udp_dir: Path | None,
    rgba_dir: Path | None,
    device: torch.device | str = "cpu",
    style: CelStyle | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], list[str]]:
    """Render every (V, 3) frame of `posed` as UDP .npz and/or RGBA .png, named 0, 1, 2 ...; one
    camera for all frames or one per frame. Returns the file names written."""
    udp_names, rgba_names = [], []
    mesh_dev = _to_device(mesh, device)
    for t, frame in enumerate(posed):
        v = frame.to(device)
        name = str(t)
        cam = camera if isinstance(camera, Camera) else camera[t]
        if udp_dir is not None:
            udp = render_udp(mesh_dev, v, cam, normalizer)
            atomic_save_npz(udp_dir / f"{name}.npz", i=udp.cpu().numpy().astype("float32"))
            udp_names.append(f"{name}.npz")
        if rgba_dir is not None:
            atomic_write_png(rgba_dir / f"{name}.png", to_uint8(render_rgba(mesh_dev, v, cam, style)))
            rgba_names.append(f"{name}.png")
        if progress:
            progress(t)
    return udp_names, rgba_names


SHEET_YAWS = (0.0, 180.0, 90.0, -45.0, 45.0, -90.0, 135.0, -135.0)


def write_sheet(mesh: SkinnedMesh, pose: Tensor, size: int, views: int, folder: Path, projection: str = "perspective",
                front_yaw: float = 0.0, device: torch.device | str = "cpu",
                normalizer: UDPNormalizer | None = None, style: CelStyle | None = None,
                yaws: Sequence[float] | None = None,
                cutout: Callable[[np.ndarray], np.ndarray] | None = None) -> list[dict]:
    """A character sheet: RGBA renders of a (V, 3) pose, or one (views, V, 3) pose per view, from
    `views` angles (front, back, sides... or `yaws`), each framed on its own, and with a normaliser
    their UDP too (ground truth for the UDP parser). `cutout` post-processes the RGBA (a drawn sheet's
    cut-out traits); the UDP stays exact. Returns [{"file", "yaw"[, "udp"]}], paths relative to the
    folder's parent."""
    mesh_dev = _to_device(mesh, device)
    yaws = list(yaws) if yaws is not None else list(SHEET_YAWS[:views])
    out = []
    for k, yaw in enumerate(yaws[:views]):
        v = (pose if pose.dim() == 2 else pose[k]).to(device)
        cam = fit_camera(v, size, size, view_direction(yaw + front_yaw, 5.0), projection)
        name = f"view_{k:02d}"
        rgba = to_uint8(render_rgba(mesh_dev, v, cam, style))
        atomic_write_png(folder / f"{name}.png", cutout(rgba) if cutout is not None else rgba)
        entry = {"file": f"{folder.name}/{name}.png", "yaw": float(yaw)}
        if normalizer is not None:
            udp = render_udp(mesh_dev, v, cam, normalizer)
            atomic_save_npz(folder / f"{name}.npz", i=udp.cpu().numpy().astype("float32"))
            entry["udp"] = f"{folder.name}/{name}.npz"
        out.append(entry)
    return out


def _to_device(mesh: SkinnedMesh, device: torch.device | str) -> SkinnedMesh:
    if str(device) == "cpu":
        return mesh
    return SkinnedMesh(
        vertices=mesh.vertices.to(device), faces=mesh.faces.to(device), joints=mesh.joints.to(device),
        weights=mesh.weights.to(device), skeleton=mesh.skeleton, face_colors=mesh.face_colors.to(device),
        face_unlit=mesh.face_unlit.to(device), inverse_bind=mesh.inverse_bind.to(device),
        warnings=list(mesh.warnings), outward_winding=mesh.outward_winding,
        uv=None if mesh.uv is None else mesh.uv.to(device), textures=[t.to(device) for t in mesh.textures],
        face_texture=None if mesh.face_texture is None else mesh.face_texture.to(device),
        face_tint=None if mesh.face_tint is None else mesh.face_tint.to(device),
        face_alpha_cutoff=None if mesh.face_alpha_cutoff is None else mesh.face_alpha_cutoff.to(device),
        _rest=mesh.rest_vertices().to(device),
    )


def camera_dict(camera: Camera) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in camera.__dict__.items()}
