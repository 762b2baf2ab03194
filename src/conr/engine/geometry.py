"""Mesh primitives for procedural characters: ellipsoids and swept tubes, built in NumPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Part:
    """A piece of a character: geometry, one colour per face, and which bones may move it."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    colours: np.ndarray  # (F, 3) float
    bones: list[str]  # candidate bones for automatic skinning weights
    unlit: bool = False
    uv: np.ndarray | None = None  # (V, 2) texture coordinates when the part is textured
    texture: np.ndarray | None = None  # (H, W, 4) uint8 RGBA, multiplied by nothing (colours are baked in)

    def keep_faces(self, keep: np.ndarray) -> "Part":
        return Part(self.vertices, self.faces[keep], self.colours[keep], self.bones, self.unlit, self.uv, self.texture)


def ellipsoid(centre, radii, segments: int = 16, rings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """UV ellipsoid with poles on the y axis; faces wind outwards."""
    rings = rings or max(segments // 2, 3)
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.arange(segments) * 2 * np.pi / segments
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    unit = np.concatenate([[[0, 1, 0]], unit, [[0, -1, 0]]])
    verts = unit * np.asarray(radii, float) + np.asarray(centre, float)
    faces = _ring_faces(rings - 1, segments, offset=1, closed=True)
    top = np.stack([np.zeros(segments, int), 1 + (np.arange(segments) + 1) % segments, 1 + np.arange(segments)], 1)
    last = 1 + (rings - 2) * segments
    bottom_id = len(verts) - 1
    bottom = np.stack([np.full(segments, bottom_id), last + np.arange(segments), last + (np.arange(segments) + 1) % segments], 1)
    # The rings above run clockwise seen from outside; flip to the outward (counter-clockwise) winding.
    return verts, np.concatenate([top, faces, bottom])[:, [0, 2, 1]].astype(np.int64)


def _ring_faces(n_rings: int, segments: int, offset: int = 0, closed: bool = True) -> np.ndarray:
    """Quads (as two triangles) between consecutive rings of `segments` vertices."""
    r = np.arange(n_rings - 1)[:, None]
    s = np.arange(segments if closed else segments - 1)[None, :]
    a = offset + r * segments + s
    b = offset + r * segments + (s + 1) % segments
    c, d = a + segments, b + segments
    tris = np.stack([np.stack([a, b, c], -1), np.stack([b, d, c], -1)], 2)
    return tris.reshape(-1, 3)


def tube(path, radii, segments: int = 12, ref=(1.0, 0.0, 0.0), caps: bool = True,
         profile=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A generalised cylinder swept along (N, 3) `path`.

    `radii` is (N,) or (N, 2) (radius along the `ref` side and across it). `profile(theta)` may
    scale the radius around the ring (e.g. skirt pleats). Returns vertices, faces and the ring
    index of each face (for colouring bands along the tube).
    """
    path = np.asarray(path, float)
    n = len(path)
    radii = np.asarray(radii, float)
    if radii.ndim == 1:
        radii = np.stack([radii, radii], 1)
    tang = np.gradient(path, axis=0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    side = np.asarray(ref, float)
    frames = []
    for t in tang:  # parallel transport keeps the ring from twisting along the path
        side = side - t * (side @ t)
        if np.linalg.norm(side) < 1e-6:
            side = np.cross(t, [0.0, 0.0, 1.0])
        side = side / np.linalg.norm(side)
        frames.append((side, np.cross(t, side)))
    theta = np.arange(segments) * 2 * np.pi / segments
    scale = np.ones(segments) if profile is None else profile(theta)
    verts = []
    for (s, u), p, (ra, rb) in zip(frames, path, radii):
        verts.append(p + (np.cos(theta) * ra * scale)[:, None] * s + (np.sin(theta) * rb * scale)[:, None] * u)
    verts = np.concatenate(verts)
    faces = _ring_faces(n, segments)
    ring = np.repeat(np.arange(n - 1), segments * 2)
    if caps:
        start, end = len(verts), len(verts) + 1
        verts = np.concatenate([verts, path[:1], path[-1:]])
        k = np.arange(segments)
        cap0 = np.stack([np.full(segments, start), (k + 1) % segments, k], 1)
        last = (n - 1) * segments
        cap1 = np.stack([np.full(segments, end), last + k, last + (k + 1) % segments], 1)
        faces = np.concatenate([faces, cap0, cap1])
        ring = np.concatenate([ring, np.zeros(segments, int), np.full(segments, n - 2)])
    return verts, faces.astype(np.int64), ring


def bezier(points, n: int) -> np.ndarray:
    """(n, 3) samples of the Bezier curve through control `points`."""
    t = np.linspace(0, 1, n)[None, :, None]
    pts = np.repeat(np.asarray(points, float)[:, None], n, axis=1)  # (K, n, 3)
    while len(pts) > 1:  # de Casteljau
        pts = (1 - t) * pts[:-1] + t * pts[1:]
    return pts[0]


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from (V, 3) points to the segment a-b."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def tube_uv(n_rings: int, segments: int, caps: bool = True) -> np.ndarray:
    """(V, 2) texture coordinates of a `tube`: u around the ring, v along the path (caps at the ends)."""
    s = np.tile(np.arange(segments) / segments, n_rings)
    r = np.repeat(np.arange(n_rings) / max(n_rings - 1, 1), segments)
    uv = np.stack([s, r], 1)
    return np.concatenate([uv, [[0.0, 0.0], [0.0, 1.0]]]) if caps else uv


def plaid(base, line, size: int = 32, period: int = 8) -> np.ndarray:
    """(size, size, 4) uint8 tartan: darker bands both ways, their crossings darker still, thin lines."""
    base = np.asarray(base, float)
    k = np.arange(size) % period
    band = (k < period // 3).astype(float)
    shade = 1 - 0.18 * (band[:, None] + band[None, :])
    img = base[None, None] * shade[..., None]
    thin = (k == period // 2)
    img[thin, :] = np.asarray(line, float)
    img[:, thin] = np.asarray(line, float)
    return _rgba8(img)


def stripes(base, stripe, size: int = 32, period: int = 8, across: bool = True) -> np.ndarray:
    """(size, size, 4) uint8 stripes of `stripe` on `base`, across v (rings) or along u."""
    k = np.arange(size) % period < period // 2
    mask = np.broadcast_to(k[:, None] if across else k[None, :], (size, size))
    img = np.where(mask[..., None], np.asarray(stripe, float), np.asarray(base, float))
    return _rgba8(img)


def dots(base, dot, size: int = 32, period: int = 8, radius: float = 0.28) -> np.ndarray:
    """(size, size, 4) uint8 polka dots of `dot` on `base`, offset every other row."""
    y, x = np.mgrid[:size, :size].astype(float)
    row = np.floor(y / period)
    cx = (x + (row % 2) * period / 2) % period - period / 2
    cy = y % period - period / 2
    mask = np.hypot(cx, cy) < radius * period
    img = np.where(mask[..., None], np.asarray(dot, float), np.asarray(base, float))
    return _rgba8(img)


def gradient(start, end, size: int = 32) -> np.ndarray:
    """(size, size, 4) uint8 gradient from `start` (v = 0) to `end` (v = 1)."""
    t = np.linspace(0, 1, size)[:, None, None]
    img = np.broadcast_to((1 - t) * np.asarray(start, float) + t * np.asarray(end, float), (size, size, 3))
    return _rgba8(np.ascontiguousarray(img))


def _rgba8(rgb: np.ndarray) -> np.ndarray:
    out = np.concatenate([np.clip(rgb, 0, 1) * 255, np.full(rgb.shape[:2] + (1,), 255.0)], -1)
    return out.round().astype(np.uint8)
