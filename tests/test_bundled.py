"""The model bundled in the package: it loads, says where it came from, renders a held-out character
(seed 900001, never trained on) better than copying the front sheet view, at the frames' own size as
`conr render` draws them, and its default size is its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from conr.cli import main
from conr.engine.synth import synthesize
from conr.files.io import read_frame
from conr.render.pipeline import Renderer
from conr.training.data import read_data
from conr.training.evaluate import evaluate_frames
from conr.render.weights import BUNDLED, load_model


def test_the_bundled_file_is_small_and_carries_its_card():
    assert BUNDLED.stat().st_size <= 30 * 2**20
    with safe_open(str(BUNDLED), "pt") as f:
        meta = f.metadata()
    card = json.loads(meta["model_card"])
    for key in ("preset", "image_size", "data", "training", "step", "wall_time_s", "hardware", "heldout"):
        assert key in card, key
    assert card["image_size"] == load_model().cfg.image_size
    held = card["heldout"]["overall"]
    assert held["model"]["right_pixels"] > held["copy"]["right_pixels"]


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    data = tmp_path_factory.mktemp("heldout") / "synth"
    synthesize(data, seed=900001, count=1, frames=2, size=256, views=4)
    return data


def test_the_bundled_model_beats_copy_on_a_held_out_character(heldout):
    result = evaluate_frames(Renderer.from_weights(None, device="cpu"), read_data([heldout]), progress=False,
                             images=True, baselines=("copy",))
    model, copy = result["overall"]["model"], result["overall"]["copy"]
    report = f"model {model}\ncopy {copy}"
    assert model["right_pixels"] > copy["right_pixels"], report
    assert model["l1_inside"] < copy["l1_inside"], report
    assert model["ssim"] > copy["ssim"], report
    # Pose images (image mode): the bundled parser predicts their UDP
    image = result["overall"]["model_image"]
    assert image["right_pixels"] > copy["right_pixels"], f"{report}\nimage mode {image}"
    assert result["parser"]["visibility_iou"] > 0.8, result["parser"]


def test_the_default_size_is_the_models_own(heldout, tmp_path, capsys):
    char = heldout / "char_0000"
    common = ["render", "--sheets", str(char / "sheet"), "--poses", str(char / "udp"), "--quiet"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    own = str(load_model().cfg.image_size)
    assert main([*common, "--out", str(tmp_path / "own"), "--size", own]) == 0
    for frame in sorted((tmp_path / "default").glob("*.png")):
        assert np.array_equal(read_frame(frame), read_frame(tmp_path / "own" / frame.name)), frame.name


@pytest.mark.slow
def test_render_without_weights_uses_the_bundled_model(capsys, sheets, udp_poses, tmp_path):
    out = tmp_path / "out"
    code = main(["render", "--sheets", str(sheets), "--poses", str(udp_poses), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "bundled model" in err
    frames = sorted(out.glob("*.png"))
    assert frames
    alpha = read_frame(frames[0])[:, :, 3]
    assert 0 < np.count_nonzero(alpha) < alpha.size  # a figure, not an empty or a full frame


def _front_and_back(heldout, frames: bool = False):
    """The held-out character's front and back sheet views (or its two pose frames, as images) as
    rendering prepares them, and their true UDP."""
    import torch

    from conr.files.io import read_rgba
    from conr.files.udp import read_udp
    from conr.render.preprocess import prepare_image, prepare_udp

    renderer = Renderer.from_weights(None, device="cpu")
    character = read_data([heldout])[0]
    sheet = [(img, udp) for udp, img in character.frames[:2]] if frames else character.sheet[:2]
    imgs = [read_rgba(img) for img, _ in sheet]
    size = renderer.sheet_size(imgs)
    prepared = [prepare_image(i, size) for i in imgs]
    truth = torch.stack([prepare_udp(read_udp(u), size, p.crop).label for p, (_, u) in zip(prepared, sheet)])
    return renderer.model, torch.stack([p.rgb for p in prepared]), truth


def test_the_sheet_is_read_closer_to_its_true_udp_by_the_ensemble(heldout):
    import torch

    from conr.training.metrics import parser_metrics

    model, rgb, truth = _front_and_back(heldout)
    with torch.inference_mode():
        single = parser_metrics(model.parse(rgb), truth)["udp_l1"]
        ensemble = parser_metrics(model.parse_sheet(rgb), truth)["udp_l1"]
    assert bool((ensemble < single).all()), (single, ensemble)


def test_the_sheet_is_read_closer_to_its_true_udp_with_a_margin(heldout):
    import dataclasses

    import torch

    from conr.training.metrics import parser_metrics

    model, rgb, truth = _front_and_back(heldout)
    assert model.cfg.lookup is not None and model.cfg.lookup.parser_zoom < 1
    with torch.inference_mode():
        margin = parser_metrics(model.parse_sheet(rgb), truth)["udp_l1"]
        model.cfg = dataclasses.replace(model.cfg, lookup=dataclasses.replace(model.cfg.lookup, parser_zoom=1.0))
        tight = parser_metrics(model.parse_sheet(rgb), truth)["udp_l1"]
    assert float(margin.mean()) < float(tight.mean()), (tight, margin)


def test_a_mirrored_sheet_view_is_read_as_the_mirrored_body(heldout):
    import torch

    model, rgb, _ = _front_and_back(heldout)
    with torch.inference_mode():
        udp = model.parse_sheet(rgb)
        mirrored = model.parse_sheet(rgb.flip(-1)).flip(-1)
    assert torch.allclose(mirrored[:, 0], 1 - udp[:, 0], atol=1e-5)
    assert torch.allclose(mirrored[:, 1:], udp[:, 1:], atol=1e-5)


def test_pose_images_are_read_as_the_sheet_views_are(heldout):
    import torch

    from conr.training.metrics import parser_metrics

    model, rgb, truth = _front_and_back(heldout, frames=True)
    with torch.inference_mode():
        pose = model.parse_pose(rgb)
        assert torch.equal(pose, model.parse_sheet(rgb))
        single = parser_metrics(model.parse(rgb), truth)["udp_l1"]
    assert float(parser_metrics(pose, truth)["udp_l1"].mean()) < float(single.mean()), single
