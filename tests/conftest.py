from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from parity_weights import PARITY  # noqa: E402


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"parity fixtures not found at {PARITY}: the repository must sit beside shared/")
    return PARITY


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny-preset model with seeded random weights, saved in our format."""
    from conr.models import CoNR, preset
    from conr.render.weights import save_safetensors

    torch.manual_seed(0)
    model = CoNR(preset("tiny"))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_safetensors(model, path)
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def sheets(tmp_path, parity_dir) -> Path:
    """A real character sheet folder (4 cut-out PNGs of different sizes)."""
    return _copy(parity_dir / "sheets", tmp_path / "sheets")


@pytest.fixture
def udp_poses(tmp_path, parity_dir) -> Path:
    return _copy(parity_dir / "poses_udp", tmp_path / "poses")


@pytest.fixture
def image_poses(tmp_path, parity_dir) -> Path:
    return _copy(parity_dir / "poses_img", tmp_path / "pose_images")
