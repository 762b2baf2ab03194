"""CUDA: the same frames as on the CPU in float32, and a bounded error in half precision.
Skipped (with the reason printed by -ra) on machines without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conr.render.pipeline import Renderer, find_poses

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def _frames(weights, sheets, poses, device, precision):
    renderer = Renderer.from_weights(weights, device=device, precision=precision)
    sheet = renderer.load_sheet(sheets)
    return [f.rgba.astype(np.float64) for f in renderer.render(sheet, find_poses(poses), batch_size=3)]


def test_cuda_matches_cpu_and_half_precision_stays_close(tiny_weights, sheets, udp_poses):
    cpu = _frames(tiny_weights, sheets, udp_poses, "cpu", "fp32")
    gpu = _frames(tiny_weights, sheets, udp_poses, "cuda", "fp32")
    fast = _frames(tiny_weights, sheets, udp_poses, "cuda", "fast")
    for a, b, c in zip(cpu, gpu, fast):
        assert np.abs(a - b).max() <= 2
        mse = ((a - c) ** 2).mean()
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 30  # PSNR in dB
