"""The Winograd convolutions compute the same function as PyTorch's, to float32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conr.models import winograd
from conr.models.config import preset
from conr.models.shader import DecoderBlock


def _reference(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    bias = None if conv.bias is None else conv.bias.double()
    return F.conv2d(x.double(), conv.weight.double(), bias, padding=1)


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (2, 8, 13, 21), (3, 16, 40, 33)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv3x3_matches_direct_convolution(shape, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 7, 3, 1, 1, bias=bias)
    x = torch.randn(shape)
    with torch.no_grad():
        want = _reference(x, conv)
        got = winograd.conv3x3(x, winograd.transform_weight(conv.weight), conv.bias)
    assert got.shape == want.shape and got.dtype == torch.float32 and got.is_contiguous()
    err = (got.double() - want).abs().max().item()
    assert err <= 1e-5 * want.abs().max().item()  # float32 rounding, amplified a little by the transforms


def test_conv3x3_takes_any_memory_layout():
    torch.manual_seed(5)
    conv = nn.Conv2d(8, 8, 3, 1, 1)
    x = torch.randn(2, 8, 32, 36)
    u = winograd.transform_weight(conv.weight.detach())
    want = winograd.conv3x3(x, u, conv.bias.detach())
    for other in (x.contiguous(memory_format=torch.channels_last), torch.randn(2, 12, 32, 36)[:, 2:10]):
        other.copy_(x)
        assert torch.equal(winograd.conv3x3(other, u, conv.bias.detach()), want)


def test_conv3x3_in_chunks_is_the_same(monkeypatch):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, 1, 1)
    x = torch.randn(5, 8, 36, 36)
    u = winograd.transform_weight(conv.weight.detach())
    whole = winograd.conv3x3(x, u, conv.bias.detach())
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 1)  # one image per chunk
    assert torch.equal(winograd.conv3x3(x, u, conv.bias.detach()), whole)


def test_apply_routes_only_cpu_float32_inference_on_large_maps():
    torch.manual_seed(2)
    layers = nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.PReLU(4), nn.Conv2d(4, 4, 3, 2, 1))
    large, small = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        assert winograd.usable(large) and not winograd.usable(small)
        assert not winograd.usable(large.double())
        fast = winograd.apply(layers, large)
        with winograd.disabled():
            assert not winograd.usable(large)
            direct = winograd.apply(layers, large)
        assert not torch.equal(fast, direct)  # the Winograd path really ran ...
        torch.testing.assert_close(fast, direct, rtol=0, atol=1e-5)  # ... and agrees
        assert torch.equal(winograd.apply(layers, small), layers(small))
    # With gradients on (training), PyTorch's convolutions run and the gradient reaches the weights.
    out = winograd.apply(layers, large)
    assert torch.equal(out, layers(large))
    out.sum().backward()
    assert layers[0].weight.grad is not None


def test_transformed_weight_follows_weight_changes():
    torch.manual_seed(3)
    layers = nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1))
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        first = winograd.apply(layers, x)
        layers[0].weight.mul_(2)  # in place: a new version of the same tensor
        torch.testing.assert_close(winograd.apply(layers, x) - layers[0].bias.view(1, -1, 1, 1),
                                   2 * (first - layers[0].bias.view(1, -1, 1, 1)), rtol=0, atol=1e-5)
        layers[0].weight = nn.Parameter(torch.zeros_like(layers[0].weight))  # replaced
        torch.testing.assert_close(winograd.apply(layers, x), layers[0].bias.view(1, -1, 1, 1).expand_as(x),
                                   rtol=0, atol=0)


def test_shader_level_agrees_with_direct_convolutions():
    """A full-width shader level (224 channels) on a 128x128 input: its 32x32 residual block runs
    through Winograd; every output stays within 1e-5 of the direct convolutions'."""
    cfg = preset("official").shader
    torch.manual_seed(4)
    level = 4
    block = DecoderBlock(cfg.in_channels(level), cfg.width, cfg.residual_blocks[level], cfg.message_channels[level],
                         cfg.local_channels[level], cfg.mask_channels(level), cfg.flow_groups).eval()
    x = torch.randn(2, cfg.in_channels(level), 128, 128) * 0.5
    with torch.no_grad():
        fast = block([(x, False)], views=2)
        with winograd.disabled():
            direct = block([(x, False)], views=2)
    for name, value in fast.items():
        if value is not None:
            torch.testing.assert_close(value, direct[name], rtol=0, atol=1e-5, msg=name)
