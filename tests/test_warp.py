"""Exact answers for the flow warps the CINN shader is built on."""

from __future__ import annotations

import torch

from conr.models.warp import rescale_flow, warp, warp_groups


def test_zero_flow_returns_input():
    x = torch.rand(2, 3, 7, 9)
    assert torch.allclose(warp(x, torch.zeros(2, 2, 7, 9)), x, atol=1e-6)


def test_one_pixel_flow_moves_content_by_one_pixel():
    x = torch.arange(6 * 8, dtype=torch.float32).view(1, 1, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 1.0  # sample one pixel to the right
    out = warp(x, flow)
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-4)
    assert torch.allclose(out[..., -1], x[..., -1], atol=1e-4)  # border padding repeats the edge
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 1] = -1.0  # one pixel up
    out = warp(x, flow)
    assert torch.allclose(out[..., 1:, :], x[..., :-1, :], atol=1e-4)


def test_groups_follow_their_own_flow():
    x = torch.rand(1, 4, 5, 5)
    flow = torch.zeros(1, 4, 5, 5)
    flow[:, 2] = 1.0  # second group (channels 2-3) shifts right, first stays
    out = warp_groups(x, flow)
    assert torch.allclose(out[:, :2], x[:, :2], atol=1e-6)
    assert torch.allclose(out[:, 2:, :, :-1], x[:, 2:, :, 1:], atol=1e-5)


def test_rescaled_flow_keeps_pointing_at_the_same_content():
    flow = torch.full((1, 2, 4, 4), 1.5)
    up = rescale_flow(flow, (8, 8))
    assert up.shape == (1, 2, 8, 8)
    assert torch.allclose(up, torch.full_like(up, 3.0))
    assert rescale_flow(flow, (4, 4)) is flow


def test_warp_stays_float32_under_autocast():
    x = torch.rand(1, 2, 4, 4, dtype=torch.bfloat16)
    flow = torch.zeros(1, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(x, flow)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), x.float())
