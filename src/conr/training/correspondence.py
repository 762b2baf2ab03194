"""Dense correspondences between a target pose and the sheet views, found through their UDP.

Every visible target pixel shows a point of the rest-pose body surface (its UDP coordinates); the
sheet view pixel whose UDP is nearest shows the same point, if that view sees it at all. The offset
between the two pixels is the flow the CINN shader should find for that view, and the sheet pixel's
colour is the colour the target pixel should get (the *UDP nearest neighbour* baseline).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

# A UDP coordinate is a fraction of the character's longest side: 0.02 is 2-3 pixels at 128 px.
MAX_MATCH_DISTANCE = 0.02


def nearest_surface(target: Tensor, sheets: Tensor, visible: float = 0.5) -> tuple[Tensor, Tensor]:
    """For every target pixel and sheet view, the nearest sheet pixel in UDP space.

    target (4, H, W) and sheets (V, 4, h, w): UDP labels (XYZ times visibility, visibility).
    Returns index (V, H, W), the flat index y * w + x of the nearest visible sheet pixel, and
    distance (V, H, W) in UDP units, +inf where the target pixel is not visible or the view is empty.
    """
    v = sheets.shape[0]
    h, w = target.shape[-2:]
    index = torch.zeros(v, h * w, dtype=torch.long)
    distance = torch.full((v, h * w), float("inf"))
    t_vis = (target[3] > visible).flatten()
    t_xyz = target[:3].flatten(1).T[t_vis].float().contiguous().numpy()  # (Nt, 3)
    if t_xyz.shape[0] == 0:
        return index.view(v, h, w), distance.view(v, h, w)
    for k in range(v):
        s_vis = (sheets[k, 3] > visible).flatten()
        s_idx = s_vis.nonzero().squeeze(1)
        if s_idx.numel() == 0:
            continue
        s_xyz = sheets[k, :3].flatten(1).T[s_idx].float().contiguous().numpy()  # (Ns, 3)
        # A k-d tree (FLANN) finds the same neighbour as brute force for about 99 % of the pixels,
        # several times faster; the rest get one a hair farther away. Its splits come from OpenCV's
        # random generator: seeded, the neighbours are a function of the inputs alone (resumed and
        # distributed runs see the same data, evaluation gives the same numbers).
        cv2.setRNGSeed(0)
        tree = cv2.flann_Index(s_xyz, {"algorithm": 1, "trees": 1})
        nearest, sq_dist = tree.knnSearch(t_xyz, 1, params={"checks": 64})
        distance[k, t_vis] = torch.from_numpy(sq_dist[:, 0]).sqrt()
        index[k, t_vis] = s_idx[torch.from_numpy(nearest[:, 0].astype(np.int64))]
    return index.view(v, h, w), distance.view(v, h, w)


def correspondence_flow(target: Tensor, sheets: Tensor, max_distance: float = MAX_MATCH_DISTANCE) -> Tensor:
    """The flow each view should be warped by, as the shader's warp reads it (sample the view at
    p + flow(p)), in pixels of the target's size. Sheets must be at the target's size.

    Returns (V, 3, H, W): flow x, flow y, and 1 where the view shows the target pixel's surface point.
    """
    index, distance = nearest_surface(target, sheets)
    h, w = target.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    fx = (index % w - xs).float()
    fy = (index // w - ys).float()
    valid = (distance < max_distance).float()
    return torch.stack([fx * valid, fy * valid, valid], dim=1)
