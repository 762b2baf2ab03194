"""PMX 2.0 / 2.1 reader (MikuMikuDance models): mesh, weights, materials, bones, IK and inherited rotation.

MMD is left-handed with the model facing -Z; we mirror z, which makes it right-handed and facing
+Z like everything else here. Morphs, rigid bodies and joints (the sections after the bones)
are not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh
from conr.engine.formats import side_file
from conr.errors import ConrError

# Standard MMD bone names -> canonical humanoid names.
MMD_HUMANOID = {
    "センター": "hips", "上半身": "spine", "上半身2": "chest", "首": "neck", "頭": "head",
    "左肩": "leftShoulder", "左腕": "leftUpperArm", "左ひじ": "leftLowerArm", "左手首": "leftHand",
    "右肩": "rightShoulder", "右腕": "rightUpperArm", "右ひじ": "rightLowerArm", "右手首": "rightHand",
    "左足": "leftUpperLeg", "左ひざ": "leftLowerLeg", "左足首": "leftFoot", "左つま先": "leftToes",
    "右足": "rightUpperLeg", "右ひざ": "rightLowerLeg", "右足首": "rightFoot", "右つま先": "rightToes",
}


@dataclass
class IKLink:
    joint: int
    lower: np.ndarray | None  # (3,) radians in our (mirrored) frame, or None when unlimited
    upper: np.ndarray | None


@dataclass
class IKChain:
    bone: int  # the IK bone: its position is the goal
    target: int  # the bone brought to the goal (e.g. the ankle)
    iterations: int
    limit: float  # largest rotation per link per iteration, radians
    links: list[IKLink]


@dataclass
class Inherit:
    joint: int
    source: int
    weight: float
    rotation: bool
    translation: bool


@dataclass
class MmdRig:
    ik: list[IKChain] = field(default_factory=list)
    inherit: list[Inherit] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, what: str) -> ConrError:
        return ConrError(f"PMX file is truncated or corrupt: {what} (at byte {self.pos} of {len(self.data)})",
                         path=self.path, hint="re-export the model, or get the file again")

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data) or n < 0:
            raise self.fail(f"{what} runs past the end of the file")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.take(dt.itemsize * count, what), dt).copy()


def load_pmx(path: str | Path) -> tuple[SkinnedMesh, dict[str, int], MmdRig, list[str]]:
    """(mesh, canonical bone map, IK / inherit rig, warnings) of a PMX model."""
    path = Path(path)
    if not path.is_file():
        raise ConrError("model file not found", path=path, hint="check the path")
    r = _Reader(path.read_bytes(), path)
    if r.take(4, "header") != b"PMX ":
        raise ConrError("not a PMX file (missing 'PMX ' signature)", path=path, hint="PMD files are not supported; convert to PMX")
    (version,) = r.unpack("f", "version")
    if version not in (2.0, 2.1):
        raise ConrError(f"PMX version {version} is not supported (need 2.0 or 2.1)", path=path)
    (nglobals,) = r.unpack("B", "globals")
    g = r.take(nglobals, "globals")
    if nglobals < 8:
        raise r.fail("header has fewer than 8 globals")
    encoding = "utf-16-le" if g[0] == 0 else "utf-8"
    extra_uv, vsize, tsize, msize, bsize = g[1], g[2], g[3], g[4], g[5]
    for s in (vsize, tsize, msize, bsize):
        if s not in (1, 2, 4):
            raise r.fail(f"index size {s} is not 1, 2 or 4")
    vfmt = {1: "B", 2: "H", 4: "i"}[vsize]
    sfmt = {1: "b", 2: "h", 4: "i"}

    def text(what: str) -> str:
        (n,) = r.unpack("i", what)
        return r.take(n, what).decode(encoding, errors="replace")

    def index(size: int, what: str) -> int:
        return r.unpack(sfmt[size], what)[0]

    for what in ("model name", "english name", "comment", "english comment"):
        text(what)

    (nv,) = r.unpack("i", "vertex count")
    if nv < 0 or nv > len(r.data):
        raise r.fail(f"vertex count {nv}")
    pos = np.zeros((nv, 3))
    uv = np.zeros((nv, 2))
    joints = np.zeros((nv, 4), np.int64)
    weights = np.zeros((nv, 4))
    for v in range(nv):
        vals = r.unpack("8f", "vertex")
        pos[v], uv[v] = vals[:3], vals[6:8]
        r.take(16 * extra_uv, "additional uv")
        (kind,) = r.unpack("B", "weight type")
        if kind == 0:  # BDEF1
            joints[v, 0], weights[v, 0] = index(bsize, "bone index"), 1.0
        elif kind in (1, 3):  # BDEF2, SDEF (its spherical correction is not applied)
            joints[v, 0], joints[v, 1] = index(bsize, "bone index"), index(bsize, "bone index")
            (w,) = r.unpack("f", "weight")
            weights[v, :2] = (w, 1 - w)
            if kind == 3:
                r.take(36, "SDEF vectors")
        elif kind in (2, 4):  # BDEF4, QDEF (treated as BDEF4)
            for k in range(4):
                joints[v, k] = index(bsize, "bone index")
            weights[v] = r.unpack("4f", "weights")
        else:
            raise r.fail(f"vertex {v} has unknown weight type {kind}")
        r.take(4, "edge scale")
    (ni,) = r.unpack("i", "face count")
    faces = r.array(np.dtype(vfmt), ni, "faces").astype(np.int64)
    if ni % 3 or (ni and (faces.max() >= nv or faces.min() < 0)):
        raise r.fail("face indices are not triangles within the vertex list")
    faces = faces.reshape(-1, 3)
    if not np.isfinite(pos).all():
        raise ConrError("vertex positions are not finite (nan or inf)", path=path, hint="the model is corrupt; re-export it")
    (nt,) = r.unpack("i", "texture count")
    textures = [text("texture path") for _ in range(nt)]
    (nm,) = r.unpack("i", "material count")
    colours = np.zeros((len(faces), 3))
    warnings: list[str] = []
    warned: set[str] = set()
    start = 0
    tex_cache: dict[int, np.ndarray | None] = {}
    face_tex = np.full(len(faces), -1, np.int64)
    cutoff = np.zeros(len(faces))
    tints = np.ones((len(faces), 3))
    tex_list: list[torch.Tensor] = []
    tex_slot: dict[int, int] = {}
    for _ in range(nm):
        text("material name"), text("material english name")
        diffuse = np.array(r.unpack("4f", "diffuse"))
        r.take(12 + 4 + 12 + 1 + 16 + 4, "material colours")
        tex = index(tsize, "texture index")
        index(tsize, "sphere texture index")
        r.take(1, "sphere mode")
        (toon_shared,) = r.unpack("B", "toon flag")
        r.take(1 if toon_shared else tsize, "toon")
        text("memo")
        (count,) = r.unpack("i", "material face count")
        if count % 3 or start + count // 3 > len(faces):
            raise r.fail("material face counts exceed the face list")
        sl = slice(start, start + count // 3)
        colours[sl] = np.clip(diffuse[:3], 0, 1)
        if 0 <= tex < len(textures):
            if tex not in tex_cache:
                tex_cache[tex] = _load_texture(side_file(path, textures[tex].replace("\\", "/")))
            img = tex_cache[tex]
            if img is None:
                if textures[tex] not in warned:
                    warned.add(textures[tex])
                    warnings.append(f"texture '{textures[tex]}' is missing or unreadable; using a flat colour")
            else:
                colours[sl] = _sample(img, uv[faces[sl]].mean(1)) * np.clip(diffuse[:3], 0, 1)
                if tex not in tex_slot:
                    tex_slot[tex] = len(tex_list)
                    tex_list.append(torch.tensor((img * 255).round().astype(np.uint8)))
                face_tex[sl] = tex_slot[tex]
                # MMD blends textures with alpha; we cut them out at half alpha instead.
                cutoff[sl] = 0.5 if float(img[..., 3].min()) < 1.0 else 0.0
                tints[sl] = np.clip(diffuse[:3], 0, 1)
        start += count // 3

    (nb,) = r.unpack("i", "bone count")
    names, parents, bpos = [], [], []
    rig = MmdRig()
    raw_ik: list[tuple] = []
    for b in range(nb):
        names.append(text("bone name"))
        text("bone english name")
        bpos.append(r.unpack("3f", "bone position"))
        parents.append(index(bsize, "parent bone"))
        r.take(4, "layer")
        (flags,) = r.unpack("H", "bone flags")
        r.take(bsize if flags & 0x0001 else 12, "bone tail")
        if flags & 0x0300:
            src = index(bsize, "inherit bone")
            (w,) = r.unpack("f", "inherit weight")
            if 0 <= src < nb:
                rig.inherit.append(Inherit(b, src, w, bool(flags & 0x0100), bool(flags & 0x0200)))
        if flags & 0x0400:
            r.take(12, "fixed axis")
        if flags & 0x0800:
            r.take(24, "local axes")
        if flags & 0x2000:
            r.take(4, "external parent")
        if flags & 0x0020:
            target = index(bsize, "IK target")
            loops, limit = r.unpack("if", "IK loop")
            (nlinks,) = r.unpack("i", "IK link count")
            links = []
            for _ in range(nlinks):
                j = index(bsize, "IK link")
                (has,) = r.unpack("B", "IK limit flag")
                lo = hi = None
                if has:
                    lo, hi = np.array(r.unpack("3f", "IK lower")), np.array(r.unpack("3f", "IK upper"))
                    # Mirroring z negates rotations about x and y: swap and negate those bounds.
                    lo, hi = np.where([1, 1, 0], -hi, lo), np.where([1, 1, 0], -lo, hi)
                links.append((j, lo, hi))
            raw_ik.append((b, target, loops, limit, links))

    # Joints parents-first (PMX allows a parent after its child).
    order: list[int] = []
    placed: set[int] = set()
    children: dict[int, list[int]] = {}
    for b, p in enumerate(parents):
        children.setdefault(p if 0 <= p < nb and p != b else -1, []).append(b)
    stack = list(reversed(children.get(-1, [])))
    while stack:
        b = stack.pop()
        if b in placed:
            continue
        placed.add(b)
        order.append(b)
        stack.extend(reversed(children.get(b, [])))
    if len(order) != nb:
        raise ConrError("the bone hierarchy has a cycle", path=path, hint="fix the parent bones in a PMX editor")
    new = {b: k for k, b in enumerate(order)}
    bpos_np = np.array(bpos, float).reshape(-1, 3) * [1, 1, -1]
    par = [new[parents[b]] if 0 <= parents[b] < nb and parents[b] != b else -1 for b in order]
    offsets = np.array([bpos_np[b] - (bpos_np[parents[b]] if 0 <= parents[b] < nb and parents[b] != b else 0) for b in order])
    if nb == 0:
        raise ConrError("the model has no bones", path=path)
    skel = Skeleton.from_offsets([names[b] for b in order], par, torch.tensor(offsets, dtype=torch.float32))
    if joints.size and (joints.max() >= nb):
        raise r.fail("a vertex refers to a bone past the bone list")
    remap = np.array([new[b] for b in range(nb)], np.int64)
    joints = np.where(joints >= 0, remap[np.clip(joints, 0, nb - 1)], 0)
    s = weights.sum(1, keepdims=True)
    weights = np.where(s > 0, weights / np.where(s > 0, s, 1), [[1.0, 0, 0, 0]])
    rig.inherit = [Inherit(new[i.joint], new[i.source], i.weight, i.rotation, i.translation) for i in rig.inherit]
    for b, target, loops, limit, links in raw_ik:
        if 0 <= target < nb:
            rig.ik.append(IKChain(new[b], new[target], max(1, loops), limit,
                                  [IKLink(new[j], lo, hi) for j, lo, hi in links if 0 <= j < nb]))
    mesh = SkinnedMesh(
        vertices=torch.tensor(pos * [1, 1, -1], dtype=torch.float32),
        faces=torch.tensor(faces, dtype=torch.int64),
        joints=torch.tensor(joints, dtype=torch.int64),
        weights=torch.tensor(weights, dtype=torch.float32),
        skeleton=skel,
        face_colors=torch.tensor(colours, dtype=torch.float32),
        warnings=warnings,
        uv=torch.tensor(uv, dtype=torch.float32),
        textures=tex_list,
        face_texture=torch.tensor(face_tex),
        face_tint=torch.tensor(tints, dtype=torch.float32),
        face_alpha_cutoff=torch.tensor(cutoff, dtype=torch.float32),
    )
    humanoid = {MMD_HUMANOID[n]: i for i, n in enumerate(skel.names) if n in MMD_HUMANOID}
    return mesh, humanoid, rig, warnings


def _load_texture(path: Path | None) -> np.ndarray | None:
    from conr.engine.formats.gltf import decode_rgba

    return None if path is None else decode_rgba(path.read_bytes())


def _sample(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x = np.clip((uv[:, 0] % 1.0) * w, 0, w - 1).astype(int)
    y = np.clip((uv[:, 1] % 1.0) * h, 0, h - 1).astype(int)
    return img[y, x, :3]
