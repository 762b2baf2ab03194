"""Exactness against the original release: parity-v1 fixtures, official architecture, rule weights.

The weights are made from the fixture's rule, written as the original's four .pth files, and read
back through our loader, so these tests also cover reading the original checkpoint format.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conr.cli import main
from conr.files.io import read_rgba
from conr.files.udp import read_udp
from conr.render.pipeline import Renderer, find_poses, prepare_pose
from conr.render.preprocess import prepare_image, prepare_udp
from parity_weights import rule_state_dicts, write_original_dir

pytestmark = pytest.mark.slow
TOL = 2e-4


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory) -> Path:
    return write_original_dir(tmp_path_factory.mktemp("original"), rule_state_dicts())


@pytest.fixture(scope="module")
def expected(parity_dir):
    with np.load(parity_dir / "expected" / "tensors.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def renderer(original_dir) -> Renderer:
    return Renderer.from_weights(original_dir, device="cpu")


def _close(actual, wanted, what: str) -> None:
    actual = np.asarray(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual)
    assert actual.shape == wanted.shape, f"{what}: shape {actual.shape} != {wanted.shape}"
    err = float(np.abs(actual.astype(np.float64) - wanted).max())
    assert err <= TOL, f"{what}: max abs difference {err:.3g} > {TOL}"


def _png_rgba(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)


def _frames_match(ours: Path, theirs: Path) -> None:
    a, b = _png_rgba(ours).astype(int), _png_rgba(theirs).astype(int)
    assert a.shape == b.shape, f"{ours.name}: size {a.shape} != {b.shape}"
    diff = np.abs(a - b)
    assert diff.max() <= 2, f"{ours.name}: a channel differs by {diff.max()} levels"
    assert (diff <= 1).mean() >= 0.999, f"{ours.name}: only {(diff <= 1).mean():.4%} within 1 level"


@pytest.mark.parametrize("mode", ["udp", "img"])
def test_preprocessing_matches(parity_dir, expected, mode):
    sheets = [prepare_image(read_rgba(p), 256) for p in sorted((parity_dir / "sheets").glob("*.png"))]
    _close(torch.stack([s.rgb for s in sheets]), expected[f"{mode}_character_images"], "sheet images")
    _close(torch.stack([s.alpha for s in sheets]), expected[f"{mode}_character_masks"], "sheet masks")
    if mode == "udp":
        for k in range(3):
            p = prepare_udp(read_udp(parity_dir / "poses_udp" / f"{k}.npz"), 256)
            assert (p.crop.as_array() == expected[f"udp_{k}_pose_crop"]).all()
            _close(p.label, expected[f"udp_{k}_pose_label"], f"pose {k} label")
            _close(p.alpha, expected[f"udp_{k}_pose_mask"], f"pose {k} mask")
            _close(p.target(), expected[f"udp_{k}_x_target_sudp_a"], f"pose {k} encoder input")
    else:
        for k in range(2):
            p = prepare_image(read_rgba(parity_dir / "poses_img" / f"{k}.png", what="pose image"), 256)
            assert (p.crop.as_array() == expected[f"img_{k}_pose_crop"]).all()
            _close(p.rgb[None], expected[f"img_{k}_pose_images"], f"pose image {k}")


def test_parser_and_frames_in_crop_space(renderer, parity_dir, expected):
    """Both modes in one batch each: the parser's UDP, the encoder input and the decoded RGBA."""
    sheet = renderer.load_sheet(parity_dir / "sheets")
    sheet_udp = renderer.encode_sheet(
        [read_rgba(p) for p in sorted((parity_dir / "sheets").glob("*.png"))], with_udp=True).udp
    _close(sheet_udp, expected["udp_parser_pred"], "parser prediction")

    with torch.inference_mode():
        targets, _ = renderer.targets([prepare_pose(s, 256) for s in find_poses(parity_dir / "poses_img")])
    for k, target in enumerate(targets):
        _close(target, expected[f"img_{k}_x_target_sudp_a"], f"pose image {k}: encoder input")

    for kind, n in (("udp", 3), ("img", 2)):
        folder = parity_dir / ("poses_udp" if kind == "udp" else "poses_img")
        with torch.inference_mode():
            targets, _ = renderer.targets([prepare_pose(s, 256) for s in find_poses(folder)])
            rgba = renderer.model.render(sheet, targets)
        for k in range(n):
            _close(rgba[k], expected[f"{kind}_{k}_rgba"], f"{kind} frame {k}: decoded RGBA")


@pytest.mark.parametrize("kind,folder,n", [("udp", "poses_udp", 3), ("img", "poses_img", 2)])
def test_cli_frames_match_original(original_dir, parity_dir, tmp_path, kind, folder, n):
    out = tmp_path / "out"
    code = main(["render", "--sheets", str(parity_dir / "sheets"), "--poses", str(parity_dir / folder),
                 "--weights", str(original_dir), "--out", str(out), "--device", "cpu", "--batch-size", "2",
                 "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{k}.png" for k in range(n)]
    for k in range(n):
        _frames_match(out / f"{k}.png", parity_dir / "expected" / f"{kind}_{k}.png")


def test_converted_weights_are_identical(original_dir, tmp_path):
    out = tmp_path / "conr.safetensors"
    assert main(["convert-weights", str(original_dir), str(out)]) == 0
    from conr.render.weights import load_model

    a, b = load_model(original_dir), load_model(out)
    assert a.cfg == b.cfg
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
