"""glTF 2.0 / GLB / VRM reader: meshes, skins, materials, node animations and the VRM humanoid map.

Our own parser over the JSON and binary buffers (no third-party glTF library). What it reads:
triangle primitives (also strips and fans), POSITION / JOINTS_0 / WEIGHTS_0 / TEXCOORD_0, sparse
accessors, node TRS or matrices, skins with inverse bind matrices, base colour factors and
textures (sampled once per face), and TRS animations (LINEAR, STEP; CUBICSPLINE uses its values
without the tangents). Morph targets and cameras are ignored.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh
from conr.engine.transforms import compose, quat_to_matrix
from conr.engine.formats import side_file
from conr.errors import ConrError

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
GLB_MAGIC = 0x46546C67
# Required extensions without which the geometry cannot be read at all.
_UNSUPPORTED_REQUIRED = {"KHR_draco_mesh_compression", "EXT_meshopt_compression"}
# Rows of one accessor: three indices of every triangle of the largest model read (5 million), with
# room to spare. An accessor without a buffer view is zeros of its count: a few bytes of JSON could
# otherwise ask for gigabytes.
MAX_ACCESSOR_COUNT = 2 ** 24
# An animation is sampled at 30 frames a second into a transform of every node: past an hour, or
# past this many node transforms in all (about 1.3 GB), it is not an animation to render.
MAX_ANIMATION_SECONDS = 3600.0
MAX_ANIMATION_TRANSFORMS = 20_000_000
# What a malformed document raises on the way (a missing key, an index past a list, a string where a
# number belongs): reported as the file's fault, naming what was wrong.
_MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError, np.linalg.LinAlgError)


class _BadValue(ValueError):
    """A value the reader itself found wrong; its message says what, for the user."""


@dataclass
class NodeAnimation:
    """Sampled glTF animation: local transforms of every node at a fixed frame rate."""

    name: str
    local: torch.Tensor  # (T, N, 4, 4)
    fps: float
    keyed: bool = True  # False when no channel had any keyframe (a motion with no frames)


@dataclass
class GltfModel:
    mesh: SkinnedMesh
    humanoid: dict[str, int]  # canonical bone name -> skeleton joint index (VRM map or name guesses)
    animations: list[NodeAnimation]
    path: Path
    warnings: list[str] = field(default_factory=list)


class _Doc:
    """The JSON document plus its buffers, with bounds-checked accessor reads."""

    def __init__(self, path: Path):
        self.path = path
        data = _read_bytes(path)
        self.bin: bytes | None = None
        if data[:4] == struct.pack("<I", GLB_MAGIC):
            self.gltf = self._parse_glb(data)
        else:
            try:
                self.gltf = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ConrError(f"not a glTF file: neither GLB nor JSON ({err})", path=path,
                                hint="export the model as .glb or .gltf (glTF 2.0)") from None
        asset = self.gltf.get("asset") if isinstance(self.gltf, dict) else None
        if not isinstance(asset, dict) or not str(asset.get("version", "")).startswith("2"):
            raise ConrError("only glTF 2.0 is supported (asset.version is missing or not 2.x)", path=path,
                            hint="re-export the model as glTF 2.0")
        unsupported = sorted(set(self.gltf.get("extensionsRequired", [])) & _UNSUPPORTED_REQUIRED)
        if unsupported:
            raise ConrError(f"the model needs {', '.join(unsupported)}, which is not supported", path=path,
                            hint="re-export the model without mesh compression")
        self._buffers: dict[int, bytes] = {}
        self._accessors: dict[int, np.ndarray] = {}

    def _parse_glb(self, data: bytes) -> dict:
        if len(data) < 20:
            raise ConrError("GLB file is truncated (shorter than its header)", path=self.path, hint="re-export or re-download it")
        _, version, length = struct.unpack_from("<III", data, 0)
        if version != 2:
            raise ConrError(f"GLB container version {version} is not supported (need 2)", path=self.path)
        if length > len(data):
            raise ConrError(f"GLB file is truncated: header says {length} bytes, file has {len(data)}", path=self.path,
                            hint="the download or export was cut short; get the file again")
        pos, doc = 12, None
        while pos + 8 <= length:
            clen, ctype = struct.unpack_from("<II", data, pos)
            chunk = data[pos + 8:pos + 8 + clen]
            if len(chunk) < clen:
                raise ConrError("GLB chunk runs past the end of the file", path=self.path, hint="the file is truncated")
            if ctype == 0x4E4F534A:
                try:
                    doc = json.loads(chunk.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise ConrError(f"the GLB's JSON chunk is not UTF-8 JSON ({err})", path=self.path,
                                    hint="the file is corrupt: re-export or download it again") from None
            elif ctype == 0x004E4942 and self.bin is None:
                self.bin = chunk
            pos += 8 + clen + (-clen % 4)
        if doc is None:
            raise ConrError("GLB file has no JSON chunk", path=self.path)
        return doc

    def buffer(self, i: int) -> bytes:
        if i not in self._buffers:
            buf = self.gltf["buffers"][i]
            uri = buf.get("uri")
            if uri is None:
                if self.bin is None:
                    raise ConrError(f"buffer {i} refers to the GLB binary chunk, which is missing", path=self.path)
                data = self.bin
            else:
                data = self._uri(uri, f"buffer {i}")
                if data is None:
                    raise ConrError(f"buffer file {uri!r} not found next to the model", path=self.path,
                                    hint=f"put {uri} in {self.path.parent} or export a single .glb")
            if len(data) < buf.get("byteLength", 0):
                raise ConrError(f"buffer {i} is shorter than its declared byteLength", path=self.path,
                                hint="the model's binary data is truncated; re-export it")
            self._buffers[i] = data
        return self._buffers[i]

    def _uri(self, uri: str, what: str) -> bytes | None:
        if uri.startswith("data:"):
            try:
                return base64.b64decode(uri.split(",", 1)[1])
            except (IndexError, ValueError):
                raise ConrError(f"{what} has a malformed data: URI", path=self.path) from None
        from urllib.parse import unquote

        f = side_file(self.path, unquote(uri))
        return None if f is None else f.read_bytes()

    def view_bytes(self, view_index: int) -> tuple[bytes, int, int, int | None]:
        view = self.gltf["bufferViews"][view_index]
        return self.buffer(view["buffer"]), view.get("byteOffset", 0), view["byteLength"], view.get("byteStride")

    def accessor(self, i: int) -> np.ndarray:
        """Accessor `i` as a (count, components) float64 array (normalised integers scaled to [0, 1])."""
        if i not in self._accessors:
            self._accessors[i] = self._read_accessor(i)
        return self._accessors[i]

    def _read_accessor(self, i: int) -> np.ndarray:
        try:
            acc = self.gltf["accessors"][i]
            dtype = np.dtype(_COMPONENT[acc["componentType"]]).newbyteorder("<")
            ncomp, count = _NCOMP[acc["type"]], acc["count"]
        except (KeyError, IndexError, TypeError):
            raise ConrError(f"accessor {i} is missing or malformed", path=self.path) from None
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_ACCESSOR_COUNT:
            raise ConrError(f"accessor {i} has count {count!r}; a count is a whole number from 0 to "
                            f"{MAX_ACCESSOR_COUNT:,}", path=self.path, hint="the model is corrupt; re-export it")
        if "bufferView" in acc:
            data, offset, length, stride = self.view_bytes(acc["bufferView"])
            offset += acc.get("byteOffset", 0)
            stride = stride or dtype.itemsize * ncomp
            need = offset + stride * (count - 1) + dtype.itemsize * ncomp if count else offset
            if need > len(data) or acc.get("byteOffset", 0) + (stride * (count - 1) + dtype.itemsize * ncomp if count else 0) > length:
                raise ConrError(f"accessor {i} reads past the end of its buffer", path=self.path,
                                hint="the model's binary data is truncated or inconsistent; re-export it")
            arr = np.ndarray((count, ncomp), dtype, data, offset, (stride, dtype.itemsize)).copy()
        else:
            arr = np.zeros((count, ncomp), dtype)
        if "sparse" in acc:
            sp = acc["sparse"]
            idx_dtype = np.dtype(_COMPONENT[sp["indices"]["componentType"]]).newbyteorder("<")
            d, o, _, _ = self.view_bytes(sp["indices"]["bufferView"])
            idx = np.frombuffer(d, idx_dtype, sp["count"], o + sp["indices"].get("byteOffset", 0))
            d, o, _, _ = self.view_bytes(sp["values"]["bufferView"])
            vals = np.frombuffer(d, dtype, sp["count"] * ncomp, o + sp["values"].get("byteOffset", 0)).reshape(-1, ncomp)
            arr = arr.copy()
            arr[idx] = vals
        out = arr.astype(np.float64)
        if acc.get("normalized") and dtype.kind in "iu":
            out = out / np.iinfo(dtype).max
            if dtype.kind == "i":
                out = np.maximum(out, -1.0)
        return out

    def image(self, texture_index: int) -> tuple[np.ndarray | None, str]:
        """Decoded RGBA float image of a texture, or None, and a name for messages."""
        try:
            src = self.gltf["textures"][texture_index].get("source")
            img = self.gltf["images"][src]
        except (KeyError, IndexError, TypeError):
            return None, f"texture {texture_index}"
        name = img.get("uri") or img.get("name") or f"image {src}"
        if name.startswith("data:"):
            name = img.get("name") or f"image {src} (embedded)"
        if "bufferView" in img:
            d, o, n, _ = self.view_bytes(img["bufferView"])
            raw = d[o:o + n]
        else:
            raw = self._uri(img.get("uri", ""), name) if img.get("uri") else None
        if not raw:
            return None, name
        return decode_rgba(raw), name


def decode_rgba(raw: bytes) -> np.ndarray | None:
    """PNG/JPEG/BMP/TGA bytes -> (H, W, 4) float RGBA in [0, 1] (alpha 1 when the image has none), or None."""
    import cv2

    from conr.files.io import MAX_IMAGE_SIDE, header_size

    size = header_size(raw)
    if size is not None and max(size) > MAX_IMAGE_SIDE:
        return None  # decoding would allocate gigabytes: treated as an unreadable texture
    arr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        from conr.engine.formats.tga import decode_tga

        tga = decode_tga(raw)
        return None if tga is None else tga.astype(np.float64) / 255.0
    if arr.dtype != np.uint8:
        arr = (arr.astype(np.float64) / np.iinfo(arr.dtype).max * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGRA)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2BGRA)
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA).astype(np.float64) / 255.0


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ConrError("model file not found", path=path, hint="check the path")
    return path.read_bytes()


def _numbers(node: dict, key: str, default: list[float]) -> np.ndarray:
    """A node's `matrix`, `translation`, `rotation` or `scale`: that many finite numbers."""
    value = np.array(node.get(key, default), float).reshape(-1)
    if value.shape != (len(default),) or not np.isfinite(value).all():
        raise _BadValue(f"node {node.get('name', '')!r} has a {key} that is not {len(default)} finite numbers")
    return value


def _node_local(node: dict) -> np.ndarray:
    if "matrix" in node:
        return _numbers(node, "matrix", [0.0] * 16).reshape(4, 4).T  # glTF stores column-major
    t = torch.tensor(_numbers(node, "translation", [0, 0, 0]), dtype=torch.float64)
    r = quat_to_matrix(torch.tensor(_numbers(node, "rotation", [0, 0, 0, 1]), dtype=torch.float64))
    s = torch.tensor(_numbers(node, "scale", [1, 1, 1]), dtype=torch.float64)
    return compose(r, t, s).numpy()


def _inverse(m: np.ndarray) -> np.ndarray:
    """Inverses of (..., 4, 4) transforms; a node scaled to nothing (legal glTF, to hide it) has none,
    and gets the pseudo-inverse."""
    try:
        return np.linalg.inv(m)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(m)


def _topological_nodes(gltf: dict, path: Path) -> tuple[list[int], list[int]]:
    """Node order with parents first, and each node's parent (-1 for roots)."""
    nodes = gltf.get("nodes", [])
    parent = [-1] * len(nodes)
    for i, n in enumerate(nodes):
        for c in n.get("children", []):
            if not 0 <= c < len(nodes) or parent[c] != -1:
                raise ConrError(f"node {i} lists child {c}, which is invalid or already has a parent", path=path)
            parent[c] = i
    order, seen = [], set()
    stack = [i for i in range(len(nodes)) if parent[i] == -1][::-1]
    while stack:
        i = stack.pop()
        if i in seen:
            raise ConrError("the node hierarchy has a cycle", path=path)
        seen.add(i)
        order.append(i)
        stack.extend(reversed(nodes[i].get("children", [])))
    if len(order) != len(nodes):
        raise ConrError("the node hierarchy has a cycle", path=path)
    return order, parent


def _srgb(c: np.ndarray) -> np.ndarray:
    """glTF colour factors are linear; our face colours are display (sRGB) values."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def _triangles(mode: int, idx: np.ndarray) -> np.ndarray | None:
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if mode == 5:  # strip: flip every other triangle to keep the winding
        t = np.stack([idx[:-2], idx[1:-1], idx[2:]], 1)
        t[1::2] = t[1::2][:, [1, 0, 2]]
        return t
    if mode == 6:
        return np.stack([np.full(len(idx) - 2, idx[0]), idx[1:-1], idx[2:]], 1)
    return None


def load_gltf(path: str | Path, fps: float = 30.0) -> GltfModel:
    """Read a .gltf, .glb or .vrm file into a skinned mesh over all its nodes, plus its animations."""
    path = Path(path)
    try:
        return _load_gltf(path, fps)
    except _MALFORMED as err:
        if isinstance(err, _BadValue):
            what = str(err)
        elif isinstance(err, (KeyError, IndexError)):
            what = f"a reference to something the file lacks ({type(err).__name__} {err})"
        else:
            what = f"{type(err).__name__}: {err}"
        raise ConrError(f"malformed glTF document: {what}", path=path,
                        hint="the file breaks the glTF 2.0 rules: re-export it (or check it with the Khronos "
                             "glTF validator)") from None


def _load_gltf(path: Path, fps: float) -> GltfModel:
    doc = _Doc(path)
    g = doc.gltf
    nodes = g.get("nodes", [])
    order, parent = _topological_nodes(g, path)
    pos_of = {n: k for k, n in enumerate(order)}  # node index -> skeleton joint index
    names = []
    used = set()
    for n in order:
        name = nodes[n].get("name") or f"node{n}"
        while name in used:
            name = f"{name}_{n}"
        used.add(name)
        names.append(name)
    rest_local = torch.tensor(np.stack([_node_local(nodes[n]) for n in order]) if order else np.zeros((0, 4, 4)),
                              dtype=torch.float32)
    skel = Skeleton(names, [pos_of[parent[n]] if parent[n] >= 0 else -1 for n in order], rest_local)
    rest_global = skel.rest_global().double().numpy()
    inverse_bind = _inverse(rest_global)
    skin_owner: dict[int, int] = {}
    messages: list[str] = []
    for si, skin in enumerate(g.get("skins", [])):
        ibm = doc.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1) \
            if "inverseBindMatrices" in skin else np.tile(np.eye(4), (len(skin["joints"]), 1, 1))
        for k, j in enumerate(skin["joints"]):
            if j in skin_owner:
                continue
            skin_owner[j] = si
            inverse_bind[pos_of[j]] = ibm[k]

    verts, faces, joints, weights, colours = [], [], [], [], []
    base = 0
    texture_cache: dict[int, tuple[np.ndarray | None, str]] = {}
    warned_textures: set[str] = set()
    shared: dict[tuple, int] = {}
    uvs: list[np.ndarray] = []
    tex_list: list[torch.Tensor] = []
    tex_index: dict[int, int] = {}
    face_tex: list[np.ndarray] = []
    tints: list[np.ndarray] = []
    cutoffs: list[np.ndarray] = []
    for n in order:
        node = nodes[n]
        if "mesh" not in node:
            continue
        skin = g["skins"][node["skin"]] if "skin" in node else None
        for prim in g["meshes"][node["mesh"]].get("primitives", []):
            attrs = prim.get("attributes", {})
            if "POSITION" not in attrs:
                continue
            p = doc.accessor(attrs["POSITION"])
            if not np.isfinite(p).all():
                raise ConrError(f"mesh {node['mesh']} has vertex positions that are not finite (nan or inf)", path=path,
                                hint="the model is corrupt; re-export it")
            idx = doc.accessor(prim["indices"])[:, 0].astype(np.int64) if "indices" in prim else np.arange(len(p))
            tris = _triangles(prim.get("mode", 4), idx)
            if tris is None:
                messages.append(f"skipped a primitive of mesh {node['mesh']} drawn as points or lines")
                continue
            if tris.size and (tris.max() >= len(p) or tris.min() < 0):
                raise ConrError(f"mesh {node['mesh']} has triangle indices past its {len(p)} vertices", path=path,
                                hint="the model is corrupt; re-export it")
            if skin is not None and "JOINTS_0" in attrs and "WEIGHTS_0" in attrs:
                jl = doc.accessor(attrs["JOINTS_0"]).astype(np.int64)
                w = doc.accessor(attrs["WEIGHTS_0"])
                if "JOINTS_1" in attrs and "WEIGHTS_1" in attrs:
                    # Up to 8 influences: keep the 4 heaviest (renormalised below).
                    jl = np.concatenate([jl, doc.accessor(attrs["JOINTS_1"]).astype(np.int64)], 1)
                    w = np.concatenate([w, doc.accessor(attrs["WEIGHTS_1"])], 1)
                    top = np.argsort(-w, axis=1, kind="stable")[:, :4]
                    jl, w = np.take_along_axis(jl, top, 1), np.take_along_axis(w, top, 1)
                if jl.size and jl.max() >= len(skin["joints"]):
                    raise ConrError(f"mesh {node['mesh']} refers to joint {jl.max()} of a skin with "
                                    f"{len(skin['joints'])} joints", path=path, hint="the model is corrupt; re-export it")
                j = np.array([pos_of[x] for x in skin["joints"]], np.int64)[jl]
                s = w.sum(1, keepdims=True)
                w = np.where(s > 0, w / np.where(s > 0, s, 1), np.eye(w.shape[1])[0])
                vb = p
            else:
                # A rigid mesh follows its own node: bind-space position = inverse(IBM) @ mesh-space position.
                j = np.full((len(p), 4), pos_of[n], np.int64)
                w = np.tile([1.0, 0, 0, 0], (len(p), 1))
                m = _inverse(inverse_bind[pos_of[n]])
                vb = p @ m[:3, :3].T + m[:3, 3]
            col, tex_img, tint, cutoff = _material_colours(doc, prim, attrs, tris, texture_cache, warned_textures, messages)
            # Primitives that share vertex accessors (one per material, typically) share vertices.
            key = (n, attrs["POSITION"], attrs.get("JOINTS_0"), attrs.get("WEIGHTS_0"))
            if key not in shared:
                shared[key] = base
                verts.append(vb)
                joints.append(_pad4(j))
                weights.append(_pad4(w))
                uvs.append(doc.accessor(attrs["TEXCOORD_0"])[:, :2] if "TEXCOORD_0" in attrs else np.zeros((len(p), 2)))
                base += len(p)
            faces.append(tris + shared[key])
            colours.append(col)
            if tex_img is not None:
                if id(tex_img) not in tex_index:
                    tex_index[id(tex_img)] = len(tex_list)
                    tex_list.append(torch.tensor((tex_img * 255).round().astype(np.uint8)))
                face_tex.append(np.full(len(tris), tex_index[id(tex_img)]))
            else:
                face_tex.append(np.full(len(tris), -1))
            tints.append(np.tile(tint, (len(tris), 1)))
            cutoffs.append(np.full(len(tris), cutoff if tex_img is not None else 0.0))
    if not faces:
        raise ConrError("the model has no triangle meshes", path=path, hint="export the character mesh with the file")
    mesh = SkinnedMesh(
        vertices=torch.tensor(np.concatenate(verts), dtype=torch.float32),
        faces=torch.tensor(np.concatenate(faces), dtype=torch.int64),
        joints=torch.tensor(np.concatenate(joints), dtype=torch.int64),
        weights=torch.tensor(np.concatenate(weights), dtype=torch.float32),
        skeleton=skel,
        face_colors=torch.tensor(np.concatenate(colours), dtype=torch.float32),
        inverse_bind=torch.tensor(inverse_bind, dtype=torch.float32),
        warnings=messages,
        uv=torch.tensor(np.concatenate(uvs), dtype=torch.float32),
        textures=tex_list,
        face_texture=torch.tensor(np.concatenate(face_tex), dtype=torch.int64),
        face_tint=torch.tensor(np.concatenate(tints), dtype=torch.float32),
        face_alpha_cutoff=torch.tensor(np.concatenate(cutoffs), dtype=torch.float32),
    )
    humanoid = _vrm_humanoid(g, pos_of) or guess_humanoid(skel.names)
    anims = [_sample_animation(doc, a, i, order, pos_of, fps) for i, a in enumerate(g.get("animations", []))]
    return GltfModel(mesh, humanoid, anims, path, messages)


def _pad4(a: np.ndarray) -> np.ndarray:
    """Exactly four influences per vertex (extra JOINTS_1 sets are not read)."""
    return np.pad(a[:, :4], ((0, 0), (0, max(0, 4 - a.shape[1]))))


def _material_colours(doc: _Doc, prim: dict, attrs: dict, tris: np.ndarray, cache: dict, warned: set,
                      messages: list[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """(F, 3) flat colours (base colour factor, times the texture at each face's centre UV), the
    RGBA texture if there is a usable one, the factor that tints it, and the alpha cutoff (0: opaque)."""
    g = doc.gltf
    factor = np.ones(4)
    tex = None
    cutoff = 0.0
    if "material" in prim:
        mat = g["materials"][prim["material"]]
        # Cut-out (MASK) materials make holes; blended ones are drawn as cut-out at half alpha.
        mode = mat.get("alphaMode", "OPAQUE")
        cutoff = float(mat.get("alphaCutoff", 0.5)) if mode == "MASK" else 0.5 if mode == "BLEND" else 0.0
        pbr = mat.get("pbrMetallicRoughness", {})
        factor = np.array(pbr.get("baseColorFactor", [1, 1, 1, 1]), float)
        tex = pbr.get("baseColorTexture", {}).get("index")
    tint = _srgb(factor[:3])
    base = np.tile(tint, (len(tris), 1))
    if tex is None:
        return base, None, tint, 0.0
    if tex not in cache:
        cache[tex] = doc.image(tex)
    img, name = cache[tex]
    if img is None or "TEXCOORD_0" not in attrs:
        if name not in warned:
            warned.add(name)
            messages.append(f"texture '{name}' is missing or unreadable; using a flat colour")
        return base, None, tint, 0.0
    uv = doc.accessor(attrs["TEXCOORD_0"])[tris].mean(1)  # (F, 2) face centres
    h, w = img.shape[:2]
    x = np.clip((uv[:, 0] % 1.0) * w, 0, w - 1).astype(int)
    y = np.clip((uv[:, 1] % 1.0) * h, 0, h - 1).astype(int)
    return img[y, x, :3] * tint, img, tint, cutoff


def _vrm_humanoid(g: dict, pos_of: dict[int, int]) -> dict[str, int]:
    ext = g.get("extensions", {})
    out: dict[str, int] = {}
    if "VRMC_vrm" in ext:  # VRM 1.0: {"humanBones": {"hips": {"node": 3}, ...}}
        for bone, v in ext["VRMC_vrm"].get("humanoid", {}).get("humanBones", {}).items():
            if isinstance(v, dict) and v.get("node") in pos_of:
                out[bone] = pos_of[v["node"]]
    elif "VRM" in ext:  # VRM 0.x: {"humanBones": [{"bone": "hips", "node": 3}, ...]}
        for v in ext["VRM"].get("humanoid", {}).get("humanBones", []):
            if v.get("node") in pos_of and "bone" in v:
                out[v["bone"]] = pos_of[v["node"]]
    if "upperChest" in out and "chest" not in out:
        out["chest"] = out.pop("upperChest")
    return out


def _sample_animation(doc: _Doc, anim: dict, index: int, order: list[int], pos_of: dict[int, int],
                      fps: float) -> NodeAnimation:
    """Sample every channel at `fps` into (T, N, 4, 4) local transforms (unanimated parts stay at rest)."""
    nodes = doc.gltf["nodes"]
    chans = []
    end = 0.0
    for ch in anim.get("channels", []):
        tgt = ch.get("target", {})
        if tgt.get("path") not in ("translation", "rotation", "scale") or tgt.get("node") not in pos_of:
            continue
        smp = anim["samplers"][ch["sampler"]]
        times = doc.accessor(smp["input"])[:, 0]
        vals = doc.accessor(smp["output"])
        if not (np.isfinite(times).all() and np.isfinite(vals).all()):
            raise ConrError(f"animation {anim.get('name') or index} has keyframe times or values that are not "
                            "finite (nan or inf)", path=doc.path, hint="the animation is corrupt; re-export it")
        if smp.get("interpolation") == "CUBICSPLINE":
            vals = vals.reshape(len(times), 3, -1)[:, 1]  # keep the values, drop in/out tangents
        chans.append((tgt["node"], tgt["path"], times, vals, smp.get("interpolation", "LINEAR")))
        if len(times):
            end = max(end, float(times[-1]))
    count = max(1, int(round(min(end, MAX_ANIMATION_SECONDS + 1) * fps)) + 1)
    if end > MAX_ANIMATION_SECONDS or count * len(order) > MAX_ANIMATION_TRANSFORMS:
        raise ConrError(f"animation {anim.get('name') or index} lasts {end:g} s over {len(order)} nodes, more than "
                        f"conr samples (an hour, {MAX_ANIMATION_TRANSFORMS:,} node transforms in all)",
                        path=doc.path, hint="export a shorter clip, or check the keyframe times (seconds, not frames)")
    t = np.arange(count) / fps
    trs = {n: {"translation": np.tile(nodes[n].get("translation", [0, 0, 0]), (count, 1)).astype(float),
               "rotation": np.tile(nodes[n].get("rotation", [0, 0, 0, 1]), (count, 1)).astype(float),
               "scale": np.tile(nodes[n].get("scale", [1, 1, 1]), (count, 1)).astype(float)} for n in order}
    for n, kind, times, vals, interp in chans:
        if len(times) and len(vals) >= len(times):
            trs[n][kind] = _interpolate(times, vals, t, kind == "rotation", interp == "STEP")
    local = []
    for n in order:
        if "matrix" in nodes[n] and not any(c[0] == n for c in chans):
            local.append(torch.tensor(_node_local(nodes[n]), dtype=torch.float32).expand(count, 4, 4))
            continue
        d = trs[n]
        r = quat_to_matrix(torch.tensor(d["rotation"], dtype=torch.float64))
        local.append(compose(r, torch.tensor(d["translation"], dtype=torch.float64),
                             torch.tensor(d["scale"], dtype=torch.float64)).float())
    keyed = any(len(c[2]) for c in chans)
    return NodeAnimation(anim.get("name") or f"animation{index}", torch.stack(local, 1), fps, keyed)


def _interpolate(times: np.ndarray, vals: np.ndarray, t: np.ndarray, is_quat: bool, step: bool) -> np.ndarray:
    if len(times) == 1:
        return np.tile(vals[0], (len(t), 1))
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[k + 1] - times[k], 1e-9)
    a = np.clip((t - times[k]) / span, 0, 1)[:, None]
    if step:
        a = (a >= 1).astype(float)
    v0, v1 = vals[k], vals[k + 1]
    if not is_quat:
        return v0 * (1 - a) + v1 * a
    # Spherical interpolation along the shorter arc.
    dot = (v0 * v1).sum(1, keepdims=True)
    v1 = np.where(dot < 0, -v1, v1)
    dot = np.abs(dot).clip(-1, 1)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    small = sin < 1e-6
    w0 = np.where(small, 1 - a, np.sin((1 - a) * theta) / np.where(small, 1, sin))
    w1 = np.where(small, a, np.sin(a * theta) / np.where(small, 1, sin))
    q = w0 * v0 + w1 * v1
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def guess_humanoid(names: list[str]) -> dict[str, int]:
    """Canonical humanoid bones found by common naming schemes (Mixamo, CMU, VRoid, MMD-English...)."""
    from conr.engine.retarget import match_humanoid

    return match_humanoid(names)
