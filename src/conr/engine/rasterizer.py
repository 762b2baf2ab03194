"""A vectorised z-buffer triangle rasteriser in PyTorch (CPU or CUDA).

Integer edge functions on a fixed-point grid decide coverage exactly (top-left fill rule, so a
pixel on a shared edge belongs to exactly one triangle). Every (triangle, row) of its bounding box
solves the three edge inequalities for its span of covered columns, so only covered pixels are
enumerated, all in flat tensors; the z-buffer is one `scatter_reduce('amin')` over keys that pack
quantised depth above the triangle id. Barycentrics are then computed only for the winning pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SUBPIXEL_BITS = 8  # vertices snap to 1/256 pixel; edge values stay far inside int64
DEPTH_BITS = 31
_EMPTY = torch.iinfo(torch.int64).max


@dataclass
class AlphaTest:
    """Cut-out materials: fragments whose texel alpha is below the face's cutoff are discarded."""

    uv: Tensor  # (V, 2) texture coordinates
    face_cutoff: Tensor  # (F,) float in (0, 1]; 0 means opaque, no test
    face_texture: Tensor  # (F,) int64 index into `alphas`
    alphas: list[Tensor]  # (H, W) uint8 alpha channels


@dataclass
class Fragments:
    """What the rasteriser found at each pixel."""

    face: Tensor  # (H, W) int64 triangle index, -1 where no surface
    bary: Tensor  # (H, W, 3) float32 perspective-correct barycentrics of faces[face]
    depth: Tensor  # (H, W) float32 screen-linear depth, 1 where no surface

    @property
    def mask(self) -> Tensor:
        return self.face >= 0


def rasterize(
    xy: Tensor,
    depth: Tensor,
    w: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    cull_backfaces: bool = False,
    max_candidates: int = 1 << 22,
    alpha: AlphaTest | None = None,
) -> Fragments:
    """Rasterise triangles given per-vertex pixel coordinates (V, 2), depth (V,) in [0, 1] and w (V,).

    Triangles with a vertex outside the depth range [0, 1] (behind the near plane or past the far
    plane) are dropped rather than clipped. `max_candidates` bounds the memory of one pass (the
    bounding-box pixels of the triangles it takes). `alpha` discards fragments of cut-out materials.
    """
    device = xy.device
    scale = float(1 << SUBPIXEL_BITS)
    fixed = torch.round(xy.double() * scale).long()  # (V, 2)
    tri = fixed[faces]  # (F, 3, 2)
    x, y = tri[..., 0], tri[..., 1]  # (F, 3)
    # Twice the signed area in fixed point; positive for counter-clockwise on screen (y down).
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    zf = depth[faces]
    keep = (area != 0) & (zf >= 0).all(1) & (zf <= 1).all(1)
    if cull_backfaces:
        keep &= area < 0  # faces seen counter-clockwise (their front) have negative area with y down
    ids = torch.nonzero(keep).squeeze(1)
    order = torch.where(area[ids] > 0, 0, 1)
    # Orient every triangle the same way (swap vertices 1 and 2 of the others).
    perm = torch.tensor([[0, 1, 2], [0, 2, 1]], device=device)[order]  # (T, 3)
    x = torch.gather(x[ids], 1, perm)
    y = torch.gather(y[ids], 1, perm)
    area = area[ids].abs()

    # Pixel-centre bounding box, clipped to the image. Centre of column j is (j + 0.5) * scale.
    half = 1 << (SUBPIXEL_BITS - 1)
    sub = 1 << SUBPIXEL_BITS
    x0 = torch.div(x.min(1).values - half + sub - 1, sub, rounding_mode="floor").clamp(0, width)
    x1 = torch.div(x.max(1).values - half, sub, rounding_mode="floor").clamp(-1, width - 1)
    y0 = torch.div(y.min(1).values - half + sub - 1, sub, rounding_mode="floor").clamp(0, height)
    y1 = torch.div(y.max(1).values - half, sub, rounding_mode="floor").clamp(-1, height - 1)
    bw = (x1 - x0 + 1).clamp_min(0)
    bh = (y1 - y0 + 1).clamp_min(0)
    count = bw * bh
    has = count > 0
    ids, x, y, area, x0, y0, bw, bh, count = (v[has] for v in (ids, x, y, area, x0, y0, bw, bh, count))
    perm = perm[has]

    # Edge i is opposite vertex i: e_i(p) = A_i * px + B_i * py + C_i, positive inside, e_i / area
    # is the barycentric weight of vertex i.
    xa, ya = x[:, [1, 2, 0]], y[:, [1, 2, 0]]
    xb, yb = x[:, [2, 0, 1]], y[:, [2, 0, 1]]
    A = ya - yb
    B = xb - xa
    # Top-left rule: pixels exactly on an edge count only for top or left edges.
    top_left = ((A == 0) & (B > 0)) | (A > 0)
    # At the centre of pixel (row, col): e_i = A_i * sub * col + B_i * sub * row + K_i; the bias of -1
    # on edges that are not top-left makes "on the edge" count as outside for them.
    K = A * (half - xa) + B * (half - ya) - (~top_left).long()  # (T, 3)
    As, Bs = A * sub, B * sub

    zbuf = torch.full((height * width,), _EMPTY, dtype=torch.int64, device=device)
    zq = (depth.double().clamp(0, 1) * ((1 << DEPTH_BITS) - 1)).round()
    zt = torch.gather(zq[faces[ids]], 1, perm)  # (T, 3)
    dq_max = (1 << DEPTH_BITS) - 1
    # Depth is affine in screen space: z = za * col + zb * row + zc (barycentric weights e_i / area).
    ar = area.double()
    za = (zt * As.double()).sum(1) / ar
    zb = (zt * Bs.double()).sum(1) / ar
    zc = (zt * K.double()).sum(1) / ar

    # Scanline: each (triangle, row) computes its exact span of covered columns from the three edge
    # inequalities, so only covered pixels are enumerated. Chunks bound the memory of one pass.
    starts = torch.cumsum(count, 0) - count
    for lo, hi in _chunk_bounds(starts, count, max_candidates):
        h = bh[lo:hi]
        nr = int(h.sum())
        if nr == 0:
            continue
        # index_select is much faster than advanced indexing for these large gathers on the CPU.
        rt = torch.repeat_interleave(torch.arange(hi - lo, device=device), h, output_size=nr)
        first = (torch.cumsum(h, 0) - h).index_select(0, rt)
        row = y0[lo:hi].index_select(0, rt) + torch.arange(nr, device=device) - first
        a = As[lo:hi].index_select(0, rt)  # (nr, 3)
        r = Bs[lo:hi].index_select(0, rt) * row[:, None] + K[lo:hi].index_select(0, rt)
        safe = torch.where(a == 0, torch.ones_like(a), a)
        lo_b = x0[lo:hi].index_select(0, rt)
        hi_b = lo_b + bw[lo:hi].index_select(0, rt) - 1
        # a > 0: col >= ceil(-r / a) = -floor(r / a);  a < 0: col <= floor(r / -a);  a == 0: all or nothing.
        lower = torch.where(a > 0, -torch.div(r, safe, rounding_mode="floor"), lo_b[:, None]).max(1).values
        upper = torch.where(a < 0, torch.div(r, -safe, rounding_mode="floor"), hi_b[:, None]).min(1).values
        jl = torch.maximum(lower, lo_b)
        jr = torch.minimum(upper, hi_b)
        dead = ((a == 0) & (r < 0)).any(1)
        cnt = torch.where(dead, 0, (jr - jl + 1).clamp_min(0))
        npx = int(cnt.sum())
        if npx == 0:
            continue
        pr = torch.repeat_interleave(torch.arange(nr, device=device), cnt, output_size=npx)
        col = jl.index_select(0, pr) + torch.arange(npx, device=device) - (torch.cumsum(cnt, 0) - cnt).index_select(0, pr)
        t = rt.index_select(0, pr)
        zrow = zb[lo:hi].index_select(0, rt) * row + zc[lo:hi].index_select(0, rt)
        z = zrow.index_select(0, pr) + za[lo:hi].index_select(0, t) * col
        key = (z.round().long().clamp(0, dq_max) << 32) | ids[lo:hi].index_select(0, t)
        pix = row.index_select(0, pr) * width + col
        if alpha is not None:
            prow = row.index_select(0, pr)
            gl = t + lo  # index among the kept triangles
            e = As.index_select(0, gl) * col[:, None] + Bs.index_select(0, gl) * prow[:, None] + K.index_select(0, gl)
            keep = _alpha_keep(alpha, ids.index_select(0, gl), e, perm.index_select(0, gl), faces, w)
            key, pix = key[keep], pix[keep]
        zbuf.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)

    covered = zbuf != _EMPTY
    face = torch.full((height * width,), -1, dtype=torch.int64, device=device)
    face[covered] = zbuf[covered] & 0xFFFFFFFF
    face = face.view(height, width)
    bary, zout = _barycentrics(xy, depth, w, faces, face, height, width)
    return Fragments(face, bary, zout)


def _alpha_keep(alpha: AlphaTest, face_ids: Tensor, e: Tensor, perm: Tensor, faces: Tensor, w: Tensor) -> Tensor:
    """(n,) bool: fragments that survive the alpha test (all of those on opaque faces)."""
    cutoff = alpha.face_cutoff.index_select(0, face_ids)
    keep = torch.ones_like(cutoff, dtype=torch.bool)
    test = torch.nonzero(cutoff > 0).squeeze(1)
    if test.numel() == 0:
        return keep
    verts = torch.gather(faces.index_select(0, face_ids.index_select(0, test)), 1, perm.index_select(0, test))
    # Perspective-correct barycentrics from the edge values: (e_i / w_i) normalised.
    lam = e.index_select(0, test).double().clamp_min(0) / w.double()[verts]
    lam = lam / lam.sum(1, keepdim=True).clamp_min(1e-30)
    uv = (lam[..., None] * alpha.uv.double()[verts]).sum(1) % 1.0  # (m, 2)
    tex = alpha.face_texture.index_select(0, face_ids.index_select(0, test))
    a = torch.full_like(cutoff.index_select(0, test), 1.0)
    for k in torch.unique(tex).tolist():
        sel = tex == k
        img = alpha.alphas[k].to(e.device)
        h, wd = img.shape
        x = (uv[sel, 0] * wd).long().clamp(0, wd - 1)
        y = (uv[sel, 1] * h).long().clamp(0, h - 1)
        a[sel] = img[y, x].to(a.dtype) / 255.0
    keep[test] = a >= cutoff.index_select(0, test)
    return keep


def _chunk_bounds(starts: Tensor, count: Tensor, budget: int) -> list[tuple[int, int]]:
    """Split triangles into runs whose pixel counts sum to about `budget` (a run holds at least one)."""
    total = int(count.sum()) if count.numel() else 0
    if total <= budget:
        return [(0, int(count.numel()))] if count.numel() else []
    ends = torch.cumsum(count, 0)
    bounds: list[tuple[int, int]] = []
    lo = 0
    n = int(count.numel())
    while lo < n:
        limit = int(starts[lo]) + budget
        hi = int(torch.searchsorted(ends, torch.tensor(limit, device=ends.device), right=True))
        hi = max(hi, lo + 1)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _barycentrics(xy: Tensor, depth: Tensor, w: Tensor, faces: Tensor, face: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Perspective-correct barycentrics and depth at the centre of every covered pixel."""
    bary = torch.zeros(height, width, 3, dtype=torch.float32, device=xy.device)
    zout = torch.ones(height, width, dtype=torch.float32, device=xy.device)
    rows, cols = torch.nonzero(face >= 0, as_tuple=True)
    if rows.numel() == 0:
        return bary, zout
    f = faces[face[rows, cols]]  # (M, 3)
    p = torch.stack([cols.double() + 0.5, rows.double() + 0.5], dim=1)
    v = xy.double()[f]  # (M, 3, 2)
    # Screen-space barycentrics from sub-triangle areas.
    a = v[:, [1, 2, 0]] - p[:, None]
    b = v[:, [2, 0, 1]] - p[:, None]
    sub_area = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]  # (M, 3)
    lam = sub_area / sub_area.sum(1, keepdim=True)
    z = (lam * depth.double()[f]).sum(1)
    # Perspective correction: weights divided by w, renormalised.
    pc = lam / w.double()[f]
    pc = pc / pc.sum(1, keepdim=True)
    bary[rows, cols] = pc.float()
    zout[rows, cols] = z.float()
    return bary, zout


def interpolate(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """Interpolate (V, C) vertex attributes to (H, W, C); zero where no surface."""
    face = fragments.face
    out = torch.zeros(*face.shape, attributes.shape[1], dtype=attributes.dtype, device=attributes.device)
    m = face >= 0
    f = faces[face[m]]  # (M, 3)
    out[m] = (attributes[f] * fragments.bary[m][..., None].to(attributes.dtype)).sum(1)
    return out
