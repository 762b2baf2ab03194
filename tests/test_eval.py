"""`conr eval`: exact answers of the metrics, the baselines on synthetic characters, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conr.cli import main
from conr.training.baselines import copy_front, flat_colour, udp_nearest
from conr.training.data import SampleKey, SampleSet, read_data
from conr.training.evaluate import evaluate, format_table
from conr.training.metrics import METRICS, PSNR_MAX, frame_metrics, ssim

BASELINE_NAMES = ("copy", "flat", "udp_nn")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Two procedural characters, two target frames each, four sheet views, 128 px."""
    from conr.engine.synth import synthesize

    out = tmp_path_factory.mktemp("eval") / "synth"
    synthesize(out, seed=0, count=2, frames=2, size=128, views=4)
    return out


@pytest.fixture(scope="module")
def samples(data_dir) -> list[dict[str, torch.Tensor]]:
    ds = SampleSet(read_data([data_dir]), 128, jitter=None, flow=False)
    return [ds[SampleKey(i, ds.max_views, None)] for i in range(len(ds))]


def _square(rgb: tuple[float, float, float], side: int = 32, size: int = 64) -> torch.Tensor:
    """(1, 4, size, size) premultiplied: an opaque square of colour rgb on transparency."""
    out = torch.zeros(1, 4, size, size)
    out[0, :3, :side, :side] = torch.tensor(rgb).view(3, 1, 1)
    out[0, 3, :side, :side] = 1
    return out


# ---------------------------------------------------------------- metrics, exact answers


def test_perfect_prediction(samples):
    truth = torch.stack([s["target_rgba"] for s in samples])
    m = frame_metrics(truth.clone(), truth)
    assert set(m) == set(METRICS)
    for k in ("l1_rgb", "l1_alpha", "l1_inside"):
        assert torch.all(m[k] == 0), k
    assert torch.allclose(m["ssim"], torch.ones(len(samples)), atol=1e-5)
    assert torch.all(m["right_pixels"] == 1)
    # PSNR of identical images is +inf; it is capped so that means and JSON stay finite.
    assert torch.all(m["psnr"] == PSNR_MAX)


def test_transparent_prediction_gets_no_pixel_right():
    truth = _square((1.0, 0.0, 0.0))  # red, far from the white a transparent pixel shows
    m = frame_metrics(torch.zeros_like(truth), truth)
    assert m["right_pixels"].item() == 0
    assert m["l1_alpha"].item() == pytest.approx(0.25)  # the square covers a quarter
    assert m["l1_inside"].item() == pytest.approx(2 / 3)  # |(1,1,1) - (1,0,0)| averaged over channels
    assert m["l1_rgb"].item() == pytest.approx(0.25 * 2 / 3)


@pytest.mark.parametrize("offset, right", [(0.05, 1.0), (0.2, 0.0)])
def test_constant_offset(offset, right):
    truth = _square((0.5, 0.5, 0.5), side=64)  # fully opaque grey
    pred = truth.clone()
    pred[:, :3] += offset
    m = frame_metrics(pred, truth)
    assert m["l1_rgb"].item() == pytest.approx(offset, abs=1e-6)
    assert m["l1_inside"].item() == pytest.approx(offset, abs=1e-6)
    assert m["l1_alpha"].item() == 0
    assert m["psnr"].item() == pytest.approx(10 * math.log10(1 / offset ** 2), abs=1e-4)
    assert m["right_pixels"].item() == right
    # constant images: no variance, so SSIM is the luminance term alone
    c1 = 0.01 ** 2
    expected = (2 * 0.5 * (0.5 + offset) + c1) / (0.25 + (0.5 + offset) ** 2 + c1)
    assert m["ssim"].item() == pytest.approx(expected, abs=1e-5)


def test_ssim_drops_with_noise():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1, abs=1e-5)
    assert ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1)).item() < 0.8


# ---------------------------------------------------------------- baselines on synthetic characters


def test_baselines_rank(samples):
    truth = torch.stack([s["target_rgba"] for s in samples])
    right = {}
    for name, f in (("copy", copy_front), ("flat", flat_colour), ("udp_nn", udp_nearest)):
        pred = torch.stack([f(s) for s in samples])
        assert pred.shape == truth.shape and pred.min() >= 0 and pred.max() <= 1, name
        right[name] = frame_metrics(pred, truth)["right_pixels"].mean().item()
    msg = f"right_pixels: {right}"
    assert right["udp_nn"] > right["copy"], msg
    assert right["udp_nn"] > right["flat"], msg
    assert right["copy"] > right["flat"], msg


def test_udp_nn_alpha_is_the_silhouette(samples):
    for s in samples:
        alpha = udp_nearest(s)[3]
        # The target's alpha wherever its UDP shows a surface (every such pixel finds a match). The
        # alpha is area-resampled and the UDP label nearest-resampled, so ~1 % of the silhouette's
        # edge pixels show no surface: those stay transparent.
        visible = s["target_udp"][3] > 0.5
        assert torch.equal(alpha[visible], s["target_alpha"][0][visible])
        assert torch.all(alpha[~visible] == 0)
        silhouette = s["target_alpha"][0] > 0.5
        assert (silhouette & ~visible).sum() < 0.02 * silhouette.sum()


def test_copy_stays_in_the_target_box(samples):
    for s in samples:
        alpha = copy_front(s)[3]
        ys, xs = (s["target_alpha"][0] > 0.5).nonzero(as_tuple=True)
        inside = torch.zeros_like(alpha, dtype=torch.bool)
        inside[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        assert alpha[~inside].max() == 0
        assert alpha[inside].max() > 0.5


# ---------------------------------------------------------------- the API and the CLI


def test_evaluate_max_frames_covers_every_character(data_dir):
    chars = read_data([data_dir])
    result = evaluate(None, chars, 128, 2, "cpu", max_frames=2, progress=False)
    assert result["frames"] == 2 and result["characters"] == 2 and result["views"] == 2
    assert set(result["per_character"]) == {c.name for c in chars}
    assert "udp_nn" in format_table(result)


def test_cli_baselines_json(data_dir, tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["eval", "--no-model", "--data", str(data_dir), "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert list(result["overall"]) == list(BASELINE_NAMES)
    assert result["frames"] == 4 and result["characters"] == 2 and result["size"] == 128
    assert result["views"] == 4 and result["weights"] is None
    for method in BASELINE_NAMES:
        assert set(result["overall"][method]) == set(METRICS)
        assert all(math.isfinite(v) for v in result["overall"][method].values())
    assert len(result["per_character"]) == 2
    table = capsys.readouterr().out
    assert "udp_nn" in table and "right_pixels" in table


def test_cli_with_model(data_dir, tiny_weights, tmp_path, capsys):
    out = tmp_path / "model.json"
    argv = ["eval", "--weights", str(tiny_weights), "--data", str(data_dir), "--size", "128", "--device", "cpu",
            "--max-frames", "1", "--json", str(out), "--quiet", "--crop"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert list(result["overall"]) == ["model", "model_image", *BASELINE_NAMES]
    assert set(result["overall"]["model"]) == set(METRICS) == set(result["overall"]["model_image"])
    assert 0 <= result["parser"]["visibility_iou"] <= 1 and result["parser"]["udp_l1"] >= 0
    assert result["weights"] == str(tiny_weights) and result["frames"] == 1
    assert any(line.startswith("model ") for line in capsys.readouterr().out.splitlines())


def test_cli_measures_at_the_frames_size_by_default(data_dir, tiny_weights, tmp_path, capsys):
    out = tmp_path / "frames.json"
    argv = ["eval", "--weights", str(tiny_weights), "--data", str(data_dir), "--device", "cpu", "--json", str(out),
            "--quiet"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["frame_size"] == [128, 128] and result["frames"] == 4
    assert list(result["overall"]) == ["model", "model_image", *BASELINE_NAMES]
    for key in ("sheet_udp_l1", "sheet_visibility_iou", "udp_l1", "visibility_iou"):
        assert math.isfinite(result["parser"][key]), key
    assert "at their own size (128x128)" in capsys.readouterr().out


def test_cli_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["eval", "--no-model", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_cli_needs_weights_or_no_model(data_dir, capsys):
    assert main(["eval", "--data", str(data_dir)]) == 2
    assert "--weights" in capsys.readouterr().err


def test_parser_metrics_exact_answers():
    from conr.training.metrics import parser_metrics

    truth = torch.zeros(1, 4, 8, 8)
    truth[:, :, 2:6, 2:6] = 0.5
    truth[:, 3, 2:6, 2:6] = 1.0
    same = parser_metrics(truth, truth)
    assert same["udp_l1"].item() == 0 and same["visibility_iou"].item() == 1
    shifted = truth.clone()
    shifted[:, :3] += 0.1  # XYZ off by 0.1; visible area half covered
    shifted[:, 3, 2:6, 2:4] = 0
    m = parser_metrics(shifted, truth)
    assert m["udp_l1"].item() == pytest.approx(0.1) and m["visibility_iou"].item() == pytest.approx(0.5)
