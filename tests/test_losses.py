"""Loss terms with exact answers."""

from __future__ import annotations

import math

import torch

from conr.training.losses import _visibility_loss, flow_loss


def test_visibility_loss_is_bce_inside_and_stops_pushing_past_the_clamp():
    p = torch.tensor([0.25, 1.3, -0.2, 1.3, -0.2], requires_grad=True)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    loss = _visibility_loss(p, target)
    loss.sum().backward()
    assert math.isclose(loss[0].item(), -math.log(0.25), rel_tol=1e-6)
    assert math.isclose(float(p.grad[0]), -1 / 0.25, rel_tol=1e-5)
    # Past the clamp on the right side: nothing more to learn (the old straight-through BCE pushed on).
    assert float(p.grad[1]) == 0.0 and float(p.grad[2]) == 0.0
    # Past it on the wrong side: pulled back.
    assert float(p.grad[3]) > 0 and float(p.grad[4]) < 0


def test_flow_loss_cap_bounds_each_pixels_error():
    truth = torch.zeros(1, 1, 3, 4, 4)
    truth[:, :, 2] = 1  # valid everywhere, true flow 0
    flow = torch.full((1, 1, 2, 4, 4), 50.0)  # 100 px of L1 error per pixel
    assert math.isclose(float(flow_loss([flow], truth)), 100.0, rel_tol=1e-5)  # over (count + eps)
    assert math.isclose(float(flow_loss([flow], truth, cap=10.0)), 10.0, rel_tol=1e-5)
