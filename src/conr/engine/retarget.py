"""Matching bone names to the canonical humanoid (by name, or by a user's bone map), and retargeting
motion between skeletons.

Retargeting transfers, for every canonical bone both skeletons have, the change of its global
rotation from the source rest pose; a per-bone rest alignment makes a T-pose source drive an
A-pose target; both are turned to face the same way first. Hip motion scales by hip height.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from conr.engine.procedural import HUMANOID_BONES
from conr.engine.skeleton import Skeleton
from conr.engine.transforms import axis_angle_to_matrix, rotation_between
from conr.errors import ConrError

# Name stems (after removing side markers, separators and case) for each canonical bone, best first.
_CENTRE = {
    "hips": ["hips", "hip", "pelvis", "center", "centre"],
    "spine": ["spine", "spine0", "spine01", "abdomen", "lowerback", "spinelower", "torso"],
    "chest": ["chest", "spine2", "spine1", "spine02", "upperchest", "spine3", "chest1", "spineupper", "thorax"],
    "neck": ["neck", "neck1", "neck01"],
    "head": ["head"],
}
_SIDED = {
    "Shoulder": ["shoulder", "collar", "clavicle"],
    "UpperArm": ["upperarm", "arm", "uparm", "shldr", "humerus"],
    "LowerArm": ["forearm", "lowerarm", "lowarm", "elbow", "radius"],
    "Hand": ["hand", "wrist"],
    "UpperLeg": ["upperleg", "upleg", "thigh", "femur", "hip"],
    "LowerLeg": ["lowerleg", "leg", "lowleg", "shin", "knee", "calf", "tibia"],
    "Foot": ["foot", "ankle"],
    "Toes": ["toes", "toe", "toebase", "ball"],
}
# Each canonical bone's child, for rest-pose bone directions.
_CHILD = {"hips": "spine", "spine": "chest", "chest": "neck", "neck": "head"}
for _s in ("left", "right"):
    _CHILD.update({f"{_s}Shoulder": f"{_s}UpperArm", f"{_s}UpperArm": f"{_s}LowerArm", f"{_s}LowerArm": f"{_s}Hand",
                   f"{_s}UpperLeg": f"{_s}LowerLeg", f"{_s}LowerLeg": f"{_s}Foot", f"{_s}Foot": f"{_s}Toes"})


def split_name(raw: str) -> tuple[str | None, str]:
    """('left' | 'right' | None, stem) for a bone name such as 'mixamorig:LeftUpLeg' or 'J_Bip_L_UpperArm'."""
    s = re.split(r"[:|]", raw)[-1]
    s = re.sub(r"^(J_Bip_|J_Adj_|ValveBiped\.Bip01_|Bip01[ _]|Bip001[ _])", "", s, flags=re.I)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", s)  # camelCase -> words
    tokens = [t for t in re.split(r"[^a-z0-9]+", s.lower()) if t]
    side = None
    for i in (0, -1):
        if tokens and tokens[i] in ("left", "l", "right", "r"):
            side = "left" if tokens[i] in ("left", "l") else "right"
            tokens.pop(i)
            break
    if side is None and tokens:
        for prefix in ("left", "right"):
            if tokens[0].startswith(prefix) and len(tokens[0]) > len(prefix):
                side, tokens[0] = prefix, tokens[0][len(prefix):]
                break
    if tokens and tokens[0] == "c":  # VRoid centre marker
        tokens.pop(0)
    return side, "".join(tokens)


def match_humanoid(names: list[str]) -> dict[str, int]:
    """Canonical bone -> index into `names`, by common naming schemes; unmatched bones are absent."""
    parsed = [split_name(n) for n in names]
    out: dict[str, int] = {}
    for bone, stems in _CENTRE.items():
        for stem in stems:
            hit = [i for i, (side, st) in enumerate(parsed) if side is None and st == stem and i not in out.values()]
            if hit:
                out[bone] = hit[0]
                break
    for side in ("left", "right"):
        for part, stems in _SIDED.items():
            for stem in stems:
                hit = [i for i, (sd, st) in enumerate(parsed) if sd == side and st == stem and i not in out.values()]
                if hit:
                    out[side + part] = hit[0]
                    break
    return out


BONE_MAP_EXAMPLE = '{"hips": "pelvis", "spine": "spine_01"}'
BONE_MAP_HINT = (f"give --bone-map FILE, a JSON object from our bone names to this file's, e.g. {BONE_MAP_EXAMPLE} "
                 "(see docs/engine.md)")


def bone_list(names: Sequence[str], limit: int = 40) -> str:
    """The first `limit` names, comma-separated, then 'and N more'."""
    shown = ", ".join(names[:limit]) or "(none)"
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def read_bone_map(path: str | Path) -> dict[str, str]:
    """A --bone-map file: a JSON object from our humanoid bone names (HUMANOID_BONES) to a skeleton's own."""
    path = Path(path)
    if not path.is_file():
        raise ConrError("bone map file not found", path=path, hint=f"give a JSON file such as {BONE_MAP_EXAMPLE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConrError("the bone map is not a text (UTF-8 JSON) file", path=path,
                        hint=f"write a JSON object such as {BONE_MAP_EXAMPLE}") from None
    except json.JSONDecodeError as e:
        raise ConrError(f"the bone map is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", path=path,
                        hint=f"write a JSON object such as {BONE_MAP_EXAMPLE}") from None
    return check_bone_map(data, path)


def check_bone_map(data: object, path: str | Path | None = None) -> dict[str, str]:
    """`data` as a bone map, or a ConrError naming what is wrong with it."""
    if not isinstance(data, dict):
        raise ConrError(f"the bone map must be a JSON object from our bone names to the model's, not a "
                        f"{type(data).__name__}", path=path, hint=f"write e.g. {BONE_MAP_EXAMPLE}")
    for ours, theirs in data.items():
        if ours not in HUMANOID_BONES:
            close = difflib.get_close_matches(ours, HUMANOID_BONES, 1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            raise ConrError(f"{ours!r} is not one of our humanoid bones", path=path,
                            hint=f"{guess}keys must be among: {', '.join(HUMANOID_BONES)}")
        if not isinstance(theirs, str) or not theirs:
            raise ConrError(f"the value for {ours!r} must be a bone name (a non-empty string), not {theirs!r}",
                            path=path, hint=f"write e.g. {BONE_MAP_EXAMPLE}")
    seen: dict[str, str] = {}
    for ours, theirs in data.items():
        if theirs in seen:
            raise ConrError(f"{seen[theirs]!r} and {ours!r} both map to bone {theirs!r}", path=path,
                            hint="map each of the model's bones to at most one of ours; leave one out")
        seen[theirs] = ours
    return dict(data)


def apply_bone_map(names: Sequence[str], matched: dict[str, int], bone_map: dict[str, str]) -> dict[str, int]:
    """`matched` (canonical bone -> index into `names`) with every bone-map entry whose bone is among
    `names` put over it; a joint the map gives to another canonical bone loses its automatic match."""
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)
    mapped = {ours: index[theirs] for ours, theirs in bone_map.items() if theirs in index}
    taken = set(mapped.values())
    out = {b: j for b, j in matched.items() if b not in mapped and j not in taken} | mapped
    return {b: out[b] for b in HUMANOID_BONES if b in out}


def _up_axis(pos: Tensor, bones: dict[str, int]) -> Tensor:
    """The world axis (+-X, +-Y or +-Z) closest to the rest pose's hips-to-head direction (+Y if unknown)."""
    up = torch.tensor([0.0, 1.0, 0.0], dtype=pos.dtype)
    top = next((b for b in ("head", "neck", "chest", "spine") if b in bones), None)
    if "hips" in bones and top is not None:
        d = pos[bones[top]] - pos[bones["hips"]]
        if d.norm() > 1e-9:
            k = int(d.abs().argmax())
            up = torch.zeros(3, dtype=pos.dtype)
            up[k] = float(torch.sign(d[k]))
    return up


def _facing(pos: Tensor, bones: dict[str, int], up: Tensor | None = None) -> Tensor | None:
    """Forward direction of a rest pose, perpendicular to `up`: the character's left crossed with up."""
    up = torch.tensor([0.0, 1.0, 0.0], dtype=pos.dtype) if up is None else up.to(pos.dtype)
    for a, b in (("leftUpperLeg", "rightUpperLeg"), ("leftUpperArm", "rightUpperArm"), ("leftShoulder", "rightShoulder")):
        if a in bones and b in bones:
            left = pos[bones[a]] - pos[bones[b]]
            fwd = torch.linalg.cross(left, up)
            fwd = fwd - up * (fwd @ up)
            if fwd.norm() > 1e-6:
                return fwd / fwd.norm()
    return None


def _source_turn(sp: Tensor, src_bones: dict[str, int], dp: Tensor, dst_bones: dict[str, int]) -> Tensor:
    """Rotation taking the source's world onto the target's: up axis onto up axis (a Z-up BVH onto a
    Y-up model), then a turn about the target's up so both face the same way."""
    su, du = _up_axis(sp, src_bones), _up_axis(dp, dst_bones)
    tilt = rotation_between(su, du)
    fs, fd = _facing(sp, src_bones, su), _facing(dp, dst_bones, du)
    if fs is None or fd is None:
        return tilt
    fs = tilt @ fs
    # Signed angle about the up axis (rotation_between could pick another axis for half turns).
    angle = torch.atan2(du @ torch.linalg.cross(fs, fd), fs @ fd)
    return axis_angle_to_matrix(du * angle) @ tilt


def facing_yaw(rest_positions: Tensor, bones: dict[str, int]) -> float:
    """Degrees about +Y from +Z to the direction the rest pose faces (0 when it cannot be told)."""
    import math

    pos = rest_positions.double()
    f = _facing(pos, bones, _up_axis(pos, bones))
    return 0.0 if f is None else math.degrees(math.atan2(float(f[0]), float(f[2])))


def _rotation_part(m: Tensor) -> Tensor:
    r = m[..., :3, :3]
    return r / r.norm(dim=-2, keepdim=True).clamp_min(1e-12)


def retarget(
    src_rest: Tensor,
    src_global: Tensor,
    src_bones: dict[str, int],
    dst: Skeleton,
    dst_bones: dict[str, int],
) -> tuple[Tensor, list[str]]:
    """Drive skeleton `dst` with a source motion.

    src_rest (Js, 4, 4) and src_global (T, Js, 4, 4) are the source's global transforms at rest and
    per frame; *_bones map canonical names to joint indices. Returns (T, Jd, 4, 4) target global
    transforms and the canonical bones the source animates but the target lacks.
    """
    src_rest, src_global = src_rest.double(), src_global.double()
    frames = src_global.shape[0]
    dst_rest = dst.rest_global().double()
    sp, dp = src_rest[:, :3, 3], dst_rest[:, :3, 3]
    turn = _source_turn(sp, src_bones, dp, dst_bones)
    shared = [b for b in HUMANOID_BONES if b in src_bones and b in dst_bones]
    missing = [b for b in HUMANOID_BONES if b in src_bones and b not in dst_bones]

    desired: dict[int, Tensor] = {}
    for b in shared:
        i, j = src_bones[b], dst_bones[b]
        delta = turn @ _rotation_part(src_global[:, i]) @ _rotation_part(src_rest[i]).T @ turn.T  # (T, 3, 3)
        align = torch.eye(3, dtype=torch.float64)
        c = _CHILD.get(b)
        if c in src_bones and c in dst_bones:
            ds = turn @ (sp[src_bones[c]] - sp[i])
            dd = dp[dst_bones[c]] - dp[j]
            if ds.norm() > 1e-9 and dd.norm() > 1e-9:
                align = rotation_between(dd, ds)
        desired[j] = delta @ align @ _rotation_part(dst_rest[j])

    hip_shift = torch.zeros(frames, 3, dtype=torch.float64)
    if "hips" in shared:
        scale = _leg_height(dp, dst_bones) / max(_leg_height(sp, src_bones), 1e-9)
        hip_shift = (src_global[:, src_bones["hips"], :3, 3] - sp[src_bones["hips"]]) @ turn.T * scale

    rest_local = dst.rest_local.double()
    out: list[Tensor] = []
    for j, p in enumerate(dst.parents):
        parent = out[p] if p >= 0 else torch.eye(4, dtype=torch.float64).expand(frames, 4, 4)
        g = parent @ rest_local[j]
        if j in desired:
            # Replace the rotation, keep each column's length (scale) from the rest chain.
            lengths = g[:, :3, :3].norm(dim=-2, keepdim=True)
            g = g.clone()
            g[:, :3, :3] = desired[j] * lengths
        if "hips" in dst_bones and j == dst_bones["hips"]:
            g = g.clone()
            g[:, :3, 3] = g[:, :3, 3] + hip_shift
        out.append(g)
    return torch.stack(out, 1).float(), missing


def _leg_height(pos: Tensor, bones: dict[str, int]) -> float:
    """Height of the hips above the lower foot, along the skeleton's own up axis."""
    if "hips" not in bones:
        return 1.0
    up = _up_axis(pos, bones)
    feet = [float(pos[bones[f]] @ up) for f in ("leftFoot", "rightFoot") if f in bones]
    ground = min(feet) if feet else 0.0
    return max(float(pos[bones["hips"]] @ up) - ground, 1e-6)
