"""VMD reader (MikuMikuDance motions): bone keyframes, sampled at 30 frames per second.

Between keys, each key's Bezier easing curves (one per position axis and one for the rotation)
map time to progress; positions then interpolate linearly and rotations spherically. The IK
on/off keys at the end of the file are read; morph, camera, light and shadow keys are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conr.errors import ConrError

VMD_FPS = 30.0
_BONE_KEY = struct.Struct("<15sI3f4f64s")


@dataclass
class VmdMotion:
    tracks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    # name -> (frames (K,), pos (K, 3), quat xyzw (K, 4), Bezier controls (K, 4, 4): X, Y, Z, rotation x (x1, y1, x2, y2))
    path: Path
    ik_switches: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # IK bone -> (frames, on)
    name_keys: dict[str, bytes] = field(default_factory=dict)  # track name -> its raw Shift-JIS bytes

    def track_for(self, bone: str) -> str | None:
        """The track driving a model bone, matched as MMD does: by the first 15 bytes of its Shift-JIS
        name (a VMD has room for no more, so long names arrive cut)."""
        key = mmd_name_key(bone)
        for name, raw in self.name_keys.items():
            if raw == key:
                return name
        return bone if bone in self.tracks else None

    def ik_enabled(self, name: str, frames: np.ndarray) -> np.ndarray:
        """(T,) bool: whether the IK bone `name` is on at each frame (on unless a key turned it off)."""
        if name not in self.ik_switches:
            return np.ones(len(frames), bool)
        f, on = self.ik_switches[name]
        k = np.searchsorted(f, frames, side="right") - 1
        return np.where(k >= 0, on[np.clip(k, 0, None)], True)

    @property
    def num_frames(self) -> int:
        return 1 + max((int(f[-1]) for f, *_ in self.tracks.values()), default=0)

    def sample(self, name: str, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, 3) translation offsets and (T, 4) rotations of one bone at the given frame numbers,
        in our right-handed frame (z mirrored)."""
        f, p, q, curves = self.tracks[name]
        k = np.clip(np.searchsorted(f, frames, side="right") - 1, 0, len(f) - 1)
        k1 = np.minimum(k + 1, len(f) - 1)
        span = np.maximum(f[k1] - f[k], 1)
        lin = np.clip((frames - f[k]) / span, 0, 1)
        lin = np.where(k1 == k, 0.0, lin)
        # The curve stored with the later key shapes the way into it.
        eased = bezier_progress(curves[k1], lin[:, None])  # (T, 4)
        pos = p[k] * (1 - eased[:, :3]) + p[k1] * eased[:, :3]
        a = eased[:, 3:4]
        q0, q1 = q[k], q[k1]
        dot = (q0 * q1).sum(1, keepdims=True)
        q1 = np.where(dot < 0, -q1, q1)
        theta = np.arccos(np.clip(np.abs(dot), -1, 1))
        s = np.sin(theta)
        w0 = np.where(s < 1e-6, 1 - a, np.sin((1 - a) * theta) / np.where(s < 1e-6, 1, s))
        w1 = np.where(s < 1e-6, a, np.sin(a * theta) / np.where(s < 1e-6, 1, s))
        quat = w0 * q0 + w1 * q1
        quat /= np.linalg.norm(quat, axis=1, keepdims=True)
        # Mirroring z: positions (x, y, -z); rotations (-x, -y, z, w).
        return pos * [1, 1, -1], quat * [-1, -1, 1, 1]


def mmd_name_key(name: str) -> bytes:
    """A bone name as a VMD stores it: Shift-JIS, at most 15 bytes."""
    return name.encode("shift_jis", errors="replace")[:15]


def bezier_progress(ctrl: np.ndarray, x: np.ndarray, steps: int = 24) -> np.ndarray:
    """Progress y at time x in [0, 1] along Bezier easing curves from (0, 0) to (1, 1).

    ctrl: (..., 4) control points (x1, y1, x2, y2) in [0, 1]; x broadcasts against ctrl[..., 0].
    The curve's x is monotonic, so t with bezier_x(t) = x is found by bisection.
    """
    x, x1, y1, x2, y2 = np.broadcast_arrays(x, *(ctrl[..., i] for i in range(4)))

    def cubic(c1, c2, t):
        return 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t ** 2 * c2 + t ** 3

    lo, hi = np.zeros_like(x), np.ones_like(x)
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = cubic(x1, x2, mid) < x
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    y = cubic(y1, y2, (lo + hi) / 2)
    return np.where(x >= 1, 1.0, np.where(x <= 0, 0.0, y))  # exact at the keys themselves


def _curves(interp: bytes) -> np.ndarray:
    """(4, 4) Bezier controls (x1, y1, x2, y2) for X, Y, Z and rotation from a key's 64 bytes."""
    b = np.frombuffer(interp, np.uint8).astype(float)
    return np.stack([b[[i, i + 4, i + 8, i + 12]] for i in range(4)]) / 127.0


MAX_VMD_BYTES = 512 * 2 ** 20  # 111 bytes a bone key: about 4.8 million keys
# The motion is sampled at every frame up to its last key: as many as a BVH may hold (9 hours at 30 fps).
MAX_VMD_FRAME = 1_000_000


def load_vmd(path: str | Path) -> VmdMotion:
    path = Path(path)
    if not path.is_file():
        raise ConrError("motion file not found", path=path, hint="check the path")
    if path.stat().st_size > MAX_VMD_BYTES:
        raise ConrError(f"VMD file is {path.stat().st_size / 2 ** 20:.0f} MiB, over the limit of "
                        f"{MAX_VMD_BYTES / 2 ** 20:.0f} MiB", path=path, hint="cut the motion into shorter clips")
    data = path.read_bytes()
    head = data[:30]
    if head.startswith(b"Vocaloid Motion Data 0002"):
        pos = 30 + 20
    elif head.startswith(b"Vocaloid Motion Data file"):
        pos = 30 + 10
    else:
        raise ConrError("not a VMD file (missing 'Vocaloid Motion Data' signature)", path=path,
                        hint="give a .vmd motion exported from MikuMikuDance")
    if len(data) < pos + 4:
        raise ConrError("VMD file is truncated (no bone key count)", path=path, hint="get the file again")
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if pos + count * _BONE_KEY.size > len(data):
        have = (len(data) - pos) // _BONE_KEY.size
        raise ConrError(f"VMD file is truncated: it declares {count} bone keys but holds {have}", path=path,
                        hint="the file was cut short; export or download it again")
    raw: dict[str, list[tuple]] = {}
    keys_of: dict[str, bytes] = {}
    for k in range(count):
        name_b, frame, px, py, pz, qx, qy, qz, qw, interp = _BONE_KEY.unpack_from(data, pos + k * _BONE_KEY.size)
        key = name_b.split(b"\0", 1)[0]
        name = key.decode("shift_jis", errors="replace")
        keys_of[name] = key
        raw.setdefault(name, []).append((frame, (px, py, pz), (qx, qy, qz, qw), _curves(interp)))
    tracks = {}
    for name, keys in raw.items():
        keys.sort(key=lambda x: x[0])
        tracks[name] = (np.array([k[0] for k in keys], float), np.array([k[1] for k in keys], float),
                        np.array([k[2] for k in keys], float), np.stack([k[3] for k in keys]))
        frames, pos_keys, quats, _ = tracks[name]
        if frames[-1] > MAX_VMD_FRAME:
            raise ConrError(f"bone {name!r} has a key at frame {int(frames[-1]):,}, past the limit of "
                            f"{MAX_VMD_FRAME:,} frames", path=path,
                            hint="the file is corrupt, or the motion is far too long: cut it into shorter clips")
        if not (np.isfinite(pos_keys).all() and np.isfinite(quats).all()):
            raise ConrError(f"bone {name!r} has a key whose position or rotation is not finite (nan or inf)",
                            path=path, hint="the file is corrupt: export or download it again")
    if not tracks:
        raise ConrError("VMD file has no bone keyframes", path=path, hint="it may hold only camera or morph keys")
    return VmdMotion(tracks, path, _ik_switches(data, pos + count * _BONE_KEY.size), keys_of)


def _ik_switches(data: bytes, pos: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """IK on/off keys from the optional sections after the bone keys (absent in older files)."""
    # Morph, camera, light and self-shadow keys have fixed sizes: skip them.
    for size in (23, 61, 28, 9):
        if pos + 4 > len(data):
            return {}
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4 + n * size
    if pos + 4 > len(data):
        return {}
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    keys: dict[str, list[tuple[int, bool]]] = {}
    for _ in range(n):
        if pos + 9 > len(data):
            break
        frame, _show, count = struct.unpack_from("<IBI", data, pos)
        pos += 9
        for _ in range(count):
            if pos + 21 > len(data):
                break
            name = data[pos:pos + 20].split(b"\0", 1)[0].decode("shift_jis", errors="replace")
            keys.setdefault(name, []).append((frame, bool(data[pos + 20])))
            pos += 21
    out = {}
    for name, ks in keys.items():
        ks.sort()
        out[name] = (np.array([k[0] for k in ks], float), np.array([k[1] for k in ks], bool))
    return out
