"""Procedural anime-like characters: a humanoid skeleton dressed in skinned primitives.

A seed picks the proportions, the palette, the hair style (short, long, twin tails, ponytail,
bun), the sleeves, the skirt or shorts and the socks. Rest pose: T-pose, Y up, facing +Z,
the character's left on +X; about 1.5 units tall. Bone names follow the VRM humanoid names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from conr.engine.geometry import Part, bezier, ellipsoid, plaid, segment_distance, stripes, tube, tube_uv
from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh

HUMANOID_BONES = [
    "hips", "spine", "chest", "neck", "head",
    "leftShoulder", "leftUpperArm", "leftLowerArm", "leftHand",
    "rightShoulder", "rightUpperArm", "rightLowerArm", "rightHand",
    "leftUpperLeg", "leftLowerLeg", "leftFoot", "leftToes",
    "rightUpperLeg", "rightLowerLeg", "rightFoot", "rightToes",
]
_PARENT = {
    "spine": "hips", "chest": "spine", "neck": "chest", "head": "neck",
    "leftShoulder": "chest", "leftUpperArm": "leftShoulder", "leftLowerArm": "leftUpperArm", "leftHand": "leftLowerArm",
    "rightShoulder": "chest", "rightUpperArm": "rightShoulder", "rightLowerArm": "rightUpperArm", "rightHand": "rightLowerArm",
    "leftUpperLeg": "hips", "leftLowerLeg": "leftUpperLeg", "leftFoot": "leftLowerLeg", "leftToes": "leftFoot",
    "rightUpperLeg": "hips", "rightLowerLeg": "rightUpperLeg", "rightFoot": "rightLowerLeg", "rightToes": "rightFoot",
}

HAIR = [(0.98, 0.62, 0.76), (0.55, 0.75, 0.98), (0.93, 0.93, 0.97), (0.99, 0.86, 0.45), (0.48, 0.31, 0.22),
        (0.16, 0.16, 0.26), (0.86, 0.26, 0.3), (0.7, 0.55, 0.93), (0.5, 0.88, 0.78)]
EYES = [(0.2, 0.45, 0.9), (0.2, 0.65, 0.45), (0.6, 0.25, 0.75), (0.55, 0.3, 0.15), (0.85, 0.2, 0.25), (0.95, 0.65, 0.15)]
SKIN = [(1.0, 0.9, 0.82), (0.99, 0.86, 0.76), (0.93, 0.78, 0.66)]
TOPS = [(0.97, 0.97, 0.98), (0.2, 0.25, 0.45), (0.95, 0.75, 0.82), (0.35, 0.35, 0.38), (0.55, 0.8, 0.95), (0.98, 0.9, 0.6)]
BOTTOMS = [(0.18, 0.22, 0.42), (0.75, 0.2, 0.25), (0.12, 0.12, 0.14), (0.35, 0.5, 0.75), (0.92, 0.92, 0.94), (0.4, 0.3, 0.55)]
ACCENTS = [(0.9, 0.15, 0.25), (0.98, 0.8, 0.2), (0.25, 0.55, 0.95), (0.95, 0.5, 0.7), (0.2, 0.7, 0.5)]


@dataclass
class CharacterSpec:
    """Everything a seed decides; saved in the synth manifest."""

    seed: int
    height: float
    head: float
    hair_style: str
    hair: tuple
    eyes: tuple
    skin: tuple
    top: tuple
    bottom: tuple
    accent: tuple
    socks: tuple
    shoes: tuple
    long_sleeves: bool
    skirt: bool
    ahoge: bool
    detail: float
    skirt_pattern: str = "plain"  # plain, plaid or stripes (simple textures)
    sock_pattern: str = "plain"  # plain or stripes

    def to_dict(self) -> dict:
        return asdict(self)


def random_spec(seed: int, detail: float = 1.0) -> CharacterSpec:
    rng = np.random.default_rng(seed)
    pick = lambda xs: tuple(float(c) for c in xs[rng.integers(len(xs))])  # noqa: E731
    return CharacterSpec(
        seed=seed,
        height=float(rng.uniform(0.92, 1.08)),
        head=float(rng.uniform(0.95, 1.12)),
        hair_style=str(rng.choice(["short", "long", "twintails", "ponytail", "bun"])),
        hair=pick(HAIR), eyes=pick(EYES), skin=pick(SKIN), top=pick(TOPS), bottom=pick(BOTTOMS),
        accent=pick(ACCENTS),
        socks=pick([(0.97, 0.97, 0.98), (0.12, 0.12, 0.15), (0.2, 0.22, 0.4)]),
        shoes=pick([(0.3, 0.18, 0.12), (0.1, 0.1, 0.12), (0.85, 0.3, 0.35)]),
        long_sleeves=bool(rng.random() < 0.4), skirt=bool(rng.random() < 0.75), ahoge=bool(rng.random() < 0.5),
        detail=detail,
        # Drawn last so that adding them kept every earlier choice of a seed unchanged.
        skirt_pattern=str(rng.choice(["plain", "plaid", "stripes"])),
        sock_pattern=str(rng.choice(["plain", "plain", "stripes"])),
    )


def humanoid_skeleton(height: float = 1.0) -> tuple[Skeleton, dict[str, np.ndarray]]:
    """T-pose humanoid; returns the skeleton and the global rest position of every joint plus end points."""
    h = height
    pos = {
        "hips": (0, 0.80, 0), "spine": (0, 0.90, 0), "chest": (0, 1.04, 0), "neck": (0, 1.19, 0), "head": (0, 1.245, 0),
        "leftShoulder": (0.03, 1.165, 0), "leftUpperArm": (0.115, 1.165, 0), "leftLowerArm": (0.325, 1.165, 0),
        "leftHand": (0.52, 1.165, 0), "leftUpperLeg": (0.075, 0.78, 0), "leftLowerLeg": (0.075, 0.435, 0),
        "leftFoot": (0.075, 0.075, -0.01), "leftToes": (0.075, 0.02, 0.09),
    }
    for name in list(pos):
        if name.startswith("left"):
            x, y, z = pos[name]
            pos["right" + name[4:]] = (-x, y, z)
    pos = {k: np.array(v, float) * np.array([1.0, h, 1.0]) for k, v in pos.items()}
    parents = [-1 if n == "hips" else HUMANOID_BONES.index(_PARENT[n]) for n in HUMANOID_BONES]
    offsets = [pos[n] - (pos[_PARENT[n]] if n in _PARENT else 0) for n in HUMANOID_BONES]
    skel = Skeleton.from_offsets(HUMANOID_BONES, parents, torch.tensor(np.array(offsets), dtype=torch.float32))
    # Ends of the leaf bones, for skinning segments.
    pos["headTop"] = pos["head"] + [0, 0.3 * h, 0]
    pos["leftHandEnd"] = pos["leftHand"] + [0.08, 0, 0]
    pos["rightHandEnd"] = pos["rightHand"] - [0.08, 0, 0]
    pos["leftToesEnd"] = pos["leftToes"] + [0, 0, 0.05]
    pos["rightToesEnd"] = pos["rightToes"] + [0, 0, 0.05]
    return skel, pos


_CHILD = {"hips": "spine", "spine": "chest", "chest": "neck", "neck": "head", "head": "headTop",
          "leftShoulder": "leftUpperArm", "leftUpperArm": "leftLowerArm", "leftLowerArm": "leftHand", "leftHand": "leftHandEnd",
          "leftUpperLeg": "leftLowerLeg", "leftLowerLeg": "leftFoot", "leftFoot": "leftToes", "leftToes": "leftToesEnd"}
for _k, _v in list(_CHILD.items()):
    if _k.startswith("left"):
        _CHILD["right" + _k[4:]] = "right" + _v[4:]


def _weights(part: Part, pos: dict[str, np.ndarray], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Skinning weights from inverse distance to the candidate bones' segments (smooth at joints)."""
    d = np.stack([segment_distance(part.vertices, pos[b], pos[_CHILD[b]]) for b in part.bones], 1)
    w = 1.0 / np.maximum(d, 1e-4) ** 4
    k = min(k, len(part.bones))
    top = np.argsort(-w, axis=1)[:, :k]
    wk = np.take_along_axis(w, top, 1)
    wk /= wk.sum(1, keepdims=True)
    idx = np.array([HUMANOID_BONES.index(b) for b in part.bones])[top]
    if k < 3:
        pad = 3 - k
        idx = np.concatenate([idx, np.zeros((len(idx), pad), int)], 1)
        wk = np.concatenate([wk, np.zeros((len(wk), pad))], 1)
    return idx, wk


def _part(geom, colour, bones, unlit: bool = False, band_colours=None) -> Part:
    verts, faces = geom[0], geom[1]
    colours = np.tile(np.asarray(colour, float), (len(faces), 1))
    if band_colours is not None:
        colours = band_colours(geom[2])
    return Part(verts, faces, colours, bones, unlit)


def build_character(spec: CharacterSpec) -> SkinnedMesh:
    """The skinned mesh described by `spec`; deterministic."""
    rng = np.random.default_rng(spec.seed + 7919)
    skel, P = humanoid_skeleton(spec.height)
    q = lambda n: max(4, int(round(n * spec.detail)))  # noqa: E731  tessellation scaled by detail
    parts: list[Part] = []
    skin, hair = spec.skin, spec.hair
    h = spec.height
    hr = 0.125 * spec.head  # head radius
    hc = P["head"] + [0, hr * 0.95, 0.005]  # head centre

    # Head and face.
    parts.append(_part(ellipsoid(hc, (hr * 0.98, hr * 1.0, hr * 0.95), q(28)), skin, ["head"]))
    parts.append(_part(ellipsoid(hc + [0, -hr * 0.45, hr * 0.22], (hr * 0.62, hr * 0.55, hr * 0.7), q(20)), skin, ["head"]))
    for s in (1, -1):
        eye_c = hc + [s * hr * 0.36, -hr * 0.22, hr * 0.86]
        parts.append(_part(ellipsoid(eye_c, (hr * 0.2, hr * 0.27, hr * 0.08), q(14)), (0.98, 0.98, 1.0), ["head"], True))
        parts.append(_part(ellipsoid(eye_c + [-s * hr * 0.02, -hr * 0.03, hr * 0.04], (hr * 0.15, hr * 0.22, hr * 0.07), q(14)),
                           spec.eyes, ["head"], True))
        parts.append(_part(ellipsoid(eye_c + [-s * hr * 0.02, -hr * 0.05, hr * 0.07], (hr * 0.08, hr * 0.12, hr * 0.06), q(10)),
                           tuple(c * 0.35 for c in spec.eyes), ["head"], True))
        parts.append(_part(ellipsoid(eye_c + [s * hr * 0.05, hr * 0.06, hr * 0.11], (hr * 0.05, hr * 0.06, hr * 0.03), q(8)),
                           (1.0, 1.0, 1.0), ["head"], True))
        lash = bezier([eye_c + [s * hr * 0.24, hr * 0.14, -hr * 0.02], eye_c + [0, hr * 0.34, hr * 0.09],
                       eye_c + [-s * hr * 0.22, hr * 0.22, hr * 0.02]], 8)
        parts.append(_part(tube(lash, np.full(8, hr * 0.035), q(6)), (0.15, 0.1, 0.12), ["head"], True))
        parts.append(_part(ellipsoid(eye_c + [s * hr * 0.12, -hr * 0.33, -hr * 0.06], (hr * 0.15, hr * 0.06, hr * 0.05), q(10)),
                           (1.0, 0.68, 0.7), ["head"], True))
    mouth = hc + [0, -hr * 0.62, hr * 0.82]
    parts.append(_part(ellipsoid(mouth, (hr * 0.09, hr * 0.035, hr * 0.03), q(8)), (0.75, 0.3, 0.32), ["head"], True))

    # Hair: a cap that leaves the face open, bangs, side locks, then the style.
    cap_v, cap_f = ellipsoid(hc + [0, hr * 0.08, -hr * 0.05], (hr * 1.12, hr * 1.1, hr * 1.1), q(32))
    centre = cap_v[cap_f].mean(1) - hc
    # An oval opening for the face; the cap still covers the temples and the sides of the head.
    face_open = (centre[:, 2] > 0) & ((centre[:, 0] / (hr * 0.78)) ** 2 + ((centre[:, 1] + hr * 0.35) / (hr * 0.85)) ** 2 < 1)
    parts.append(Part(cap_v, cap_f, np.tile(hair, (len(cap_f), 1)), ["head"]).keep_faces(~face_open))
    n_bangs = 7
    for i in range(n_bangs):
        x = (i / (n_bangs - 1) - 0.5) * 1.5 * hr
        top = hc + [x * 0.6, hr * 0.85, hr * 0.55]
        tip = hc + [x * 1.05, -hr * (0.08 + 0.12 * rng.random()), hr * 1.02]
        path = bezier([top, top + [0, 0, hr * 0.5], tip], 7)
        r = np.linspace(hr * 0.2, hr * 0.015, 7)
        parts.append(_part(tube(path, np.stack([r, r * 0.35], 1), q(8), ref=(1, 0, 0)), hair, ["head"]))
    for s in (1, -1):
        top = hc + [s * hr * 0.9, hr * 0.3, hr * 0.35]
        path = bezier([top, top + [s * hr * 0.25, -hr * 0.6, hr * 0.1], hc + [s * hr * 0.85, -hr * 1.5, hr * 0.3]], 8)
        r = np.linspace(hr * 0.2, hr * 0.03, 8)
        parts.append(_part(tube(path, np.stack([r * 0.5, r], 1), q(8), ref=(1, 0, 0)), hair, ["head"]))
    back = hc + [0, hr * 0.2, -hr * 0.9]
    if spec.hair_style == "long":
        path = bezier([back, back + [0, -hr * 1.5, -hr * 0.4], P["spine"] + [0, 0, -hr * 0.6]], q(12))
        r = np.linspace(1, 0.75, len(path))
        parts.append(_part(tube(path, np.stack([r * hr * 1.05, r * hr * 0.35], 1), q(14)), hair, ["head", "neck", "chest"]))
    elif spec.hair_style == "twintails":
        for s in (1, -1):
            root = hc + [s * hr * 0.85, hr * 0.55, -hr * 0.35]
            parts.append(_part(ellipsoid(root, (hr * 0.18, hr * 0.14, hr * 0.14), q(10)), spec.accent, ["head"]))
            path = bezier([root, root + [s * hr * 0.9, -hr * 0.4, -hr * 0.2], root + [s * hr * 0.9, -hr * 3.2, -hr * 0.4]], q(12))
            r = np.sin(np.linspace(0.25, np.pi * 0.92, len(path))) * hr * 0.42 + hr * 0.03
            parts.append(_part(tube(path, r, q(12)), hair, ["head"]))
    elif spec.hair_style == "ponytail":
        root = hc + [0, hr * 0.6, -hr * 0.95]
        parts.append(_part(ellipsoid(root, (hr * 0.2, hr * 0.15, hr * 0.15), q(10)), spec.accent, ["head"]))
        path = bezier([root, root + [0, hr * 0.3, -hr * 0.9], root + [0, -hr * 3.0, -hr * 0.9]], q(12))
        r = np.sin(np.linspace(0.3, np.pi * 0.93, len(path))) * hr * 0.45 + hr * 0.03
        parts.append(_part(tube(path, r, q(12)), hair, ["head"]))
    elif spec.hair_style == "bun":
        for s in (1, -1):
            parts.append(_part(ellipsoid(hc + [s * hr * 0.7, hr * 0.85, -hr * 0.3], (hr * 0.36,) * 3, q(14)), hair, ["head"]))
    else:  # short: a fuller back
        parts.append(_part(ellipsoid(hc + [0, -hr * 0.3, -hr * 0.35], (hr * 1.05, hr * 0.9, hr * 0.85), q(20)), hair, ["head"]))
    if spec.ahoge:
        base = hc + [0, hr * 1.15, 0]
        path = bezier([base, base + [0, hr * 0.6, hr * 0.1], base + [hr * 0.3, hr * 0.5, hr * 0.45]], 8)
        parts.append(_part(tube(path, np.linspace(hr * 0.07, hr * 0.01, 8), q(6)), hair, ["head"]))
    if spec.hair_style in ("short", "long", "bun"):
        bow = hc + [hr * 0.75, hr * 0.7, hr * 0.2]
        for s in (1, -1):
            parts.append(_part(ellipsoid(bow + [0, s * hr * 0.14, 0], (hr * 0.08, hr * 0.16, hr * 0.08), q(8)), spec.accent, ["head"]))

    # Neck and torso (elliptical cross-section; narrow waist).
    parts.append(_part(tube([P["chest"] + [0, 0.08 * h, 0], P["head"] + [0, 0.03, 0]], [0.035, 0.033], q(10)), skin, ["neck", "head", "chest"]))
    ys = np.array([0.76, 0.84, 0.93, 1.02, 1.1, 1.16, 1.2]) * h
    rx = np.array([0.115, 0.105, 0.085, 0.1, 0.112, 0.1, 0.05])
    rz = np.array([0.08, 0.075, 0.06, 0.075, 0.08, 0.07, 0.04])
    torso = tube(np.stack([np.zeros_like(ys), ys, np.zeros_like(ys)], 1), np.stack([rx, rz], 1), q(18))
    parts.append(_part(torso, spec.top, ["hips", "spine", "chest", "neck"]))
    # Collar ribbon.
    knot = np.array([0, 1.13 * h, 0.075])
    for s in (1, -1):
        parts.append(_part(ellipsoid(knot + [s * 0.03, 0, 0], (0.032, 0.02, 0.012), q(10)), spec.accent, ["chest"]))
        path = bezier([knot, knot + [s * 0.01, -0.04, 0.01], knot + [s * 0.03, -0.08, 0.0]], 5)
        parts.append(_part(tube(path, np.linspace(0.012, 0.016, 5), q(6)), spec.accent, ["chest"]))
    parts.append(_part(ellipsoid(knot + [0, 0, 0.008], (0.012, 0.012, 0.01), q(8)), spec.accent, ["chest"]))

    # Skirt with pleats, or shorts.
    waist = 0.83 * h
    if spec.skirt:
        ys = np.linspace(waist + 0.02, 0.55 * h, 6)
        r = np.linspace(0.11, 0.2, 6)
        path = np.stack([np.zeros(6), ys, np.zeros(6)], 1)
        pleats = lambda t: 1 + 0.06 * np.abs(np.sin(t * 8))  # noqa: E731
        segs = q(28)
        skirt = tube(path, np.stack([r, r * 0.8], 1), segs, caps=False, profile=pleats)
        # A contrasting band along the hem (the last ring of quads).
        band = lambda ring: np.where((ring == 4)[:, None], np.asarray(spec.accent) * 0.9 + 0.1, spec.bottom)  # noqa: E731
        part = _part(skirt, spec.bottom, ["hips", "leftUpperLeg", "rightUpperLeg"], band_colours=band)
        if spec.skirt_pattern != "plain":
            part.uv = tube_uv(len(path), segs, caps=False) * [4, 1]  # the pattern repeats 4 times around
            line = np.asarray(spec.accent) * 0.8 + 0.2
            part.texture = plaid(spec.bottom, line) if spec.skirt_pattern == "plaid" else \
                stripes(spec.bottom, np.asarray(spec.bottom) * 0.7 + 0.3 * line, across=False)
        parts.append(part)
    else:
        for s in ("left", "right"):
            a = P[f"{s}UpperLeg"]
            parts.append(_part(tube([a + [0, 0.06, 0], a - [0, 0.16 * h, 0]], [0.085, 0.075], q(14)), spec.bottom,
                               ["hips", f"{s}UpperLeg"]))
        parts.append(_part(tube([[0, 0.86 * h, 0], [0, 0.74 * h, 0]], [[0.12, 0.085], [0.13, 0.09]], q(16)), spec.bottom,
                           ["hips", "leftUpperLeg", "rightUpperLeg"]))

    # Arms: skin, sleeves, hands.
    for s, sign in (("left", 1), ("right", -1)):
        sh, el, wr = P[f"{s}UpperArm"], P[f"{s}LowerArm"], P[f"{s}Hand"]
        arm_bones = [f"{s}Shoulder", f"{s}UpperArm", f"{s}LowerArm", f"{s}Hand"]
        path = np.concatenate([bezier([sh - [sign * 0.04, 0, 0], el], q(6)), bezier([el, wr], q(6))[1:]])
        r = np.interp(np.linspace(0, 1, len(path)), [0, 0.45, 1], [0.038, 0.03, 0.024])
        parts.append(_part(tube(path, r, q(12)), skin, arm_bones))
        end = wr - [sign * 0.02, 0, 0] if spec.long_sleeves else sh + (el - sh) * 0.55
        sleeve = bezier([sh - [sign * 0.05, 0, 0], end], q(6))
        t = np.linspace(0, 1, len(sleeve))
        rs = (0.05 + 0.012 * t) if not spec.long_sleeves else (0.043 + 0.012 * t ** 3)
        parts.append(_part(tube(sleeve, rs, q(14), caps=False), spec.top, arm_bones))
        cuff = bezier([end - (end - sh) / np.linalg.norm(end - sh) * 0.012, end], 3)
        parts.append(_part(tube(cuff, np.full(3, rs[-1] + 0.004), q(14), caps=False), spec.accent, arm_bones))
        parts.append(_part(ellipsoid(wr + [sign * 0.04, 0, 0.005], (0.045, 0.024, 0.035), q(10)), skin, [f"{s}Hand", f"{s}LowerArm"]))

    # Legs: skin, socks, shoes.
    for s in ("left", "right"):
        hip, knee, ankle = P[f"{s}UpperLeg"], P[f"{s}LowerLeg"], P[f"{s}Foot"]
        leg_bones = ["hips", f"{s}UpperLeg", f"{s}LowerLeg", f"{s}Foot"]
        path = np.concatenate([bezier([hip + [0, 0.03, 0], knee], q(7)), bezier([knee, ankle], q(7))[1:]])
        r = np.interp(np.linspace(0, 1, len(path)), [0, 0.45, 0.75, 1], [0.06, 0.04, 0.038, 0.026])
        parts.append(_part(tube(path, r, q(12)), skin, leg_bones))
        sock_top = knee + [0, 0.09 * h, 0]
        sock = np.concatenate([bezier([sock_top, knee], 3), bezier([knee, ankle - [0, 0.02, 0]], q(6))[1:]])
        rs = np.interp(np.linspace(0, 1, len(sock)), [0, 0.3, 0.7, 1], [0.047, 0.043, 0.04, 0.031])
        part = _part(tube(sock, rs, q(12), caps=False), spec.socks, leg_bones)
        if spec.sock_pattern == "stripes":
            part.uv = tube_uv(len(sock), q(12), caps=False) * [1, 3]
            part.texture = stripes(spec.socks, np.asarray(spec.accent) * 0.85 + 0.15)
        parts.append(part)
        toe = P[f"{s}Toes"]
        parts.append(_part(ellipsoid((ankle + toe) / 2 + [0, -0.005, 0.01], (0.042, 0.04, 0.09), q(12)), spec.shoes,
                           [f"{s}Foot", f"{s}Toes"]))

    return _assemble(parts, P, skel)


def _assemble(parts: list[Part], pos: dict[str, np.ndarray], skel: Skeleton) -> SkinnedMesh:
    verts, faces, cols, unlit, joints, weights = [], [], [], [], [], []
    uvs, face_tex, textures = [], [], []
    base = 0
    for part in parts:
        idx, w = _weights(part, pos)
        verts.append(part.vertices)
        faces.append(part.faces + base)
        cols.append(part.colours)
        unlit.append(np.full(len(part.faces), part.unlit))
        joints.append(idx)
        weights.append(w)
        uvs.append(part.uv if part.uv is not None else np.zeros((len(part.vertices), 2)))
        if part.texture is not None:
            face_tex.append(np.full(len(part.faces), len(textures)))
            textures.append(torch.tensor(part.texture))
        else:
            face_tex.append(np.full(len(part.faces), -1))
        base += len(part.vertices)
    return SkinnedMesh(
        vertices=torch.tensor(np.concatenate(verts), dtype=torch.float32),
        faces=torch.tensor(np.concatenate(faces), dtype=torch.int64),
        joints=torch.tensor(np.concatenate(joints), dtype=torch.int64),
        weights=torch.tensor(np.concatenate(weights), dtype=torch.float32),
        skeleton=skel,
        face_colors=torch.tensor(np.concatenate(cols), dtype=torch.float32),
        face_unlit=torch.tensor(np.concatenate(unlit)),
        outward_winding=True,
        uv=torch.tensor(np.concatenate(uvs), dtype=torch.float32),
        textures=textures,
        face_texture=torch.tensor(np.concatenate(face_tex), dtype=torch.int64),
        face_tint=torch.ones(sum(len(f) for f in faces), 3),
    )


def character(seed: int, detail: float = 1.0) -> tuple[CharacterSpec, SkinnedMesh]:
    spec = random_spec(seed, detail)
    return spec, build_character(spec)
