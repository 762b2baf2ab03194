"""BVH motion capture reader (HIERARCHY + MOTION), with exact line numbers in its errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from conr.engine.skeleton import Skeleton
from conr.engine.transforms import axis_rotation
from conr.errors import ConrError

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


def load_bvh(path: str | Path) -> BvhMotion:
    path = Path(path)
    if not path.is_file():
        raise ConrError("motion file not found", path=path, hint="check the path")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise ConrError(f"cannot read the motion file ({err})", path=path) from None
    lines = text.splitlines()
    tokens: list[tuple[str, int]] = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
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
            return float(tok)
        except ValueError:
            raise fail(f"expected a number, found {tok!r}", ln) from None

    take("HIERARCHY")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []

    def joint(parent: int) -> None:
        nonlocal pos
        name, _ = take()
        take("{")
        idx = len(names)
        names.append(name)
        parents.append(parent)
        take("OFFSET")
        offsets.append([number(), number(), number()])
        chans: list[str] = []
        if pos < len(tokens) and tokens[pos][0].upper() == "CHANNELS":
            take()
            n = int(number())
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
                joint(idx)
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
    frames = int(number())
    tok, ln = take()
    if tok.upper() == "FRAME":
        take("TIME:")
    elif tok.upper() != "FRAMETIME:":
        raise fail(f"expected 'Frame Time:', found {tok!r}", ln)
    frame_time = number()
    if frame_time <= 0:
        raise fail("frame time must be positive", ln)
    width = sum(len(c) for c in channels)
    start_line = tokens[pos][1] if pos < len(tokens) else len(lines) + 1
    rows = [ln.split() for ln in lines[start_line - 1:] if ln.strip()]
    if len(rows) < frames:
        raise ConrError(f"BVH is truncated: header says {frames} frames, found {len(rows)}", path=path,
                        hint="the file was cut short; export or download it again")
    rows = rows[:frames]
    for k, r in enumerate(rows):
        if len(r) != width:
            raise fail(f"frame {k} has {len(r)} values, expected {width}", start_line + k)
    try:
        values = np.array(rows, dtype=np.float64).reshape(frames, width)
    except ValueError:
        raise fail("a frame holds something that is not a number") from None
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise fail(f"frame {bad} holds a value that is not finite (nan or inf)", start_line + bad)
    if frames == 0:
        raise ConrError("BVH has no frames", path=path, hint="export at least one frame of motion")
    skel = Skeleton.from_offsets(names, parents, torch.tensor(offsets, dtype=torch.float32))
    return BvhMotion(skel, channels, values, frame_time, path)
