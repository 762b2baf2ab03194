"""Posing a skinned mesh by a motion, framing it, and writing UDP / RGBA frame sequences."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from conr.engine.camera import Camera, fit_camera, view_direction
from conr.engine.motions import Motion
from conr.engine.renderer import CelStyle, render_rgba, render_udp, to_uint8
from conr.engine.skinning import SkinnedMesh
from conr.engine.udp import UDPNormalizer
from conr.io import atomic_save_npz, atomic_write_png


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


def posed_frames(mesh: SkinnedMesh, global_transforms: Tensor, step: int = 8) -> Iterator[Tensor]:
    """(V, 3) posed vertices frame by frame, skinning a few frames at a time (nothing kept)."""
    for i in range(0, global_transforms.shape[0], step):
        yield from mesh.pose_frames(global_transforms[i:i + step])


def write_frames(
    mesh: SkinnedMesh,
    posed: Iterable[Tensor],
    camera: Camera,
    normalizer: UDPNormalizer,
    udp_dir: Path | None,
    rgba_dir: Path | None,
    device: torch.device | str = "cpu",
    style: CelStyle | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], list[str]]:
    """Render every (V, 3) frame of `posed` as UDP .npz and/or RGBA .png; returns the file names written."""
    udp_names, rgba_names = [], []
    mesh_dev = _to_device(mesh, device)
    for t, frame in enumerate(posed):
        v = frame.to(device)
        name = f"{t:05d}"
        if udp_dir is not None:
            udp = render_udp(mesh_dev, v, camera, normalizer)
            atomic_save_npz(udp_dir / f"{name}.npz", i=udp.cpu().numpy().astype("float32"))
            udp_names.append(f"{name}.npz")
        if rgba_dir is not None:
            atomic_write_png(rgba_dir / f"{name}.png", to_uint8(render_rgba(mesh_dev, v, camera, style)))
            rgba_names.append(f"{name}.png")
        if progress:
            progress(t)
    return udp_names, rgba_names


SHEET_YAWS = (0.0, 180.0, 90.0, -45.0, 45.0, -90.0, 135.0, -135.0)


def write_sheet(mesh: SkinnedMesh, pose: Tensor, size: int, views: int, folder: Path, projection: str = "perspective",
                front_yaw: float = 0.0, device: torch.device | str = "cpu") -> list[dict]:
    """A character sheet: RGBA renders of one (V, 3) pose from `views` angles (front, back, sides...),
    each framed on its own; returns [{"file", "yaw"}] relative to the folder's parent."""
    mesh_dev = _to_device(mesh, device)
    v = pose.to(device)
    out = []
    for k, yaw in enumerate(SHEET_YAWS[:views]):
        cam = fit_camera(pose, size, size, view_direction(yaw + front_yaw, 5.0), projection)
        name = f"view_{k:02d}.png"
        atomic_write_png(folder / name, to_uint8(render_rgba(mesh_dev, v, cam)))
        out.append({"file": f"{folder.name}/{name}", "yaw": yaw})
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
