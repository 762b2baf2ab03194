"""Procedural anime-like characters: a humanoid skeleton dressed in skinned primitives.

A seed picks the proportions (chibi to tall, slim to broad), the palette, the hair (short, bob,
long, voluminous, twin tails, ponytail, buns; bangs, ahoge, bows), the face (eye style, mouth,
blush, glasses), the clothes (sleeves, skirt, long dress, shorts or trousers, an open coat, ribbon,
tie or collar, socks, shoes or boots, hats) and their textures (plaid, stripes, dots, gradients). Rest pose: T-pose, Y up, facing +Z,
the character's left on +X; about 1.5 units tall. Bone names follow the VRM humanoid names.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from conr.engine.geometry import (Part, bezier, dots, ellipsoid, gradient, plaid, segment_distance, stripes, tube,
                                  tube_uv)
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
    height: float  # body height factor (legs and torso)
    head: float  # head size factor; above ~1.3 the figure reads as chibi
    breadth: float  # torso and limb thickness factor
    hair_style: str  # short, bob, long, volume, twintails, ponytail, bun
    bangs: str  # straight, parted, side
    ahoge: bool
    hair: tuple
    eyes: tuple
    eye_style: str  # round, tall, narrow, closed
    mouth: str  # small, open, smile
    blush: bool
    skin: tuple
    top: tuple
    bottom: tuple
    accent: tuple
    top_pattern: str  # plain, stripes, dots
    sleeves: str  # none, short, long, puffy
    outfit: str  # skirt, dress (long and flared), shorts, trousers
    skirt_length: float  # hem height as a share of the body height (skirt)
    skirt_pattern: str  # plain, plaid, stripes, dots, gradient
    coat: bool  # an open long coat over the outfit
    coat_colour: tuple
    neckwear: str  # ribbon, tie, collar, none
    legwear: str  # knee, thigh, none
    socks: tuple
    sock_pattern: str  # plain, stripes
    footwear: str  # shoes, boots
    shoes: tuple
    hat: str  # none, beret, witch, cap
    glasses: bool
    hair_bow: bool
    detail: float

    def to_dict(self) -> dict:
        return asdict(self)


def _hsv(h: float, s: float, v: float) -> tuple:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _colour(rng: np.random.Generator, palette: list[tuple], p_free: float = 0.5) -> tuple:
    """A palette colour nudged in hue and value, or (with p_free) any hue at a drawn saturation and value."""
    if rng.random() < p_free:
        return _hsv(rng.random(), rng.uniform(0.15, 0.85), rng.uniform(0.25, 0.98))
    h, s_, v = colorsys.rgb_to_hsv(*palette[rng.integers(len(palette))])
    return _hsv(h + rng.normal(0, 0.03), s_ * rng.uniform(0.8, 1.15), v * rng.uniform(0.88, 1.08))


def _choose(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    w = np.array([options[n] for n in names], float)
    return str(names[rng.choice(len(names), p=w / w.sum())])


def random_spec(seed: int, detail: float = 1.0) -> CharacterSpec:
    rng = np.random.default_rng(seed)
    chibi = rng.random() < 0.15
    outfit = _choose(rng, {"skirt": 0.45, "dress": 0.2, "shorts": 0.15, "trousers": 0.2})
    return CharacterSpec(
        seed=seed,
        height=float(rng.uniform(0.82, 0.92) if chibi else rng.uniform(0.9, 1.12)),
        head=float(rng.uniform(1.3, 1.6) if chibi else rng.uniform(0.92, 1.18)),
        breadth=float(rng.uniform(0.85, 1.2)),
        hair_style=_choose(rng, {"short": 1, "bob": 1, "long": 1.2, "volume": 0.8, "twintails": 1, "ponytail": 1,
                                 "bun": 0.6}),
        bangs=_choose(rng, {"straight": 1, "parted": 1, "side": 1}),
        ahoge=bool(rng.random() < 0.4),
        hair=_colour(rng, HAIR, 0.35), eyes=_colour(rng, EYES, 0.4),
        eye_style=_choose(rng, {"round": 1, "tall": 1, "narrow": 0.7, "closed": 0.25}),
        mouth=_choose(rng, {"small": 1, "open": 0.5, "smile": 0.6}),
        blush=bool(rng.random() < 0.6),
        skin=tuple(float(c) for c in SKIN[rng.integers(len(SKIN))]),
        top=_colour(rng, TOPS), bottom=_colour(rng, BOTTOMS), accent=_colour(rng, ACCENTS, 0.3),
        top_pattern=_choose(rng, {"plain": 3, "stripes": 1, "dots": 0.7}),
        sleeves=_choose(rng, {"none": 0.5, "short": 1, "long": 1.2, "puffy": 0.6}),
        outfit=outfit,
        skirt_length=float(rng.uniform(0.48, 0.62)),
        skirt_pattern=_choose(rng, {"plain": 2, "plaid": 1, "stripes": 0.7, "dots": 0.6, "gradient": 0.6}),
        coat=bool(rng.random() < 0.2), coat_colour=_colour(rng, BOTTOMS + TOPS),
        neckwear=_choose(rng, {"ribbon": 1.2, "tie": 0.6, "collar": 0.6, "none": 0.6}),
        legwear=_choose(rng, {"knee": 1.2, "thigh": 0.8, "none": 0.8}),
        socks=_colour(rng, [(0.97, 0.97, 0.98), (0.12, 0.12, 0.15), (0.2, 0.22, 0.4)], 0.25),
        sock_pattern=_choose(rng, {"plain": 2, "stripes": 1}),
        footwear=_choose(rng, {"shoes": 2, "boots": 1}),
        shoes=_colour(rng, [(0.3, 0.18, 0.12), (0.1, 0.1, 0.12), (0.85, 0.3, 0.35)], 0.3),
        hat=_choose(rng, {"none": 6, "beret": 1, "witch": 0.6, "cap": 0.8}),
        glasses=bool(rng.random() < 0.12),
        hair_bow=bool(rng.random() < 0.5),
        detail=detail,
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
    hr = 0.125 * spec.head  # head radius
    hc = P["head"] + [0, hr * 0.95, 0.005]  # head centre
    parts: list[Part] = []
    parts += _face(spec, hc, hr, q)
    parts += _hair(spec, hc, hr, q, rng, P)
    parts += _headwear(spec, hc, hr, q)
    parts += _torso(spec, P, q)
    parts += _bottom(spec, P, q)
    parts += _arms(spec, P, q)
    parts += _legs(spec, P, q)
    return _assemble(parts, P, skel)


def _face(spec: CharacterSpec, hc: np.ndarray, hr: float, q) -> list[Part]:
    parts = [_part(ellipsoid(hc, (hr * 0.98, hr * 1.0, hr * 0.95), q(28)), spec.skin, ["head"]),
             _part(ellipsoid(hc + [0, -hr * 0.45, hr * 0.22], (hr * 0.62, hr * 0.55, hr * 0.7), q(20)), spec.skin, ["head"])]
    ew, eh = {"round": (0.2, 0.27), "tall": (0.17, 0.32), "narrow": (0.24, 0.18), "closed": (0.2, 0.2)}[spec.eye_style]
    ink = (0.15, 0.1, 0.12)
    for s in (1, -1):
        eye_c = hc + [s * hr * 0.36, -hr * 0.22, hr * 0.86]
        if spec.eye_style == "closed":  # a smiling arc instead of an open eye
            arc = bezier([eye_c + [s * hr * 0.2, -hr * 0.02, 0], eye_c + [0, hr * 0.12, hr * 0.1],
                          eye_c + [-s * hr * 0.2, -hr * 0.02, 0]], 8)
            parts.append(_part(tube(arc, np.full(8, hr * 0.035), q(6)), ink, ["head"], True))
        else:
            parts.append(_part(ellipsoid(eye_c, (hr * ew, hr * eh, hr * 0.08), q(14)), (0.98, 0.98, 1.0), ["head"], True))
            parts.append(_part(ellipsoid(eye_c + [-s * hr * 0.02, -hr * 0.03, hr * 0.04], (hr * ew * 0.75, hr * eh * 0.8, hr * 0.07),
                                         q(14)), spec.eyes, ["head"], True))
            parts.append(_part(ellipsoid(eye_c + [-s * hr * 0.02, -hr * 0.05, hr * 0.07], (hr * ew * 0.4, hr * eh * 0.45, hr * 0.06),
                                         q(10)), tuple(c * 0.35 for c in spec.eyes), ["head"], True))
            parts.append(_part(ellipsoid(eye_c + [s * hr * 0.05, hr * 0.06, hr * 0.11], (hr * 0.05, hr * 0.06, hr * 0.03), q(8)),
                               (1.0, 1.0, 1.0), ["head"], True))
            lash = bezier([eye_c + [s * hr * (ew + 0.04), hr * (eh - 0.13), -hr * 0.02], eye_c + [0, hr * (eh + 0.07), hr * 0.09],
                           eye_c + [-s * hr * (ew + 0.02), hr * (eh - 0.05), hr * 0.02]], 8)
            parts.append(_part(tube(lash, np.full(8, hr * 0.035), q(6)), ink, ["head"], True))
        if spec.blush:
            parts.append(_part(ellipsoid(eye_c + [s * hr * 0.12, -hr * 0.33, -hr * 0.06], (hr * 0.15, hr * 0.06, hr * 0.05), q(10)),
                               (1.0, 0.68, 0.7), ["head"], True))
    mouth = hc + [0, -hr * 0.62, hr * 0.82]
    if spec.mouth == "smile":
        arc = bezier([mouth + [hr * 0.12, hr * 0.03, -hr * 0.02], mouth + [0, -hr * 0.06, hr * 0.03],
                      mouth + [-hr * 0.12, hr * 0.03, -hr * 0.02]], 7)
        parts.append(_part(tube(arc, np.full(7, hr * 0.022), q(6)), (0.55, 0.2, 0.22), ["head"], True))
    else:
        r = (hr * 0.09, hr * 0.035, hr * 0.03) if spec.mouth == "small" else (hr * 0.1, hr * 0.08, hr * 0.04)
        parts.append(_part(ellipsoid(mouth, r, q(8)), (0.75, 0.3, 0.32), ["head"], True))
    if spec.glasses:
        frame = (0.12, 0.1, 0.14)
        for s in (1, -1):
            c = hc + [s * hr * 0.36, -hr * 0.22, hr * 1.0]
            t = np.linspace(0, 2 * np.pi, 17)
            ring = c + np.stack([np.cos(t) * hr * 0.27, np.sin(t) * hr * 0.23, np.zeros_like(t)], 1)
            parts.append(_part(tube(ring, np.full(17, hr * 0.025), q(6), ref=(0, 0, 1), caps=False), frame, ["head"], True))
        bridge = [hc + [hr * 0.1, -hr * 0.2, hr * 1.0], hc + [-hr * 0.1, -hr * 0.2, hr * 1.0]]
        parts.append(_part(tube(bridge, [hr * 0.025] * 2, q(6)), frame, ["head"], True))
    return parts


def _hair(spec: CharacterSpec, hc: np.ndarray, hr: float, q, rng: np.random.Generator, P: dict) -> list[Part]:
    hair = spec.hair
    parts = []
    cap_v, cap_f = ellipsoid(hc + [0, hr * 0.08, -hr * 0.05], (hr * 1.12, hr * 1.1, hr * 1.1), q(32))
    centre = cap_v[cap_f].mean(1) - hc
    # An oval opening for the face; the cap still covers the temples and the sides of the head.
    face_open = (centre[:, 2] > 0) & ((centre[:, 0] / (hr * 0.78)) ** 2 + ((centre[:, 1] + hr * 0.35) / (hr * 0.85)) ** 2 < 1)
    parts.append(Part(cap_v, cap_f, np.tile(hair, (len(cap_f), 1)), ["head"]).keep_faces(~face_open))
    n_bangs = 7
    for i in range(n_bangs):
        u = i / (n_bangs - 1) - 0.5
        if spec.bangs == "parted" and abs(u) < 0.1:
            continue
        x = u * 1.5 * hr
        top = hc + [x * 0.6, hr * 0.85, hr * 0.55]
        lean = {"straight": 1.05, "parted": 1.35, "side": 1.05}[spec.bangs]
        shift = hr * 0.35 if spec.bangs == "side" else 0.0
        drop = hr * (0.08 + 0.12 * rng.random()) * (0.6 if spec.bangs == "parted" and abs(u) < 0.3 else 1.0)
        tip = hc + [x * lean + shift, -drop, hr * 1.02]
        path = bezier([top, top + [0, 0, hr * 0.5], tip], 7)
        r = np.linspace(hr * 0.2, hr * 0.015, 7)
        parts.append(_part(tube(path, np.stack([r, r * 0.35], 1), q(8), ref=(1, 0, 0)), hair, ["head"]))
    lock_len = 2.2 if spec.hair_style in ("bob", "volume") else 1.5
    for s in (1, -1):
        top = hc + [s * hr * 0.9, hr * 0.3, hr * 0.35]
        path = bezier([top, top + [s * hr * 0.25, -hr * 0.6, hr * 0.1], hc + [s * hr * 0.85, -hr * lock_len, hr * 0.3]], 8)
        r = np.linspace(hr * 0.2, hr * 0.03, 8)
        parts.append(_part(tube(path, np.stack([r * 0.5, r], 1), q(8), ref=(1, 0, 0)), hair, ["head"]))
    back = hc + [0, hr * 0.2, -hr * 0.9]
    style = spec.hair_style
    if style in ("long", "volume"):
        wide = 1.05 if style == "long" else 1.55  # volume: hair that hides the neck and the shoulders
        end = P["spine"] + [0, 0, -hr * 0.6] if style == "long" else P["hips"] + [0, 0.02, -hr * 0.7]
        path = bezier([back, back + [0, -hr * 1.5, -hr * 0.4], end], q(12))
        r = np.linspace(1, 0.75, len(path))
        parts.append(_part(tube(path, np.stack([r * hr * wide, r * hr * (0.35 if style == "long" else 0.55)], 1), q(14)),
                           hair, ["head", "neck", "chest", "spine"]))
    elif style == "bob":
        parts.append(_part(ellipsoid(hc + [0, -hr * 0.35, -hr * 0.2], (hr * 1.2, hr * 0.85, hr * 1.0), q(20)), hair, ["head"]))
    elif style == "twintails":
        for s in (1, -1):
            root = hc + [s * hr * 0.85, hr * 0.55, -hr * 0.35]
            parts.append(_part(ellipsoid(root, (hr * 0.18, hr * 0.14, hr * 0.14), q(10)), spec.accent, ["head"]))
            path = bezier([root, root + [s * hr * 0.9, -hr * 0.4, -hr * 0.2], root + [s * hr * 0.9, -hr * 3.2, -hr * 0.4]], q(12))
            r = np.sin(np.linspace(0.25, np.pi * 0.92, len(path))) * hr * 0.42 + hr * 0.03
            parts.append(_part(tube(path, r, q(12)), hair, ["head"]))
    elif style == "ponytail":
        root = hc + [0, hr * 0.6, -hr * 0.95]
        parts.append(_part(ellipsoid(root, (hr * 0.2, hr * 0.15, hr * 0.15), q(10)), spec.accent, ["head"]))
        path = bezier([root, root + [0, hr * 0.3, -hr * 0.9], root + [0, -hr * 3.0, -hr * 0.9]], q(12))
        r = np.sin(np.linspace(0.3, np.pi * 0.93, len(path))) * hr * 0.45 + hr * 0.03
        parts.append(_part(tube(path, r, q(12)), hair, ["head"]))
    elif style == "bun":
        for s in (1, -1):
            parts.append(_part(ellipsoid(hc + [s * hr * 0.7, hr * 0.85, -hr * 0.3], (hr * 0.36,) * 3, q(14)), hair, ["head"]))
    else:  # short: a fuller back
        parts.append(_part(ellipsoid(hc + [0, -hr * 0.3, -hr * 0.35], (hr * 1.05, hr * 0.9, hr * 0.85), q(20)), hair, ["head"]))
    if spec.ahoge:
        base = hc + [0, hr * 1.15, 0]
        path = bezier([base, base + [0, hr * 0.6, hr * 0.1], base + [hr * 0.3, hr * 0.5, hr * 0.45]], 8)
        parts.append(_part(tube(path, np.linspace(hr * 0.07, hr * 0.01, 8), q(6)), hair, ["head"]))
    if spec.hair_bow and style not in ("twintails", "ponytail"):
        bow = hc + [hr * 0.75, hr * 0.7, hr * 0.2]
        for s in (1, -1):
            parts.append(_part(ellipsoid(bow + [0, s * hr * 0.14, 0], (hr * 0.08, hr * 0.16, hr * 0.08), q(8)), spec.accent, ["head"]))
    return parts


def _headwear(spec: CharacterSpec, hc: np.ndarray, hr: float, q) -> list[Part]:
    if spec.hat == "none":
        return []
    col, band = spec.coat_colour, spec.accent
    top = hc + [0, hr * 0.95, -hr * 0.05]
    if spec.hat == "beret":
        return [_part(ellipsoid(top + [hr * 0.15, -hr * 0.05, 0], (hr * 1.2, hr * 0.35, hr * 1.15), q(20)), col, ["head"])]
    if spec.hat == "cap":
        return [_part(ellipsoid(top + [0, -hr * 0.15, 0], (hr * 1.1, hr * 0.55, hr * 1.12), q(20)), col, ["head"]),
                _part(ellipsoid(top + [0, -hr * 0.4, hr * 0.95], (hr * 0.75, hr * 0.06, hr * 0.5), q(14)), band, ["head"])]
    # witch: a wide brim and a cone that bends back at its tip
    path = bezier([top - [0, hr * 0.1, 0], top + [0, hr * 1.3, -hr * 0.2], top + [0, hr * 1.9, -hr * 0.9]], q(10))
    r = np.linspace(hr * 0.95, hr * 0.04, len(path))
    return [_part(ellipsoid(top + [0, -hr * 0.2, 0], (hr * 2.0, hr * 0.08, hr * 2.0), q(24)), col, ["head"]),
            _part(tube(path, r, q(14)), col, ["head"]),
            _part(tube([top, top + [0, hr * 0.22, 0]], [hr * 0.97, hr * 0.93], q(14), caps=False), band, ["head"])]


def _pattern(kind: str, base, line, period: int = 8) -> np.ndarray | None:
    line = np.asarray(line, float) * 0.8 + 0.2
    if kind == "plaid":
        return plaid(base, line)
    if kind == "stripes":
        return stripes(base, np.asarray(base) * 0.7 + 0.3 * line, across=False)
    if kind == "dots":
        return dots(base, line, period=period)
    if kind == "gradient":
        return gradient(base, np.asarray(base) * 0.55 + 0.45 * line)
    return None


def _torso(spec: CharacterSpec, P: dict, q) -> list[Part]:
    h, b = spec.height, spec.breadth
    parts = [_part(tube([P["chest"] + [0, 0.08 * h, 0], P["head"] + [0, 0.03, 0]], [0.035 * b, 0.033 * b], q(10)), spec.skin,
                   ["neck", "head", "chest"])]
    ys = np.array([0.76, 0.84, 0.93, 1.02, 1.1, 1.16, 1.2]) * h
    rx = np.array([0.115, 0.105, 0.085, 0.1, 0.112, 0.1, 0.05]) * b
    rz = np.array([0.08, 0.075, 0.06, 0.075, 0.08, 0.07, 0.04]) * b
    segs = q(18)
    torso = tube(np.stack([np.zeros_like(ys), ys, np.zeros_like(ys)], 1), np.stack([rx, rz], 1), segs)
    part = _part(torso, spec.top, ["hips", "spine", "chest", "neck"])
    tex = _pattern(spec.top_pattern, spec.top, spec.accent, period=6)
    if tex is not None:
        part.uv = tube_uv(len(ys), segs) * [4, 2]
        part.texture = tex
    parts.append(part)
    knot = np.array([0, 1.13 * h, 0.075 * b])
    if spec.neckwear == "ribbon":
        for s in (1, -1):
            parts.append(_part(ellipsoid(knot + [s * 0.03, 0, 0], (0.032, 0.02, 0.012), q(10)), spec.accent, ["chest"]))
            path = bezier([knot, knot + [s * 0.01, -0.04, 0.01], knot + [s * 0.03, -0.08, 0.0]], 5)
            parts.append(_part(tube(path, np.linspace(0.012, 0.016, 5), q(6)), spec.accent, ["chest"]))
        parts.append(_part(ellipsoid(knot + [0, 0, 0.008], (0.012, 0.012, 0.01), q(8)), spec.accent, ["chest"]))
    elif spec.neckwear == "tie":
        path = bezier([knot, knot + [0, -0.08 * h, 0.012], knot + [0, -0.17 * h, 0.005]], 6)
        parts.append(_part(tube(path, np.stack([np.linspace(0.012, 0.026, 6), np.full(6, 0.006)], 1), q(8)), spec.accent,
                           ["chest", "spine"]))
    elif spec.neckwear == "collar":
        ring = tube([[0, 1.15 * h, 0], [0, 1.19 * h, 0]], [[0.075 * b, 0.065 * b], [0.06 * b, 0.05 * b]], q(16), caps=False)
        parts.append(_part(ring, (0.97, 0.97, 0.98), ["chest", "neck"]))
        parts.append(_part(ellipsoid(knot + [0, 0.01, 0.004], (0.016, 0.016, 0.012), q(8)), spec.accent, ["chest"]))
    if spec.coat:  # open at the front: the outfit shows between its sides
        cy = np.array([1.17, 1.05, 0.9, 0.75, 0.6, 0.45]) * h
        crx = np.array([0.1, 0.118, 0.1, 0.14, 0.19, 0.23]) * b
        crz = np.array([0.075, 0.088, 0.075, 0.105, 0.15, 0.19]) * b
        segs = q(20)
        v, f, ring = tube(np.stack([np.zeros(6), cy, np.zeros(6)], 1), np.stack([crx, crz], 1), segs, caps=False)
        centre = v[f].mean(1)
        front = (centre[:, 2] > 0) & (np.abs(centre[:, 0]) < 0.35 * np.abs(centre[:, 2]) + 0.01)
        coat = Part(v, f, np.tile(spec.coat_colour, (len(f), 1)), ["chest", "spine", "hips", "leftUpperLeg", "rightUpperLeg"])
        parts.append(coat.keep_faces(~front))
    return parts


def _bottom(spec: CharacterSpec, P: dict, q) -> list[Part]:
    h, b = spec.height, spec.breadth
    waist = 0.83 * h
    parts = []
    if spec.outfit in ("skirt", "dress"):
        hem = spec.skirt_length * h if spec.outfit == "skirt" else 0.12 * h
        flare = 0.2 if spec.outfit == "skirt" else 0.3
        ys = np.linspace(waist + 0.02, hem, 6 if spec.outfit == "skirt" else 8)
        n = len(ys)
        r = np.linspace(0.11, flare, n) * b ** 0.5
        path = np.stack([np.zeros(n), ys, np.zeros(n)], 1)
        pleats = lambda t: 1 + 0.06 * np.abs(np.sin(t * 8))  # noqa: E731
        segs = q(28)
        skirt = tube(path, np.stack([r, r * 0.8], 1), segs, caps=False, profile=pleats)
        # A contrasting band along the hem (the last ring of quads).
        band = lambda ring: np.where((ring == n - 2)[:, None], np.asarray(spec.accent) * 0.9 + 0.1, spec.bottom)  # noqa: E731
        bones = ["hips", "leftUpperLeg", "rightUpperLeg"]
        part = _part(skirt, spec.bottom, bones, band_colours=band)
        tex = _pattern(spec.skirt_pattern, spec.bottom, spec.accent)
        if tex is not None:
            part.uv = tube_uv(n, segs, caps=False) * [4, 1]  # the pattern repeats 4 times around
            part.texture = tex
        parts.append(part)
    else:
        long = spec.outfit == "trousers"
        for s in ("left", "right"):
            a, knee, ankle = P[f"{s}UpperLeg"], P[f"{s}LowerLeg"], P[f"{s}Foot"]
            bones = ["hips", f"{s}UpperLeg"] + ([f"{s}LowerLeg", f"{s}Foot"] if long else [])
            if long:
                path = np.concatenate([bezier([a + [0, 0.06, 0], knee], q(6)), bezier([knee, ankle + [0, 0.03, 0]], q(6))[1:]])
                r = np.interp(np.linspace(0, 1, len(path)), [0, 0.45, 1], [0.085, 0.055, 0.05]) * b
            else:
                path, r = np.array([a + [0, 0.06, 0], a - [0, 0.16 * h, 0]]), np.array([0.085, 0.075]) * b
            parts.append(_part(tube(path, r, q(14)), spec.bottom, bones))
        parts.append(_part(tube([[0, 0.86 * h, 0], [0, 0.74 * h, 0]], np.array([[0.12, 0.085], [0.13, 0.09]]) * b, q(16)),
                           spec.bottom, ["hips", "leftUpperLeg", "rightUpperLeg"]))
    return parts


def _arms(spec: CharacterSpec, P: dict, q) -> list[Part]:
    b = spec.breadth ** 0.5
    parts = []
    for s, sign in (("left", 1), ("right", -1)):
        sh, el, wr = P[f"{s}UpperArm"], P[f"{s}LowerArm"], P[f"{s}Hand"]
        arm_bones = [f"{s}Shoulder", f"{s}UpperArm", f"{s}LowerArm", f"{s}Hand"]
        path = np.concatenate([bezier([sh - [sign * 0.04, 0, 0], el], q(6)), bezier([el, wr], q(6))[1:]])
        r = np.interp(np.linspace(0, 1, len(path)), [0, 0.45, 1], [0.038, 0.03, 0.024]) * b
        parts.append(_part(tube(path, r, q(12)), spec.skin, arm_bones))
        parts.append(_part(ellipsoid(wr + [sign * 0.04, 0, 0.005], (0.045, 0.024, 0.035), q(10)), spec.skin,
                           [f"{s}Hand", f"{s}LowerArm"]))
        if spec.sleeves == "none":
            continue
        if spec.sleeves == "puffy":
            parts.append(_part(ellipsoid(sh + (el - sh) * 0.2, (0.075 * b, 0.062 * b, 0.065 * b), q(14)), spec.top, arm_bones))
            continue
        long = spec.sleeves == "long"
        end = wr - [sign * 0.02, 0, 0] if long else sh + (el - sh) * 0.55
        sleeve = bezier([sh - [sign * 0.05, 0, 0], end], q(6))
        t = np.linspace(0, 1, len(sleeve))
        rs = ((0.043 + 0.012 * t ** 3) if long else (0.05 + 0.012 * t)) * b
        parts.append(_part(tube(sleeve, rs, q(14), caps=False), spec.coat_colour if spec.coat else spec.top, arm_bones))
        cuff = bezier([end - (end - sh) / np.linalg.norm(end - sh) * 0.012, end], 3)
        parts.append(_part(tube(cuff, np.full(3, rs[-1] + 0.004), q(14), caps=False), spec.accent, arm_bones))
    return parts


def _legs(spec: CharacterSpec, P: dict, q) -> list[Part]:
    h, b = spec.height, spec.breadth ** 0.5
    parts = []
    for s in ("left", "right"):
        hip, knee, ankle = P[f"{s}UpperLeg"], P[f"{s}LowerLeg"], P[f"{s}Foot"]
        leg_bones = ["hips", f"{s}UpperLeg", f"{s}LowerLeg", f"{s}Foot"]
        path = np.concatenate([bezier([hip + [0, 0.03, 0], knee], q(7)), bezier([knee, ankle], q(7))[1:]])
        r = np.interp(np.linspace(0, 1, len(path)), [0, 0.45, 0.75, 1], [0.06, 0.04, 0.038, 0.026]) * b
        parts.append(_part(tube(path, r, q(12)), spec.skin, leg_bones))
        if spec.legwear != "none" and spec.outfit != "trousers":
            thigh = spec.legwear == "thigh"
            sock_top = hip + (knee - hip) * 0.4 if thigh else knee + [0, 0.09 * h, 0]
            sock = np.concatenate([bezier([sock_top, knee], 4 if thigh else 3), bezier([knee, ankle - [0, 0.02, 0]], q(6))[1:]])
            rs = np.interp(np.linspace(0, 1, len(sock)), [0, 0.3, 0.7, 1],
                           [0.053 if thigh else 0.047, 0.043, 0.04, 0.031]) * b
            part = _part(tube(sock, rs, q(12), caps=False), spec.socks, leg_bones)
            if spec.sock_pattern == "stripes":
                part.uv = tube_uv(len(sock), q(12), caps=False) * [1, 3]
                part.texture = stripes(spec.socks, np.asarray(spec.accent) * 0.85 + 0.15)
            parts.append(part)
        toe = P[f"{s}Toes"]
        if spec.footwear == "boots":
            shaft = bezier([knee - (knee - ankle) * 0.3, ankle - [0, 0.01, 0]], q(5))
            parts.append(_part(tube(shaft, np.linspace(0.045, 0.036, len(shaft)) * b, q(12)), spec.shoes, leg_bones))
        parts.append(_part(ellipsoid((ankle + toe) / 2 + [0, -0.005, 0.01], (0.042, 0.04, 0.09), q(12)), spec.shoes,
                           [f"{s}Foot", f"{s}Toes"]))
    return parts


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
