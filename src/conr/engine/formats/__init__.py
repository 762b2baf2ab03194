"""Readers for character models (glTF/GLB/VRM, PMX) and motions (BVH, glTF animations, VMD)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conr.engine.skinning import SkinnedMesh
from conr.errors import ConrError

if TYPE_CHECKING:
    from conr.engine.formats.gltf import NodeAnimation
    from conr.engine.formats.pmx import MmdRig

MODEL_SUFFIXES = (".glb", ".gltf", ".vrm", ".pmx")
MOTION_SUFFIXES = (".bvh", ".vmd", ".glb", ".gltf", ".vrm")


@dataclass
class Model:
    mesh: SkinnedMesh
    humanoid: dict[str, int]  # canonical bone -> joint index
    animations: list[NodeAnimation]
    path: Path
    warnings: list[str] = field(default_factory=list)
    rig: MmdRig | None = None  # PMX models: IK chains and inherited rotation


def _checked(model: Model) -> Model:
    if model.mesh.num_faces > MAX_TRIANGLES:
        raise ConrError(f"the model has {model.mesh.num_faces:,} triangles, over the limit of {MAX_TRIANGLES:,}",
                        path=model.path, hint="decimate it (Blender: Decimate modifier) to a few hundred thousand")
    # Every frame is framed and encoded from the rest pose: without a finite, non-flat one every
    # frame would come out empty.
    rest = model.mesh.rest_vertices()
    if not bool(rest.isfinite().all()):
        raise ConrError("the model in its rest pose has vertices that are not finite (nan or inf)", path=model.path,
                        hint="a bone or node transform is corrupt: re-export the model")
    if float((rest.amax(0) - rest.amin(0)).max()) <= 1e-6 * max(1.0, float(rest.abs().max())):
        raise ConrError("the model in its rest pose has no size: all its vertices are at one point", path=model.path,
                        hint="a bone or node is scaled to nothing in the rest pose: re-export the model with its "
                             "scale applied")
    return model


# A texture or buffer beside a model file; larger ones are treated as missing.
MAX_SIDE_FILE_BYTES = 512 * 1024 * 1024


def side_file(model_path: Path, name: str) -> Path | None:
    """The file a model refers to by a relative `name`, or None when it is missing, not a regular
    file, too large, or outside the model's folder: a model from a stranger must not make us read
    /etc/... or a device such as /dev/zero."""
    folder = model_path.parent.resolve()
    try:
        f = (folder / name).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not f.is_relative_to(folder) or not f.is_file() or f.stat().st_size > MAX_SIDE_FILE_BYTES:
        return None
    return f


# Larger models than anyone animates for a sheet: beyond these, reading and rasterising run away.
MAX_MODEL_BYTES = 2 * 1024 ** 3
MAX_TRIANGLES = 5_000_000


def load_model(path: str | Path) -> Model:
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise ConrError("model file not found", path=path, hint="check the path")
    if path.is_file() and path.stat().st_size > MAX_MODEL_BYTES:
        raise ConrError(f"model file is {path.stat().st_size / 2 ** 30:.1f} GiB, over the limit of "
                        f"{MAX_MODEL_BYTES / 2 ** 30:.0f} GiB", path=path, hint="decimate the model or strip unused data")
    if suffix in (".glb", ".gltf", ".vrm"):
        from conr.engine.formats.gltf import load_gltf

        g = load_gltf(path)
        return _checked(Model(g.mesh, g.humanoid, g.animations, path, g.warnings))
    if suffix == ".pmx":
        from conr.engine.formats.pmx import load_pmx

        mesh, humanoid, rig, warnings = load_pmx(path)
        return _checked(Model(mesh, humanoid, [], path, warnings, rig))
    raise ConrError(f"unsupported model format {suffix or '(no extension)'!r}", path=path,
                    hint=f"use one of {', '.join(MODEL_SUFFIXES)}")
