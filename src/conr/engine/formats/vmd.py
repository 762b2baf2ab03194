"""VMD reader (MikuMikuDance motions): bone keyframes, sampled at 30 frames per second.

Keys are interpolated linearly (positions) and spherically (rotations); the Bezier curves a VMD
stores per key are not applied. Morph, camera and light keys are not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conr.errors import ConrError

VMD_FPS = 30.0
_BONE_KEY = struct.Struct("<15sI3f4f64s")


@dataclass
class VmdMotion:
    tracks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # name -> (frames (K,), pos (K, 3), quat xyzw (K, 4))
    path: Path

    @property
    def num_frames(self) -> int:
        return 1 + max((int(f[-1]) for f, _, _ in self.tracks.values()), default=0)

    def sample(self, name: str, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, 3) translation offsets and (T, 4) rotations of one bone at the given frame numbers,
        in our right-handed frame (z mirrored)."""
        f, p, q = self.tracks[name]
        k = np.clip(np.searchsorted(f, frames, side="right") - 1, 0, len(f) - 1)
        k1 = np.minimum(k + 1, len(f) - 1)
        span = np.maximum(f[k1] - f[k], 1)
        a = np.clip((frames - f[k]) / span, 0, 1)[:, None]
        a = np.where((k1 == k)[:, None], 0.0, a)
        pos = p[k] * (1 - a) + p[k1] * a
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


def load_vmd(path: str | Path) -> VmdMotion:
    path = Path(path)
    if not path.is_file():
        raise ConrError("motion file not found", path=path, hint="check the path")
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
    for k in range(count):
        name_b, frame, px, py, pz, qx, qy, qz, qw, _ = _BONE_KEY.unpack_from(data, pos + k * _BONE_KEY.size)
        name = name_b.split(b"\0", 1)[0].decode("shift_jis", errors="replace")
        raw.setdefault(name, []).append((frame, (px, py, pz), (qx, qy, qz, qw)))
    tracks = {}
    for name, keys in raw.items():
        keys.sort(key=lambda x: x[0])
        tracks[name] = (np.array([k[0] for k in keys], float), np.array([k[1] for k in keys], float),
                        np.array([k[2] for k in keys], float))
    if not tracks:
        raise ConrError("VMD file has no bone keyframes", path=path, hint="it may hold only camera or morph keys")
    return VmdMotion(tracks, path)
