"""BVH motion capture: a reader with exact line numbers in its errors, and a writer (`save_bvh`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from conr.engine.skeleton import Skeleton
from conr.engine.transforms import axis_rotation, matrix_to_euler
from conr.errors import ConrError
from conr.files.io import atomic_write_bytes

_ROT = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}
_POS = {"xposition": 0, "yposition": 1, "zposition": 2}


@dataclass
class BvhMotion:
    skeleton: Skeleton  # rest pose: zero rotations, joints at their OFFSETs
    channels: list[list[str]]  # per joint, lower-case channel names in file order
    values: np.ndarray  # (T, C) all channel values, degrees and file units
    frame_time: float
    path: Path

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    def global_transforms(self, frames: np.ndarray | None = None) -> torch.Tensor:
        """(T, J, 4, 4) global joint transforms for the chosen frame indices (default all)."""
        vals = torch.tensor(self.values if frames is None else self.values[frames], dtype=torch.float64)
        t = vals.shape[0]
        local = self.skeleton.rest_local.double().expand(t, -1, -1, -1).clone()
        col = 0
        for j, chans in enumerate(self.channels):
            rot = torch.eye(3, dtype=torch.float64).expand(t, 3, 3)
            for k, c in enumerate(chans):
                if c in _POS:  # position channels give the joint's absolute local position
                    local[:, j, _POS[c], 3] = vals[:, col + k]
                else:  # rotations compose in channel order: R = R_first @ R_second @ R_third
                    rot = rot @ axis_rotation(_ROT[c], torch.deg2rad(vals[:, col + k]))
            local[:, j, :3, :3] = rot
            col += len(chans)
        return self.skeleton.global_from_local(local)


MAX_BVH_BYTES = 1024 * 2 ** 20  # an hour of 120 fps capture of a 100-joint skeleton is about 900 MB
MAX_BVH_FRAMES = 1_000_000
# Deeper than any skeleton (a hand is about 6 joints from the hips' end of a 20-joint chain); the
# reader recurses once per level.
MAX_BVH_DEPTH = 256
# Frame times from 10000 frames a second to one frame in 10 s: outside them the number is damage,
# and resampling to --fps would make billions of frames (or none).
MIN_FRAME_TIME, MAX_FRAME_TIME = 1e-4, 10.0
# No angle in degrees or position in any unit is this large; past it a number is damage, and the
# skeleton's transforms would overflow into blank frames.
MAX_BVH_VALUE = 1e7


def load_bvh(path: str | Path) -> BvhMotion:
    path = Path(path)
    if not path.is_file():
        raise ConrError("motion file not found", path=path, hint="check the path")
    try:
        if path.stat().st_size > MAX_BVH_BYTES:
            raise ConrError(f"BVH file is {path.stat().st_size / 2 ** 20:.0f} MiB, over the limit of "
                            f"{MAX_BVH_BYTES / 2 ** 20:.0f} MiB", path=path, hint="cut the motion into shorter clips")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise ConrError(f"cannot read the motion file ({err})", path=path) from None
    lines = text.splitlines()
    del text
    # Tokens of the hierarchy and the motion header only: the frames are parsed as one array below
    # (a token list of a long capture would take gigabytes).
    header_end = len(lines)
    for n, line in enumerate(lines):
        if line.strip().upper().startswith(("FRAME TIME", "FRAMETIME")):
            header_end = n + 1
            break
    tokens: list[tuple[str, int]] = [(tok, n + 1) for n, line in enumerate(lines[:header_end]) for tok in line.split()]
    pos = 0

    def fail(msg: str, line: int | None = None) -> ConrError:
        where = f" (line {line})" if line else ""
        return ConrError(f"malformed BVH: {msg}{where}", path=path, hint="check the file was exported as BVH and is complete")

    def take(expect: str | None = None) -> tuple[str, int]:
        nonlocal pos
        if pos >= len(tokens):
            raise fail(f"unexpected end of file, expected {expect or 'more data'}", len(lines))
        tok, ln = tokens[pos]
        if expect is not None and tok.upper() != expect:
            raise fail(f"expected {expect}, found {tok!r}", ln)
        pos += 1
        return tok, ln

    def number() -> float:
        tok, ln = take()
        try:
            value = float(tok)
        except ValueError:
            raise fail(f"expected a number, found {tok!r}", ln) from None
        if not (math.isfinite(value) and abs(value) <= MAX_BVH_VALUE):
            raise fail(f"the number {tok!r} is not finite or not plausible (beyond {MAX_BVH_VALUE:g})", ln)
        return value

    def count(what: str, hi: int) -> tuple[int, int]:
        tok, ln = take()
        if not tok.isdigit():
            raise fail(f"{what} must be a whole number from 0, found {tok!r}", ln)
        if int(tok) > hi:
            raise fail(f"{what} is {tok}, over the limit of {hi}", ln)
        return int(tok), ln

    take("HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []

    def joint(parent: int, depth: int = 0) -> None:
        name, ln = take()
        if depth > MAX_BVH_DEPTH:
            raise fail(f"joints nest more than {MAX_BVH_DEPTH} levels deep", ln)
        take("{")
        idx = len(names)
        names.append(name)
        parents.append(parent)
        take("OFFSET")
        offsets.append([number(), number(), number()])
        chans: list[str] = []
        if pos < len(tokens) and tokens[pos][0].upper() == "CHANNELS":
            take()
            n, _ = count("a joint's CHANNELS count", 6)  # 3 positions and 3 rotations at most
            for _ in range(n):
                c, ln = take()
                if c.lower() not in _ROT and c.lower() not in _POS:
                    raise fail(f"unknown channel {c!r}", ln)
                chans.append(c.lower())
        channels.append(chans)
        while True:
            tok, ln = take()
            key = tok.upper()
            if key == "JOINT":
                joint(idx, depth + 1)
            elif key == "END":
                take("SITE")
                take("{")
                take("OFFSET")
                number(), number(), number()
                take("}")
            elif key == "}":
                return
            else:
                raise fail(f"unexpected {tok!r} inside joint {name!r}", ln)

    tok, ln = take()
    if tok.upper() != "ROOT":
        raise fail(f"expected ROOT, found {tok!r}", ln)
    joint(-1)
    while pos < len(tokens) and tokens[pos][0].upper() == "ROOT":
        raise fail("more than one ROOT is not supported", tokens[pos][1])
    take("MOTION")
    take("FRAMES:")
    frames, _ = count("the number of frames the header announces", MAX_BVH_FRAMES)
    tok, ln = take()
    if tok.upper() == "FRAME":
        take("TIME:")
    elif tok.upper() != "FRAMETIME:":
        raise fail(f"expected 'Frame Time:', found {tok!r}", ln)
    frame_time = number()
    if frame_time <= 0:
        raise fail("frame time must be positive", ln)
    if not MIN_FRAME_TIME <= frame_time <= MAX_FRAME_TIME:
        raise fail(f"frame time {frame_time:g} s is outside {MIN_FRAME_TIME:g} to {MAX_FRAME_TIME:g} s "
                   f"({1 / MAX_FRAME_TIME:g} to {1 / MIN_FRAME_TIME:g} frames a second)", ln)
    width = sum(len(c) for c in channels)
    start_line = header_end + 1
    body = [n for n in range(header_end, len(lines)) if lines[n].strip()][:max(frames, 0)]
    if len(body) < frames:
        raise ConrError(f"BVH is truncated: header says {frames} frames, found {len(body)}", path=path,
                        hint="the file was cut short; export or download it again")
    values = _frame_values(lines, body, width, fail)
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise fail(f"frame {bad} holds a value that is not finite (nan or inf)", start_line + bad)
    if values.size and np.abs(values).max() > MAX_BVH_VALUE:
        bad = int(np.argwhere(np.abs(values) > MAX_BVH_VALUE)[0, 0])
        raise fail(f"frame {bad} holds a value beyond {MAX_BVH_VALUE:g}, which is no angle or position",
                   start_line + bad)
    if frames == 0:
        raise ConrError("BVH has no frames", path=path, hint="export at least one frame of motion")
    skel = Skeleton.from_offsets(names, parents, torch.tensor(offsets, dtype=torch.float32))
    return BvhMotion(skel, channels, values, frame_time, path)


def _frame_values(lines: list[str], rows: list[int], width: int, fail) -> np.ndarray:
    """(frames, width) float64 from the frame lines `rows`; a row of the wrong length or a value that
    is not a number is named by its line."""
    import warnings

    block = "\n".join(lines[n] for n in rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fromstring stops quietly at a bad token
        values = np.fromstring(block, dtype=np.float64, sep=" ") if block.strip() else np.zeros(0)
    if values.size == len(rows) * width:
        return values.reshape(len(rows), width)
    for k, n in enumerate(rows):  # find the culprit (only on error: slow for long files)
        parts = lines[n].split()
        if len(parts) != width:
            raise fail(f"frame {k} has {len(parts)} values, expected {width}", n + 1)
        try:
            [float(p) for p in parts]
        except ValueError:
            raise fail("a frame holds something that is not a number", n + 1) from None
    raise fail("a frame holds something that is not a number")


def save_bvh(path: str | Path, skeleton: Skeleton, rotations: Tensor, root_translation: Tensor, fps: float,
             names: Sequence[str] | None = None, scale: float = 1.0, order: str = "ZXY",
             end_sites: Mapping[str, Sequence[float]] | None = None) -> None:
    """Write a motion of `skeleton` as BVH, so that `load_bvh` reads back the same global transforms.

    `rotations` (T, J, 3, 3) and `root_translation` (T, 3) are the arguments of `Skeleton.forward`.
    BVH has no rest rotations, so they are baked in: each joint's OFFSET is its rest translation and
    its channels hold its whole local rotation, rest rotation @ rotation, as `order` Euler angles in
    degrees (R = R_order[0] @ R_order[1] @ R_order[2], the convention `load_bvh` reads). Zero channels
    are therefore the skeleton's rest pose only where its rest rotations are identity. The single root
    has 6 channels, Xposition Yposition Zposition first, holding its absolute local position (rest
    translation + root_translation), as BVH files usually do. `scale` multiplies every length (100:
    metres to centimetres). Joints are written depth-first, children in index order.

    `names` replaces `skeleton.names` in the file. Every leaf joint gets an End Site: `end_sites[name]`
    (skeleton units, in the joint's own frame) or, by default, 10% of its bone, continued.
    Raises ValueError for arguments that cannot describe a BVH motion.
    """
    num = skeleton.num_joints
    if rotations.ndim != 4 or rotations.shape[0] < 1 or rotations.shape[1:] != (num, 3, 3):
        raise ValueError(f"rotations must be (T, {num}, 3, 3) with T >= 1, got {tuple(rotations.shape)}")
    frames = rotations.shape[0]
    if tuple(root_translation.shape) != (frames, 3):
        raise ValueError(f"root_translation must be ({frames}, 3), got {tuple(root_translation.shape)}")
    if not (math.isfinite(fps) and fps > 0) or f"{1 / fps:.8f}" == "0.00000000":
        raise ValueError(f"fps must be positive and below 1e8, got {fps}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive, got {scale}")
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"order must be a permutation of 'XYZ', got {order!r}")
    names = list(skeleton.names if names is None else names)
    if len(names) != num:
        raise ValueError(f"names has {len(names)} entries for {num} joints")
    for n in names:
        # The reader splits on whitespace, so a name must be one non-empty token.
        if not n or len(n.split()) != 1 or n != n.strip():
            raise ValueError(f"joint name {n!r} must be non-empty and hold no whitespace")
    if len(set(names)) != num:
        raise ValueError(f"joint names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    roots = [j for j, p in enumerate(skeleton.parents) if p < 0]
    if len(roots) != 1:
        raise ValueError(f"BVH holds one ROOT; the skeleton has {len(roots)} roots: {[names[j] for j in roots]}")
    children: list[list[int]] = [[] for _ in range(num)]
    for j, p in enumerate(skeleton.parents):
        if p >= 0:
            children[p].append(j)
    end_sites = dict(end_sites or {})
    for n, e in end_sites.items():
        if n not in names or children[names.index(n)]:
            raise ValueError(f"end_sites names {n!r}, which is not a leaf joint among `names`")
        if len(e) != 3:
            raise ValueError(f"end site of {n!r} must have 3 numbers, got {len(e)}")

    rest = skeleton.rest_local.detach().cpu().double()
    rest_rot, rest_pos = rest[:, :3, :3], rest[:, :3, 3]
    # BVH stores rotations and offsets only: a scaled or sheared rest joint cannot be written.
    err = (rest_rot.transpose(-1, -2) @ rest_rot - torch.eye(3, dtype=rest.dtype)).abs().amax((-1, -2))
    bad = [names[j] for j in range(num) if err[j] > 1e-4 or torch.linalg.det(rest_rot[j]) < 0]
    if bad:
        raise ValueError(f"rest transforms of {bad} are not rigid (scale or mirror); BVH cannot store them")
    rot = rotations.detach().cpu().double()
    trans = root_translation.detach().cpu().double()
    if not (torch.isfinite(rot).all() and torch.isfinite(trans).all()):
        raise ValueError("rotations and root_translation must be finite")

    deg = torch.rad2deg(matrix_to_euler(rest_rot @ rot, order)).numpy()  # (T, J, 3)
    # Take each channel the short way round between frames: the same rotations, but tools that
    # interpolate or filter the curves (Blender, MotionBuilder) see no 360-degree jumps.
    deg = np.unwrap(deg, period=360.0, axis=0)
    root = roots[0]
    root_pos = (rest_pos[root] + trans).numpy() * scale  # (T, 3)
    offsets = rest_pos.numpy() * scale

    def num3(v: np.ndarray | Sequence[float]) -> str:
        return " ".join(f"{float(x):.6f}" for x in v)

    lines = ["HIERARCHY"]
    written: list[int] = []  # joints in file order: the MOTION columns follow it
    rot_chans = " ".join(f"{ax}rotation" for ax in order)

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        written.append(j)
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {num3(offsets[j])}")
        pos_chans = "6 Xposition Yposition Zposition " if depth == 0 else "3 "
        lines.append(f"{pad}  CHANNELS {pos_chans}{rot_chans}")
        for k in children[j]:
            emit(k, depth + 1)
        if not children[j]:
            if names[j] in end_sites:
                site = np.asarray(end_sites[names[j]], dtype=np.float64)
            else:
                # The bone from the parent, seen in this joint's frame, continued by a tenth.
                bone = (rest_rot[j].T @ rest_pos[j]).numpy()
                length = float(np.linalg.norm(bone))
                site = 0.1 * bone if j != root and length > 1e-9 else np.array([0.0, 0.05, 0.0])
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {num3(site * scale)}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(root, 0)
    values = np.concatenate([root_pos, deg[:, written].reshape(frames, -1)], axis=1)  # (T, 3 + 3J)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values.tolist()]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
