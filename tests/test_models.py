"""The networks: checkpoint layout, configs, save/load round trips, view handling."""

from __future__ import annotations

import json

import pytest
import torch

from conr.errors import ConrError
from conr.models import CoNR, CoNRConfig, preset
from conr.render.weights import load_model, read_original, save_safetensors
from parity_weights import KEYS


def test_official_preset_has_the_release_checkpoint_layout():
    files = json.loads(KEYS.read_text())["files"]
    with torch.device("meta"):
        model = CoNR(preset("official"))
    for fname, keys in files.items():
        sd = model.part(fname[:-4]).state_dict()
        assert list(sd) == list(keys), fname  # same keys, same registration order
        assert {k: list(v.shape) for k, v in sd.items()} == keys, fname


@pytest.mark.parametrize("name", ["official", "small", "tiny"])
def test_config_round_trips_through_json(name):
    cfg = preset(name)
    assert CoNRConfig.from_dict(json.loads(cfg.to_json())) == cfg


def _tiny_inputs(views=3, frames=2, size=128):
    torch.manual_seed(1)
    images = torch.rand(views, 3, size, size)
    masks = (torch.rand(views, 1, size, size) > 0.3).float()
    target = torch.rand(frames, 4, size, size)
    return images, masks, target


def test_tiny_model_renders_rgba_in_unit_range():
    torch.manual_seed(0)
    model = CoNR(preset("tiny")).eval()
    images, masks, target = _tiny_inputs()
    with torch.no_grad():
        sheet = model.encode_sheet(images, masks, with_udp=True)
        rgba = model.render(sheet, target)
    assert rgba.shape == (2, 4, 128, 128)
    assert sheet.udp.shape == (3, 4, 128, 128)
    assert 0 <= float(rgba.min()) and float(rgba.max()) <= 1
    # RGB is premultiplied: never brighter than alpha
    assert bool((rgba[:, :3] <= rgba[:, 3:4] + 1e-6).all())


def test_frames_in_a_batch_render_as_they_do_alone():
    torch.manual_seed(0)
    model = CoNR(preset("tiny")).eval()
    images, masks, target = _tiny_inputs(frames=3)
    with torch.no_grad():
        sheet = model.encode_sheet(images, masks)
        together = model.render(sheet, target)
        alone = torch.cat([model.render(sheet, target[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_view_order_does_not_matter():
    """The views collaborate through a softmax over the view dimension: a permutation-invariant fusion."""
    torch.manual_seed(0)
    model = CoNR(preset("tiny")).eval()
    images, masks, target = _tiny_inputs(views=3)
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        a = model.render(model.encode_sheet(images, masks), target)
        b = model.render(model.encode_sheet(images[perm], masks[perm]), target)
    assert torch.allclose(a, b, atol=1e-5)


def test_safetensors_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = CoNR(preset("tiny")).eval()
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path)
    loaded = load_model(path)
    assert loaded.cfg == model.cfg
    images, masks, target = _tiny_inputs()
    with torch.no_grad():
        a = model.render(model.encode_sheet(images, masks), target)
        b = loaded.render(loaded.encode_sheet(images, masks), target)
    assert torch.equal(a, b)


def test_config_json_beside_the_file_is_used_when_metadata_has_none(tmp_path):
    from safetensors.torch import save_file

    from conr.render.weights import flatten

    model = CoNR(preset("tiny"))
    sds = {p: model.part(p).state_dict() for p in ("udpparsernet", "target_pose_encoder", "shader", "rgbadecodernet")}
    path = tmp_path / "w.safetensors"
    save_file(flatten(sds), str(path))
    with pytest.raises(ConrError, match="no model config"):
        load_model(path)
    (tmp_path / "config.json").write_text(model.cfg.to_json())
    assert load_model(path).cfg == model.cfg


def _write_tiny_original(folder, drop=None):
    folder.mkdir()
    model = CoNR(preset("tiny"))
    for part in ("udpparsernet", "target_pose_encoder", "shader", "rgbadecodernet"):
        if part != drop:
            torch.save(model.part(part).state_dict(), folder / f"{part}.pth")
    return folder


def test_missing_weight_file_is_named(tmp_path):
    folder = _write_tiny_original(tmp_path / "w", drop="shader")
    with pytest.raises(ConrError) as err:
        load_model(folder)
    assert "shader.pth" in str(err.value) and str(folder) in str(err.value)


def test_wrong_architecture_names_the_mismatched_keys(tmp_path):
    folder = _write_tiny_original(tmp_path / "w")
    with pytest.raises(ConrError) as err:
        load_model(folder)  # a folder of .pth files means the official architecture
    msg = str(err.value)
    assert "does not match the model architecture" in msg
    assert "wrong shapes: backbone.0.weight" in msg
    assert str(folder) in msg


def test_missing_and_unexpected_keys_are_named(tmp_path):
    from conr.render.weights import check_state_dict

    part = CoNR(preset("tiny")).rgbadecodernet
    sd = dict(part.state_dict())
    del sd["conv_rgba.0.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConrError) as err:
        check_state_dict(part, sd, tmp_path / "rgbadecodernet.pth")
    msg = str(err.value)
    assert "missing keys: conv_rgba.0.bias" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "rgbadecodernet.pth" in msg


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_in_weights_are_refused(tmp_path, capsys):
    folder = _write_tiny_original(tmp_path / "w")
    torch.save({"x": Evil()}, folder / "shader.pth")
    with pytest.raises(ConrError) as err:
        read_original(folder)
    assert "shader.pth" in str(err.value)
    assert "this must never run" not in capsys.readouterr().out


def test_gradients_reach_the_shader_after_inference_passes():
    """Inference caches weights derived for speed (the split first convolution, Winograd
    transforms); a training step afterwards must still differentiate through the weights."""
    torch.manual_seed(0)
    model = CoNR(preset("tiny"))
    images, masks, target = _tiny_inputs(frames=1)
    with torch.no_grad():
        sheet = model.encode_sheet(images, masks)
        before = model.render(sheet, target)
    model.render(sheet, target).mean().backward()
    first = model.shader.decoder_blocks[1].conv0[0].weight  # its shared-input half is the cached split
    assert first.grad is not None and bool(first.grad.abs().sum() > 0)
    assert all(p.grad is not None for p in model.shader.parameters())
    with torch.no_grad():
        first.add_(0.01)  # an optimiser step: the cached split must follow
        after = model.render(sheet, target)
    assert not torch.equal(before, after)
    model.shader.decoder_blocks[1].__dict__.pop("_split_cache")
    with torch.no_grad():
        assert torch.equal(model.render(sheet, target), after)
