"""Explicit matching through UDP: which sheet pixel shows the body point a target pixel shows.

Every visible pixel of a UDP map holds the rest-pose coordinates of the body surface it shows. A
target pixel and the sheet pixel whose UDP is nearest show the same point of the body, if that view
sees it at all. No learning: exact k-d trees over each view's visible pixels (SciPy's cKDTree:
exact, and several times faster here than OpenCV's approximate FLANN). Both the
correspondence-first renderer (`conr.models.lookup_shader`) and the baselines use it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

VISIBLE = 0.5  # a UDP pixel is visible where its visibility channel is above this


def erode(mask: Tensor, radius: int) -> Tensor:
    """Erosion of (N, C, h, w) by a (2 radius + 1)-px square, as a row pass and a column pass;
    outside the image counts as inside the mask."""
    if radius < 1:
        return mask
    k = 2 * radius + 1
    rows = -F.max_pool2d(-mask, (1, k), stride=1, padding=(0, radius))
    return -F.max_pool2d(-rows, (k, 1), stride=1, padding=(radius, 0))


def inner_surface(udp: Tensor, margin: float, keep: float = 0.25) -> Tensor:
    """(V, 4, h, w) sheet UDP without a band `margin` x the view's side wide along each silhouette
    (visibility 0 there), for matching. A view that would keep less than `keep` of its visible pixels
    (a thin or tiny drawing) keeps them all."""
    radius = round(margin * max(udp.shape[-2:]))
    if radius < 1:
        return udp
    vis = (udp[:, 3:4] > VISIBLE).float()
    inner = erode(vis, radius)
    kept = inner.flatten(1).sum(1) >= keep * vis.flatten(1).sum(1)
    inner = torch.where(kept[:, None, None, None], inner, vis)
    return torch.cat([udp[:, :3] * inner, udp[:, 3:4] * inner], 1)


def depth_axis(udp: Tensor) -> Tensor | None:
    """The camera's depth axis in rest space (3,) (its sign arbitrary) for one view's UDP (4, h, w),
    or None where too little is visible. Over a rigid body seen orthographically, the rest-space
    steps J = dX/d(x, y) of neighbouring pixels all satisfy Q J = I for the one map Q (2 x 3, rest
    space to image) the camera's pose makes; its rows are the camera's x and y axes in rest space,
    their cross product its depth axis. Q is the least-squares fit over the whole view, steps across
    an occlusion (over 3x the median step) left out: one answer for a sheet in a neutral pose."""
    xyz, vis = udp[:3].double(), udp[3] > VISIBLE
    ju = (xyz[:, :-1, 1:] - xyz[:, :-1, :-1]).flatten(1).T  # (N, 3), the pixel to its right
    jv = (xyz[:, 1:, :-1] - xyz[:, :-1, :-1]).flatten(1).T  # the pixel below
    ok = (vis[:-1, 1:] & vis[:-1, :-1] & vis[1:, :-1]).flatten()
    ju, jv = ju[ok], jv[ok]
    if ju.shape[0] < 20:
        return None
    lu, lv = ju.norm(dim=1), jv.norm(dim=1)
    med = torch.cat([lu, lv]).median()
    short = (lu < 3 * med) & (lv < 3 * med)
    ju, jv = ju[short], jv[short]
    a = ju.T @ ju + jv.T @ jv  # the sum of J J^T
    a = a + 1e-6 * torch.trace(a) * torch.eye(3, dtype=a.dtype) + 1e-12 * torch.eye(3, dtype=a.dtype)
    inv = torch.linalg.inv(a)
    z = torch.linalg.cross(ju.sum(0) @ inv, jv.sum(0) @ inv)
    if not bool(z.norm() > 0):
        return None
    return (z / z.norm()).float()


class SurfaceIndex:
    """k-d trees over the visible pixels of each view of a sheet's UDP (V, 4, h, w), built once and
    queried for every frame. A view where nothing is visible matches nothing (distance +inf).

    With `depth_squeeze` s < 1, distances along each view's depth axis (`depth_axis`) count s times
    as much: the parser reads a view's depth, which it cannot see, worst (validation characters,
    seed 710000: XYZ error 0.010 / 0.007 / 0.015 on front views, 0.027 / 0.019 / 0.013 on side
    views), and an error there slides a match across a curved surface. Distances are in that metric."""

    def __init__(self, udp: Tensor, visible: float = VISIBLE, depth_squeeze: float = 1.0):
        self.views, _, self.height, self.width = udp.shape
        self.visible = visible
        self.pixels: list[Tensor] = []  # per view: flat indices y * w + x of its visible pixels
        self.trees: list[cKDTree | None] = []
        self.metrics: list[np.ndarray | None] = []  # per view: the (3, 3) map into the squeezed metric
        udp = udp.detach().float().cpu()
        for k in range(self.views):
            idx = (udp[k, 3] > visible).flatten().nonzero().squeeze(1)
            self.pixels.append(idx)
            axis = depth_axis(udp[k]) if depth_squeeze != 1.0 and idx.numel() > 0 else None
            metric = None if axis is None else (torch.eye(3) - (1 - depth_squeeze) * torch.outer(axis, axis))
            self.metrics.append(None if metric is None else metric.double().numpy())
            if idx.numel() == 0:
                self.trees.append(None)
                continue
            xyz = self._metric(k, udp[k, :3].flatten(1).T[idx].double().numpy())  # (N, 3)
            # Sliding-midpoint splits: the median splits of a balanced tree crash SciPy 1.17 on repeated
            # points when denormals are flushed to zero, as rendering and training set them.
            self.trees.append(cKDTree(xyz, balanced_tree=False))

    def _metric(self, view: int, xyz: np.ndarray) -> np.ndarray:
        m = self.metrics[view]
        return xyz if m is None else xyz @ m.T

    @property
    def empty_views(self) -> list[int]:
        return [k for k, t in enumerate(self.trees) if t is None]

    def match(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """target (4, H, W) UDP (XYZ, visibility) -> index (V, H, W), the flat index y * w + x of the
        nearest visible sheet pixel of each view, and distance (V, H, W) in UDP units (+inf where the
        target pixel is not visible or the view shows nothing). Ties go to the lower index."""
        h, w = target.shape[-2:]
        index = torch.zeros(self.views, h * w, dtype=torch.long)
        distance = torch.full((self.views, h * w), float("inf"))
        target = target.detach().float().cpu()
        t_vis = (target[3] > self.visible).flatten()
        t_xyz = target[:3].flatten(1).T[t_vis].double().numpy()  # (Nt, 3)
        if t_xyz.shape[0] == 0:
            return index.view(self.views, h, w), distance.view(self.views, h, w)
        for k, tree in enumerate(self.trees):
            if tree is None:
                continue
            dist, nearest = tree.query(self._metric(k, t_xyz), k=1)
            distance[k, t_vis] = torch.from_numpy(dist).float()
            index[k, t_vis] = self.pixels[k][torch.from_numpy(nearest.astype(np.int64))]
        return index.view(self.views, h, w), distance.view(self.views, h, w)

    def coords(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """Where each view shows every target pixel's surface point: coords (V, 2, H, W), the matched
        sheet pixel's (x, y) (0 where unmatched; the sheet may have another size than the target),
        and distance (V, 1, H, W) (+inf where unmatched)."""
        index, distance = self.match(target)
        found = torch.isfinite(distance)
        x = torch.where(found, (index % self.width).float(), 0.0)
        y = torch.where(found, (index // self.width).float(), 0.0)
        return torch.stack([x, y], dim=1), distance.unsqueeze(1)


def nearest_surface(target: Tensor, sheets: Tensor, visible: float = VISIBLE) -> tuple[Tensor, Tensor]:
    """For every target pixel and sheet view, the nearest sheet pixel in UDP space: index (V, H, W)
    (flat y * w + x) and distance (V, H, W), +inf where nothing matches (see SurfaceIndex.match)."""
    return SurfaceIndex(sheets, visible).match(target)
