"""Minimal writers of real model and motion files, so the readers are tested on genuine bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh
from conr.engine.transforms import compose, matrix_to_quat


def rebase(mesh: SkinnedMesh, rotations: torch.Tensor, turn: torch.Tensor | None = None) -> SkinnedMesh:
    """The same character whose rest pose is `rotations` (J, 3, 3), optionally turned by `turn` (3, 3)."""
    g = mesh.skeleton.forward(rotations)
    if turn is not None:
        g = compose(turn.float()) @ g
    local = torch.stack([g[j] if p < 0 else torch.linalg.inv(g[p]) @ g[j] for j, p in enumerate(mesh.skeleton.parents)])
    skel = Skeleton(list(mesh.skeleton.names), list(mesh.skeleton.parents), local)
    return SkinnedMesh(mesh.pose(g), mesh.faces, mesh.joints, mesh.weights, skel, mesh.face_colors, mesh.face_unlit)


class GlbBuilder:
    """Collects binary arrays as accessors and writes a GLB (or .gltf + .bin) file."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, arr: np.ndarray, kind: str, component: int, normalized: bool = False) -> int:
        arr = np.ascontiguousarray(arr)
        while len(self.blob) % 4:
            self.blob.append(0)
        self.views.append({"buffer": 0, "byteOffset": len(self.blob), "byteLength": arr.nbytes})
        self.blob += arr.tobytes()
        acc = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(arr.shape[0]), "type": kind}
        if normalized:
            acc["normalized"] = True
        if kind in ("VEC3",) and component == 5126:
            acc["min"] = arr.min(0).tolist()
            acc["max"] = arr.max(0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def add_bytes(self, data: bytes) -> int:
        """A buffer view holding raw bytes (an embedded image); returns its index."""
        while len(self.blob) % 4:
            self.blob.append(0)
        self.views.append({"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)})
        self.blob += data
        return len(self.views) - 1

    def document(self, **parts) -> dict:
        doc = {"asset": {"version": "2.0"}, "scene": 0, "bufferViews": self.views, "accessors": self.accessors,
               "buffers": [{"byteLength": len(self.blob)}]}
        doc.update(parts)
        return doc

    def write_glb(self, path: Path, doc: dict) -> None:
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        blob = bytes(self.blob) + b"\0" * (-len(self.blob) % 4)
        total = 12 + 8 + len(js) + 8 + len(blob)
        data = struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
        data += struct.pack("<II", len(blob), 0x004E4942) + blob
        path.write_bytes(data)


def mesh_to_glb(mesh: SkinnedMesh, path: Path, animation: dict[str, np.ndarray] | None = None,
                fps: float = 30.0, texture_uri: str | None = None, vrm: dict[str, int] | None = None,
                skin: bool = True) -> None:
    """Write a skinned mesh (one node per joint, rest translations) as GLB; with `skin` False, the
    mesh is written as a plain node beside the skeleton, as a model exported without its skin.

    `animation` maps joint name -> (T, 4) xyzw local rotations. `texture_uri` adds a base colour
    texture that points at that (possibly missing) file. `vrm` adds a VRM 1.0 humanoid map.
    """
    b = GlbBuilder()
    skel = mesh.skeleton
    rest = skel.rest_local.numpy()
    nodes = []
    children: dict[int, list[int]] = {}
    for j, p in enumerate(skel.parents):
        children.setdefault(p, []).append(j)
    for j, name in enumerate(skel.names):
        node = {"name": name, "translation": rest[j, :3, 3].tolist()}
        if not np.allclose(rest[j, :3, :3], np.eye(3)):
            node["rotation"] = matrix_to_quat(torch.tensor(rest[j, :3, :3], dtype=torch.float64)).tolist()
        if j in children:
            node["children"] = children[j]
        nodes.append(node)
    mesh_node = len(nodes)
    ibm = np.linalg.inv(skel.rest_global().numpy()).transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
    # Colours: one material per distinct face colour keeps the file small and exact.
    cols = mesh.face_colors.numpy()
    uniq, inverse = np.unique(cols.round(4), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    pos = b.add(mesh.vertices.numpy().astype(np.float32), "VEC3", 5126)
    k = mesh.joints.shape[1]  # at most 4 influences
    jnt = b.add(np.pad(mesh.joints.numpy(), ((0, 0), (0, 4 - k))).astype(np.uint16), "VEC4", 5123)
    wts = b.add(np.pad(mesh.weights.numpy(), ((0, 0), (0, max(0, 4 - mesh.weights.shape[1])))).astype(np.float32), "VEC4", 5126)
    uv = b.add(np.zeros((mesh.vertices.shape[0], 2), np.float32), "VEC2", 5126)
    faces = mesh.faces.numpy()
    prims, materials = [], []
    for k, c in enumerate(uniq):
        # glTF factors are linear: store the inverse of the sRGB curve so the reader gets `c` back.
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        mat = {"pbrMetallicRoughness": {"baseColorFactor": [*lin.tolist(), 1.0]}}
        if texture_uri is not None and k == 0:
            mat["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
        materials.append(mat)
        idx = b.add(faces[inverse == k].reshape(-1).astype(np.uint32), "SCALAR", 5125)
        attributes = {"POSITION": pos, "JOINTS_0": jnt, "WEIGHTS_0": wts, "TEXCOORD_0": uv}
        if not skin:
            del attributes["JOINTS_0"], attributes["WEIGHTS_0"]
        prims.append({"attributes": attributes, "indices": idx, "material": k})
    nodes.append({"name": "body", "mesh": 0, **({"skin": 0} if skin else {})})
    doc_parts = {
        "scenes": [{"nodes": [j for j, p in enumerate(skel.parents) if p < 0] + [mesh_node]}],
        "nodes": nodes,
        "meshes": [{"primitives": prims}],
        "materials": materials,
        "skins": [{"joints": list(range(len(skel.names))), "inverseBindMatrices": b.add(ibm, "MAT4", 5126)}],
    }
    if texture_uri is not None:
        doc_parts["textures"] = [{"source": 0}]
        doc_parts["images"] = [{"uri": texture_uri}]
    if animation:
        t = next(iter(animation.values())).shape[0]
        times = b.add((np.arange(t) / fps).astype(np.float32)[:, None], "SCALAR", 5126)
        channels, samplers = [], []
        for name, quats in animation.items():
            out = b.add(quats.astype(np.float32), "VEC4", 5126)
            samplers.append({"input": times, "output": out, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": skel.names.index(name), "path": "rotation"}})
        doc_parts["animations"] = [{"name": "clip", "channels": channels, "samplers": samplers}]
    if vrm is not None:
        doc_parts["extensions"] = {"VRMC_vrm": {"humanoid": {"humanBones": {k: {"node": v} for k, v in vrm.items()}}}}
    b.write_glb(path, b.document(**doc_parts))


def write_bvh(path: Path, names: list[str], parents: list[int], offsets: np.ndarray, frames: np.ndarray,
              frame_time: float = 1 / 30, order: str = "ZXY") -> None:
    """Root with position + rotation channels, other joints rotation only; frames (T, 3 + 3J).

    Joints must be listed depth-first (children in index order), the order BVH stores channels in.
    """
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if parents[j] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[j][0]:.6f} {offsets[j][1]:.6f} {offsets[j][2]:.6f}")
        rot = " ".join(f"{a}rotation" for a in order)
        if parents[j] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot}")
        kids = [k for k, p in enumerate(parents) if p == j]
        for k in kids:
            emit(k, depth + 1)
        if not kids:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 0.05 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time:.6f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in frames]
    path.write_text("\n".join(lines) + "\n")


MMD_NAMES = {
    "hips": "センター", "spine": "上半身", "chest": "上半身2", "neck": "首", "head": "頭",
    "leftShoulder": "左肩", "leftUpperArm": "左腕", "leftLowerArm": "左ひじ", "leftHand": "左手首",
    "rightShoulder": "右肩", "rightUpperArm": "右腕", "rightLowerArm": "右ひじ", "rightHand": "右手首",
    "leftUpperLeg": "左足", "leftLowerLeg": "左ひざ", "leftFoot": "左足首", "leftToes": "左つま先",
    "rightUpperLeg": "右足", "rightLowerLeg": "右ひざ", "rightFoot": "右足首", "rightToes": "右つま先",
}
MMD_SCALE = 12.5  # MMD units are about 8 cm


def _mmd(p: np.ndarray) -> np.ndarray:
    """Our right-handed, +Z-facing coordinates to MMD's left-handed, -Z-facing units."""
    return np.asarray(p, float) * [1, 1, -1] * MMD_SCALE


def mesh_to_pmx(mesh: SkinnedMesh, path: Path, texture: str | None = None, leg_ik: bool = True,
                d_bones: bool = False) -> None:
    """PMX 2.0 (UTF-16 text, 2-byte vertex and bone indices) with standard MMD bone names and leg IK.

    `d_bones` adds the deform leg bones of modern models (足D, ひざD, 足首D): the skin follows them,
    and they copy the rotation of 足, ひざ, 足首 through inheritance (付与).
    """
    out = bytearray()

    def text(s: str) -> None:
        b = s.encode("utf-16-le")
        out.extend(struct.pack("<i", len(b)) + b)

    out += b"PMX " + struct.pack("<f", 2.0) + bytes([8, 0, 0, 2, 1, 1, 2, 1, 1])
    for s in ("girl", "girl", "", ""):
        text(s)
    verts = _mmd(mesh.vertices.numpy())
    joints, weights = mesh.joints.numpy().copy(), mesh.weights.numpy()
    skel = mesh.skeleton
    d_of: dict[int, int] = {}  # leg bone -> its D bone's index
    if d_bones:
        n = len(skel.names) + (2 if leg_ik else 0)
        for side in ("left", "right"):
            for part in ("UpperLeg", "LowerLeg", "Foot"):
                d_of[skel.names.index(side + part)] = n
                n += 1
        for src, dst in d_of.items():
            joints[joints == src] = dst
    out += struct.pack("<i", len(verts))
    for v in range(len(verts)):
        out += struct.pack("<8f", *verts[v], 0, 0, 0, 0.5, 0.5)
        w = weights[v]
        if w[1] == 0:
            out += bytes([0]) + struct.pack("<h", joints[v, 0])
        elif len(w) < 3 or w[2] == 0:
            out += bytes([1]) + struct.pack("<hhf", joints[v, 0], joints[v, 1], w[0])
        else:
            j4 = list(joints[v]) + [0] * (4 - len(w))
            w4 = list(w) + [0.0] * (4 - len(w))
            out += bytes([2]) + struct.pack("<hhhh4f", *j4, *w4)
        out += struct.pack("<f", 1.0)
    cols = mesh.face_colors.numpy()
    uniq, inverse = np.unique(cols.round(4), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    faces = mesh.faces.numpy()
    ordered = np.concatenate([faces[inverse == k] for k in range(len(uniq))])
    out += struct.pack("<i", ordered.size) + ordered.astype(np.uint16).tobytes()
    textures = [texture] if texture else []
    out += struct.pack("<i", len(textures))
    for t in textures:
        text(t)
    out += struct.pack("<i", len(uniq))
    for k, c in enumerate(uniq):
        text(f"mat{k}"), text("")
        out += struct.pack("<4f3ff3fB4ff", *c, 1.0, 0, 0, 0, 5.0, *(c * 0.5), 0, 0, 0, 0, 1, 1.0)
        out += struct.pack("<bbBBB", 0 if (texture and k == 0) else -1, -1, 0, 1, 0)
        text("")
        out += struct.pack("<i", int((inverse == k).sum()) * 3)
    rest = skel.rest_global().numpy()[:, :3, 3]
    bones = [(MMD_NAMES[n], rest[j], skel.parents[j]) for j, n in enumerate(skel.names)]
    n_bones = len(bones) + (2 if leg_ik else 0) + len(d_of)
    out += struct.pack("<i", n_bones)
    for name, pos, parent in bones:
        text(name), text("")
        out += struct.pack("<3fhiH3f", *_mmd(pos), parent, 0, 0x001A, 0, 0, 0)
    if leg_ik:
        for side in ("left", "right"):
            jp = "左" if side == "left" else "右"
            text(f"{jp}足ＩＫ"), text("")
            ankle = skel.names.index(f"{side}Foot")
            out += struct.pack("<3fhiH3f", *_mmd(rest[ankle]), -1, 0, 0x003E, 0, 0, 0)
            knee, thigh = skel.names.index(f"{side}LowerLeg"), skel.names.index(f"{side}UpperLeg")
            out += struct.pack("<hifi", ankle, 40, 1.0, 2)
            # MMD's knee: bends about x only, between -180 and -0.5 degrees (left-handed).
            out += struct.pack("<hB6f", knee, 1, -np.pi, 0, 0, -0.5 * np.pi / 180, 0, 0)
            out += struct.pack("<hB", thigh, 0)
    for src, dst in d_of.items():
        text(MMD_NAMES[skel.names[src]] + "D"), text("")
        parent = skel.parents[src]
        parent = d_of.get(parent, parent)  # 足D hangs from the hips, ひざD from 足D, ...
        out += struct.pack("<3fhiH3f", *_mmd(rest[src]), parent, 0, 0x011A, 0, 0, 0)
        out += struct.pack("<hf", src, 1.0)  # inherit 100% of the leg bone's rotation
    out += struct.pack("<iiii", 0, 0, 0, 0)  # morphs, display frames, rigid bodies, joints
    path.write_bytes(bytes(out))


def write_vmd(path: Path, keys: list[tuple], ik_switches: list[tuple[int, dict[str, bool]]] | None = None) -> None:
    """keys: (bone name, frame, position, quaternion xyzw[, curves]), in MMD's left-handed frame.

    `curves` is (4, 4) Bezier controls (x1, y1, x2, y2) in 0..127 for X, Y, Z, rotation; default linear.
    `ik_switches`: (frame, {IK bone name: on}) show/IK keys, written after empty morph, camera,
    light and shadow sections.
    """
    out = bytearray(b"Vocaloid Motion Data 0002".ljust(30, b"\0") + "girl".encode("shift_jis").ljust(20, b"\0"))
    out += struct.pack("<I", len(keys))
    for name, frame, pos, quat, *rest in keys:
        curves = np.asarray(rest[0] if rest else [[20, 20, 107, 107]] * 4, np.uint8)
        interp = bytearray(64)
        for axis in range(4):
            for c in range(4):  # byte layout: x1 of X, Y, Z, R; then y1 of each; then x2; then y2
                interp[axis + 4 * c] = curves[axis, c]
        out += name.encode("shift_jis").ljust(15, b"\0")[:15] + struct.pack("<I3f4f", frame, *pos, *quat) + bytes(interp)
    out += struct.pack("<IIII", 0, 0, 0, 0)
    if ik_switches is not None:
        out += struct.pack("<I", len(ik_switches))
        for frame, states in ik_switches:
            out += struct.pack("<IBI", frame, 1, len(states))
            for name, on in states.items():
                out += name.encode("shift_jis").ljust(20, b"\0") + bytes([int(on)])
    path.write_bytes(bytes(out))
