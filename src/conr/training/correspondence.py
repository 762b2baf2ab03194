"""Dense correspondences between a target pose and the sheet views, found through their UDP.

Every visible target pixel shows a point of the rest-pose body surface (its UDP coordinates); the
sheet view pixel whose UDP is nearest shows the same point, if that view sees it at all. The offset
between the two pixels is the flow the CINN shader should find for that view, and the sheet pixel's
colour is the colour the target pixel should get (the *UDP nearest neighbour* baseline).
"""

from __future__ import annotations

import torch
from torch import Tensor

from conr.models.matching import nearest_surface

# A UDP coordinate is a fraction of the character's longest side: 0.02 is 2-3 pixels at 128 px.
MAX_MATCH_DISTANCE = 0.02


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
