"""The correspondence-first family: explicit UDP matching, copying the sheet's own pixels, its
parts' round trips, its errors and warnings, and its training stages."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from conr.errors import ConrError
from conr.models import CharacterSheet, CoNR, CoNRConfig, preset
from conr.models.matching import SurfaceIndex, depth_axis, inner_surface
from conr.models.tilt import tilt
from conr.models.warp import pixel_grid, sample
from conr.render.pipeline import Renderer
from conr.render.weights import load_model, save_safetensors
from conr.training.loop import load_init


def _coded_udp(h: int, w: int, visible: torch.Tensor | None = None) -> torch.Tensor:
    """(4, H, W) UDP in which every pixel shows its own surface point: XYZ = (x/w, y/h, 0.5)."""
    grid = pixel_grid(h, w)[0]
    vis = torch.ones(1, h, w) if visible is None else visible.float()[None]
    xyz = torch.cat([grid[0:1] / w, grid[1:2] / h, torch.full((1, h, w), 0.5)])
    return torch.cat([xyz * vis, vis])


def test_matching_skips_a_band_along_each_views_silhouette():
    udp = torch.zeros(2, 4, 100, 100)
    udp[0, :, 20:80, 30:70] = torch.tensor([0.3, 0.5, 0.7, 1.0])[:, None, None]  # a 60 x 40 figure
    udp[1, :, 50:52, 50:52] = torch.tensor([0.3, 0.5, 0.7, 1.0])[:, None, None]  # a 2 x 2 speck
    inner = inner_surface(udp, margin=0.03)  # 3 px of a 100 px view
    assert inner[0, 3].sum() == 54 * 34 and inner[0, 3, 23:77, 33:67].all()
    assert torch.equal(inner[0, :3, 40, 50], udp[0, :3, 40, 50]) and inner[0, :, 21, 50].abs().sum() == 0
    assert torch.equal(inner[1], udp[1])  # eroding would leave nothing: the view keeps its pixels
    assert torch.equal(inner_surface(udp, margin=0.0), udp)


def test_matching_finds_the_pixel_that_shows_the_same_point():
    sheet = _coded_udp(32, 32)
    # The target shows the sheet's points shifted: target pixel (x, y) shows sheet pixel (x - 3, y + 2).
    target = torch.zeros(4, 32, 32)
    target[:, 0:28, 5:32] = sheet[:, 2:30, 2:29]
    index = SurfaceIndex(sheet[None])
    coords, distance = index.coords(target)
    inside = target[3] > 0.5
    ys, xs = torch.nonzero(inside, as_tuple=True)
    assert torch.equal(coords[0, 0][inside], (xs - 3).float())
    assert torch.equal(coords[0, 1][inside], (ys + 2).float())
    assert float(distance[0, 0][inside].max()) < 1e-6
    assert bool(torch.isinf(distance[0, 0][~inside]).all())  # no surface there: nothing matched


def test_a_view_that_shows_nothing_matches_nothing():
    udp = torch.stack([_coded_udp(16, 16), torch.zeros(4, 16, 16)])
    index = SurfaceIndex(udp)
    assert index.empty_views == [1]
    _, distance = index.coords(_coded_udp(16, 16))
    assert bool(torch.isfinite(distance[0]).all()) and bool(torch.isinf(distance[1]).all())


def test_sampling_at_whole_pixels_copies_them_and_sizes_may_differ():
    x = torch.rand(1, 3, 10, 12)
    coords = torch.tensor([[3.0, 7.0], [11.0, 0.0]]).T.reshape(1, 2, 1, 2)  # (x, y) of two pixels
    out = sample(x, coords)
    assert out.shape == (1, 3, 1, 2)
    assert torch.allclose(out[0, :, 0, 0], x[0, :, 7, 3]) and torch.allclose(out[0, :, 0, 1], x[0, :, 0, 11])


def _sheet_from_udp(model: CoNR, rgb: torch.Tensor, udp: torch.Tensor) -> CharacterSheet:
    """A sheet whose UDP is exact (what a perfect parser would give)."""
    a = udp[:, 3:4]
    return CharacterSheet(torch.cat([rgb * a, a], 1)[None], [], udp, SurfaceIndex(udp))


def _square_view() -> tuple[CoNR, torch.Tensor, torch.Tensor]:
    """An untrained lookup-tiny model, and one 64 px view's exact UDP (1, 4, 64, 64) of a square, its mask."""
    torch.manual_seed(0)
    model = CoNR(preset("lookup-tiny")).eval()
    s = 64
    vis = torch.zeros(s, s, dtype=torch.bool)
    vis[8:56, 8:56] = True
    return model, _coded_udp(s, s, vis)[None], vis


def test_untrained_lookup_shader_copies_the_sheets_own_pixels():
    s = 64
    model, udp, _ = _square_view()
    rgb = torch.rand(1, 3, s, s)
    sheet = _sheet_from_udp(model, rgb, udp)
    # The target shows the sheet's square moved 5 pixels right and 4 down.
    target_udp = torch.zeros(4, s, s)
    target_udp[:, 12:60, 13:61] = udp[0, :, 8:56, 8:56]
    target = CoNR.target_input(target_udp[None])
    with torch.no_grad():
        out = model.render(sheet, target)[0]
    # Alpha is the target's, and the untrained line head's outline around it (at most 4 px wide).
    inside = target_udp[3] > 0
    near = torch.nn.functional.max_pool2d(target_udp[3][None, None], 9, 1, 4)[0, 0] > 0
    assert torch.allclose(out[3][inside], torch.ones(()), atol=1e-4)
    assert out[3][~near].max() < 1e-4
    # Every pixel's colour is the sheet pixel it shows (up to the untrained heads' small residual).
    assert torch.allclose(out[:3, 12:60, 13:61], rgb[0, :, 8:56, 8:56], atol=0.01)


def test_a_sheet_encoded_with_its_true_udp_matches_through_it():
    """encode_sheet(udp=...) (what benchmarks/bench_errors.py measures the parser against) keeps the
    given UDP where the view is opaque, instead of the untrained parser's reading."""
    model, udp, vis = _square_view()
    rgb = torch.rand(1, 3, 64, 64)
    mask = vis.float()[None, None]
    with torch.no_grad():
        sheet = model.encode_sheet(rgb * mask, mask, udp=udp)
        parsed = model.encode_sheet(rgb * mask, mask)
    assert sheet.udp is not None and parsed.udp is not None
    assert torch.equal(sheet.udp[0, :3][:, vis], udp[0, :3][:, vis]) and bool((sheet.udp[0, 3][vis] == 1).all())
    assert not torch.allclose(parsed.udp[0, :3][:, vis], udp[0, :3][:, vis], atol=0.05)


def test_the_lookup_preset_moves_no_match_whatever_its_view_head_says():
    """The bundled family copies from where the match is: corrections learned at 128 px lost right
    pixels on unseen characters, so the `lookup` preset has none (max_correction 0)."""
    assert preset("lookup").lookup.max_correction == 0.0
    s = 64
    tiny, udp, _ = _square_view()
    cfg = preset("lookup-tiny")
    model = CoNR(replace(cfg, lookup=replace(cfg.lookup, max_correction=preset("lookup").lookup.max_correction))).eval()
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        model.shader.view_head.weight.normal_(0, 1.0)  # a head that asks for large corrections
        model.shader.view_head.bias.fill_(3.0)
    sheet = _sheet_from_udp(model, torch.rand(1, 3, s, s), udp)
    trace: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        model.render(sheet, CoNR.target_input(udp), trace)
    assert torch.equal(trace[0]["coords"], trace[0]["initial_coords"])


def _inked_disc(s: int, body: tuple[float, ...], ink: tuple[float, ...] | None) -> torch.Tensor:
    """(1, 1, 4, s, s) premultiplied: a disc of `body` colour, with a 2 px rim of `ink` if given."""
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    r = ((yy - s / 2) ** 2 + (xx - s / 2) ** 2).float().sqrt()
    a = (r < s / 3).float()
    rgb = torch.tensor(body).view(3, 1, 1).expand(3, s, s).clone()
    if ink is not None:
        rgb[:, r >= s / 3 - 2] = torch.tensor(ink).view(3, 1)
    return torch.cat([rgb * a, a[None]])[None, None]


def test_sheet_ink_reads_the_line_colour_and_the_colour_inside_it():
    from conr.models.lookup_shader import sheet_ink

    lined = sheet_ink(_inked_disc(128, (0.9, 0.6, 0.2), (0.1, 0.05, 0.2)))[0]
    assert torch.allclose(lined[:3], torch.tensor([0.1, 0.05, 0.2]), atol=1e-4)
    assert torch.allclose(lined[3:], torch.tensor([0.9, 0.6, 0.2]), atol=1e-4)
    lineless = sheet_ink(_inked_disc(128, (0.9, 0.6, 0.2), None))[0]
    assert torch.allclose(lineless[:3], lineless[3:], atol=1e-4)  # no lines: nothing tells them apart
    # Nothing opaque at all: no colour to read, zeros rather than a crash.
    assert torch.equal(sheet_ink(torch.zeros(1, 2, 4, 64, 64)), torch.zeros(1, 6))


def test_sheet_edge_profile_shows_how_wide_the_line_is():
    """The line head reads the sheet's edge band by band: a 2 px rim shows in the two outer bands."""
    from conr.models.lookup_shader import LINE_BANDS, sheet_ink

    body, ink = (0.9, 0.6, 0.2), (0.1, 0.05, 0.2)
    profile = sheet_ink(_inked_disc(128, body, ink), LINE_BANDS)[0, 6:].view(LINE_BANDS, 4)
    assert torch.allclose(profile[:2, :3], torch.tensor(ink).expand(2, 3), atol=1e-4)
    assert torch.allclose(profile[2:, :3], torch.tensor(body).expand(LINE_BANDS - 2, 3), atol=1e-4)
    assert torch.allclose(profile[:, 3], torch.ones(LINE_BANDS))  # a hard edge: no faint bands


def test_an_outline_half_a_pixel_wide_covers_half_the_pixels_beside_an_edge():
    from conr.models.lookup_shader import ring_coverage

    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    cov = ring_coverage(mask)[0, :, 8]  # (widths, 16): the row through the middle
    # Columns 1, 2, 3 lie 3, 2, 1 px left of the figure; widths are 0, 1/2, 1, 3/2, 2 px.
    expected = [[0, 0, 0], [0, 0, 0.5], [0, 0, 1], [0, 0.5, 1], [0, 1, 1]]
    assert torch.equal(cov[:5, 1:4], torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(cov[:, 4:12], torch.cat([torch.zeros(1, 8), torch.ones(8, 8)]))  # the figure itself


def test_the_outline_is_drawn_as_wide_as_the_line_head_says_in_the_sheets_line_colour():
    from conr.models.lookup_shader import LINE_WIDTHS

    s = 64
    model, udp, vis = _square_view()
    assert model.shader.lines is not None  # lookup-tiny has the line head, as lookup-lines
    ink = (0.2, 0.1, 0.3)
    reference = _inked_disc(s, (0.8, 0.8, 0.7), ink)
    sheet = CharacterSheet(reference, [], udp, SurfaceIndex(udp))
    target = CoNR.target_input(udp)
    with torch.no_grad():
        bias = torch.zeros(LINE_WIDTHS + 6)
        bias[4], bias[LINE_WIDTHS] = 30.0, 30.0  # 2 px wide, the outermost band's colour
        model.shader.lines.net[-1].bias.copy_(bias / model.shader.lines.gain)
        out = model.render(sheet, target)[0]
    grown = torch.zeros(s, s, dtype=torch.bool)
    grown[6:58, 6:58] = True
    ring = grown & ~vis
    ring[[6, 6, 57, 57], [6, 57, 6, 57]] = False  # the outermost corners are rounded off, as by a pen
    assert torch.allclose(out[3][ring], torch.ones(()), atol=1e-4)
    assert torch.allclose(out[:3][:, ring], torch.tensor(ink).view(3, 1), atol=1e-3)
    assert out[3][~grown].max() < 1e-4  # nothing beyond its width


def test_init_widens_a_shader_saved_without_ink(data, tmp_path):
    """Weights of the lookup family saved before the ink head existed seed the ink shader: what they
    learned is kept and, untrained, the line colour has no say."""
    import dataclasses

    torch.manual_seed(0)
    cfg = preset("lookup-tiny")
    old = CoNR(dataclasses.replace(cfg, lookup=dataclasses.replace(cfg.lookup, ink=False, tilt=False)))
    with torch.no_grad():
        for p in old.shader.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "old.safetensors"
    save_safetensors(old, path)
    code, err = _train(data, tmp_path / "run", "--stage", "shader", "--size", "64", "--steps", "1",
                       "--lr", "1e-12", "--init", str(path))
    assert code == 0, err
    assert "shader (widened" in err and "new: lines start untrained" in err  # the line head came later still
    new = load_model(tmp_path / "run")
    assert new.cfg.lookup.ink and not load_model(path).cfg.lookup.ink
    w_old, w_new = old.shader.head[0].weight, new.shader.head[0].weight
    assert torch.allclose(w_new[:, :w_old.shape[1]], w_old, atol=1e-6)
    assert w_new[:, w_old.shape[1]:].abs().max() < 1e-9  # one step at lr 1e-12: still no say


def _sphere_udp(n: int, rot: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
    """(4, n, n) UDP of a sphere seen orthographically, its rest frame rotated by `rot`, each visible
    pixel holding its point (+ `offset` in rest space: a parser's error)."""
    y, x = torch.meshgrid(torch.linspace(-1.2, 1.2, n), torch.linspace(-1.2, 1.2, n), indexing="ij")
    r2 = x * x + y * y
    vis = (r2 < 1).float()
    z = (1 - r2).clamp_min(0).sqrt()
    rest = (rot @ torch.stack([x, y, z]).reshape(3, -1)).reshape(3, n, n) * 0.3 + 0.5
    if offset is not None:
        rest = rest + offset[:, None, None]
    return torch.cat([rest * vis, vis[None]])


def test_matching_counts_a_views_depth_less_where_asked():
    """A sheet view whose depth is read 0.05 too far (in rest space, along the camera's axis) matches a
    sphere's points beside the right pixels; counting depth at a third, the matches move back."""
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5)))[0]
    truth = _sphere_udp(65, rot)
    axis = depth_axis(truth)
    assert axis is not None and abs(float(axis @ rot[:, 2])) > 0.999  # the camera's z in the rest frame
    sheet = _sphere_udp(65, rot, offset=0.05 * rot[:, 2])
    inside = truth[3] > 0.5
    ys, xs = torch.nonzero(inside, as_tuple=True)

    def slide(squeeze: float) -> float:
        coords, _ = SurfaceIndex(sheet[None], depth_squeeze=squeeze).coords(truth)
        return float(((coords[0, 0][inside] - xs) ** 2 + (coords[0, 1][inside] - ys) ** 2).sqrt().mean())

    plain = slide(1.0)
    assert plain > 1.5 and slide(1 / 3) < 0.5 * plain
    exact = SurfaceIndex(truth[None], depth_squeeze=1 / 3).coords(truth)[0]  # exact UDP: still the same pixel
    assert torch.equal(exact[0, 0][inside], xs.float()) and torch.equal(exact[0, 1][inside], ys.float())


def test_tilt_is_how_far_a_spheres_surface_turns_from_the_camera():
    """A sphere seen orthographically, its UDP its own points rotated and scaled (any rigid rest
    frame): the tilt's cosine is the normal's depth part, its sign-free direction the radial one."""
    n = 97
    y, x = torch.meshgrid(torch.linspace(-1.2, 1.2, n), torch.linspace(-1.2, 1.2, n), indexing="ij")
    r2 = x * x + y * y
    vis = (r2 < 1).float()
    z = (1 - r2).clamp_min(0).sqrt()
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))[0]
    rest = (rot @ torch.stack([x, y, z]).reshape(3, -1)).reshape(3, n, n) * 0.3 + 0.5
    feats = tilt(torch.cat([rest * vis, vis[None]])[None])[0]
    inside, angle, sin2 = r2 < 0.8, torch.atan2(y, x), 1 - z * z
    assert (feats[0] - z)[inside].abs().max() < 0.02
    assert (feats[1] - sin2 * torch.cos(2 * angle))[inside].abs().max() < 0.03
    assert (feats[2] - sin2 * torch.sin(2 * angle))[inside].abs().max() < 0.03
    assert feats[:, vis == 0].abs().max() == 0
    # Which way the normal points in the image plane is not in the UDP: the mirrored sphere reads the same.
    mirrored = (rot @ torch.stack([x, y, -z]).reshape(3, -1)).reshape(3, n, n) * 0.3 + 0.5
    assert (tilt(torch.cat([mirrored * vis, vis[None]])[None])[0] - feats)[:, inside].abs().max() < 0.01


def test_lookup_weights_seed_the_tilt_shader_and_draw_the_same_frames(tmp_path):
    """`lookup-tilt` started from weights without tilt (conr train --init) draws their frames until
    trained: the tilt inputs start with no say."""
    import dataclasses

    torch.manual_seed(0)
    cfg = preset("lookup-tiny")
    old = CoNR(dataclasses.replace(cfg, lookup=dataclasses.replace(cfg.lookup, tilt=False))).eval()
    with torch.no_grad():
        for p in old.shader.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "old.safetensors"
    save_safetensors(old, path)
    new = CoNR(cfg).eval()
    logs: list[str] = []
    assert load_init(new, str(path), logs.append) == ("udpparsernet", "shader")
    assert "shader (widened" in logs[0]
    s = 64
    model, udp, _ = _square_view()
    sheet = _sheet_from_udp(old, torch.rand(1, 3, s, s), udp)
    target_udp = torch.zeros(4, s, s)
    target_udp[:, 12:60, 13:61] = udp[0, :, 8:56, 8:56]
    target = CoNR.target_input(target_udp[None])
    with torch.no_grad():
        a, b = old.render(sheet, target), new.render(sheet, target)
    assert torch.equal(a, b)


def test_lookup_config_and_weights_round_trip(tmp_path):
    cfg = preset("lookup")
    assert CoNRConfig.from_dict(json.loads(cfg.to_json())) == cfg
    torch.manual_seed(0)
    model = CoNR(preset("lookup-tiny")).eval()
    path = tmp_path / "lookup.safetensors"
    save_safetensors(model, path)
    loaded = load_model(path)
    assert loaded.parts == ("udpparsernet", "shader")
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def _blind_parser(model: CoNR, visibility: float) -> CoNR:
    """A parser that sees the same visibility everywhere (its last convolution a constant)."""
    conv = model.udpparsernet.final_conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.5, 0.5, 0.5, visibility]))
    return model


def _figure(size: int = 96, alpha: int = 255) -> np.ndarray:
    img = np.zeros((size, size, 4), np.uint8)
    img[10:86, 30:66] = (200, 120, 90, alpha)
    return img


def test_a_sheet_view_where_the_parser_finds_no_body_is_named():
    renderer = Renderer(_blind_parser(CoNR(preset("lookup-tiny")), 0.6), device="cpu")
    # The second view is half transparent: within its alpha the parser's body is never visible.
    with pytest.warns(UserWarning, match="ghost.png: the UDP parser found no body"):
        sheet = renderer.encode_sheet([_figure(), _figure(alpha=100)], names=["front.png", "ghost.png"])
    assert sheet.index.empty_views == [1]


def test_a_sheet_with_no_body_anywhere_is_refused():
    renderer = Renderer(_blind_parser(CoNR(preset("lookup-tiny")), 0.0), device="cpu")
    with pytest.raises(ConrError, match="found no body in any sheet view"):
        renderer.encode_sheet([_figure()], names=["front.png"])


def test_frames_are_drawn_at_their_own_size_up_to_the_cap():
    renderer = Renderer(_blind_parser(CoNR(preset("lookup-tiny")), 0.6), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sheet = renderer.encode_sheet([_figure(96)])
    assert sheet.reference.shape[-1] == 76  # the view's own square crop: no resampling
    big = Renderer(renderer.model, device="cpu", size=256).encode_sheet([_figure(96) .repeat(4, 0).repeat(4, 1)])
    assert big.reference.shape[-1] == 256  # a 304-px crop is capped at the renderer's size


# ---------------------------------------------------------------- training in stages


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 characters, 2 frames each, 4 sheet views, 128 px."""
    from conr.engine.synth import synthesize

    out = tmp_path_factory.mktemp("lookup") / "synth"
    synthesize(out, seed=0, count=3, frames=2, size=128, views=4)
    return out


def _train(data, out, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    from conr.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--data", str(data), "--out", str(out), "--preset", "lookup-tiny", "--batch-size", "2",
                     "--views", "2:2", "--val-characters", "1", "--workers", "0", "--device", "cpu", "--quiet",
                     "--save-every", "2", "--sample-every", "2", *extra])
    return code, err.getvalue()


def test_parser_then_shader_stages_train_only_their_parts(data, tmp_path):
    torch.set_num_threads(1)
    code, err = _train(data, tmp_path / "parser", "--stage", "parser", "--size", "64", "--steps", "2")
    assert code == 0, err
    first = load_model(tmp_path / "parser")
    torch.manual_seed(0)  # the run's seed: its untouched shader is this initial one
    start = CoNR(preset("lookup-tiny"))
    assert not torch.equal(first.udpparsernet.final_conv.weight, start.udpparsernet.final_conv.weight)
    for (k, a), (_, b) in zip(first.shader.state_dict().items(), start.shader.state_dict().items()):
        assert torch.equal(a, b), k

    code, err = _train(data, tmp_path / "shader", "--stage", "shader", "--size", "96", "--steps", "2",
                       "--init", str(tmp_path / "parser"))
    assert code == 0, err
    assert "init: udpparsernet from" in err and "not taken, as that run never trained it: shader" in err
    second = load_model(tmp_path / "shader")
    for (k, a), (_, b) in zip(second.udpparsernet.state_dict().items(), first.udpparsernet.state_dict().items()):
        assert torch.equal(a, b), k  # the shader stage leaves the parser alone
    assert not torch.equal(second.shader.head[-1].weight, first.shader.head[-1].weight)
    assert second.cfg.image_size == preset("lookup-tiny").image_size == 128  # its cap, not the training size

    # A parser run that started from a whole model holds that model's shader, and passes it on.
    code, err = _train(data, tmp_path / "parser2", "--stage", "parser", "--size", "64", "--steps", "2",
                       "--init", str(tmp_path / "shader"), "--crop-scale", "1.05:1.3")
    assert code == 0, err
    assert json.loads((tmp_path / "parser2" / "run.json").read_text())["config"]["crop_scale"] == [1.05, 1.3]
    code, err = _train(data, tmp_path / "shader2", "--stage", "shader", "--size", "64", "--steps", "1",
                       "--lr", "1e-12", "--init", str(tmp_path / "parser2"))
    assert code == 0, err
    assert "init: udpparsernet, shader from" in err
    third = load_model(tmp_path / "shader2")
    assert torch.allclose(third.shader.head[-1].weight, second.shader.head[-1].weight, atol=1e-6)


def test_the_line_head_learns_the_outline_the_manifest_gives(data, tmp_path):
    """`conr synth` writes how it drew each outline; the samples carry it in their own pixels, and
    `--loss-lines` trains the line head on it."""
    import csv
    import json

    from conr.training.data import NativeWindow, SampleSet, read_data

    shading = json.loads((data / "manifest.json").read_text())["characters"][0]["style"]["shading"]
    chars = read_data([data])
    assert chars[0].outline == (shading["outline_px"], *shading["outline_colour"])
    sample = SampleSet(chars, 128, jitter=NativeWindow(128), flow=False)[0]  # the frames' own scale
    if shading["outline_px"] > 0:
        expected = shading["outline_px"] * 128 / 512 * 128 / _padded(sample, chars[0])
        assert abs(float(sample["outline"][0]) - expected) < 1e-5
    code, err = _train(data, tmp_path / "shader", "--stage", "shader", "--size", "64", "--steps", "2",
                       "--loss-lines", "1")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "shader" / "metrics.csv").open()))
    assert float(rows[0]["loss/lines"]) > 0 and float(rows[-1]["val/lines"]) > 0
    # --stage lines: the line head alone learns, nothing is rendered.
    code, err = _train(data, tmp_path / "lines", "--stage", "lines", "--size", "64", "--steps", "2",
                       "--loss-lines", "1", "--lr", "1e-2", "--init", str(tmp_path / "shader"))
    assert code == 0, err
    before, after = load_model(tmp_path / "shader").state_dict(), load_model(tmp_path / "lines").state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("shader.lines.") for k in changed), changed
    rows = list(csv.DictReader((tmp_path / "lines" / "metrics.csv").open()))
    assert set(k for k in rows[0] if k.startswith("loss/") and rows[0][k]) == {"loss/lines", "loss/total"}


def test_init_leaves_out_a_module_the_architecture_lacks(tmp_path):
    """Weights with the line head seed a model without one (going back to `lookup`): the rest is
    taken whole."""
    from conr.training.loop import load_init

    torch.manual_seed(0)
    lined = CoNR(preset("lookup-tiny"))
    with torch.no_grad():
        for p in lined.shader.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "lined.safetensors"
    save_safetensors(lined, path)
    cfg = preset("lookup-tiny")
    plain = CoNR(replace(cfg, lookup=replace(cfg.lookup, line_width=False)))
    said: list[str] = []
    load_init(plain, str(path), said.append)
    assert "shader (left out: lines)" in said[0]
    for k, v in plain.shader.state_dict().items():
        assert torch.equal(v, lined.shader.state_dict()[k]), k


@pytest.mark.parametrize("extra, message", [
    (("--preset", "tiny"), "--stage lines trains the lookup shader's line head, which --preset tiny has not"),
    (("--loss-lines", "0"), "--stage lines learns from --loss-lines alone, which is 0"),
])
def test_the_lines_stage_is_refused_where_it_has_nothing_to_learn(data, tmp_path, capsys, extra, message):
    code, err = _train(data, tmp_path / "run", "--stage", "lines", "--steps", "1", *extra)
    assert code != 0 and message in err
    assert not (tmp_path / "run").exists()


def _padded(sample, char) -> int:
    from conr.files.udp import read_udp
    from conr.render.preprocess import square_crop

    udp = read_udp(char.frames[0][0])
    crop = square_crop((udp[:, :, 3] * 255).clip(0, 255).astype("uint8"))
    return crop.padded_h


def test_the_shader_trains_at_the_frames_own_pixel_scale(data):
    """The lookup family's shader draws at the frames' own size, so its training windows are not
    zoomed: a sample's target is the frame's own pixels, shifted, never resampled."""
    from conr.files.udp import read_udp
    from conr.training.data import NativeWindow, SampleKey, SampleSet, read_data

    chars = read_data([data])
    ds = SampleSet(chars, 128, jitter=NativeWindow(128))
    sample = ds[SampleKey(0, 2, seed=3)]
    frame = read_udp(chars[0].frames[0][0])
    # Every visible pixel of the frame is in the window, at the same scale: the same pixel count.
    assert int((sample["target_alpha"] > 0.5).sum()) == int((frame[:, :, 3] > 0.5).sum())
    zoomed = SampleSet(chars, 128)[SampleKey(0, 2, seed=3)]  # the CINN family's random resized crops
    assert int((zoomed["target_alpha"] > 0.5).sum()) != int((frame[:, :, 3] > 0.5).sum())


def test_init_from_weights_of_another_architecture_is_refused(data, tmp_path):
    other = tmp_path / "small.safetensors"
    save_safetensors(CoNR(preset("small")), other)  # another parser, no lookup shader
    code, err = _train(data, tmp_path / "run", "--stage", "shader", "--size", "128", "--steps", "1",
                       "--init", str(other))
    assert code == 2
    assert "no part of these weights fits" in err


# ---------------------------------------------------------------- measured at the frames' size


def test_frame_size_evaluation_puts_the_model_beside_the_baselines(data):
    from conr.training.data import read_data
    from conr.training.evaluate import evaluate_frames, format_frames_table

    torch.manual_seed(0)
    renderer = Renderer(CoNR(preset("lookup-tiny")), device="cpu")
    result = evaluate_frames(renderer, read_data([data]), progress=False)
    assert result["frame_size"] == [128, 128] and result["frames"] == 6
    overall = result["overall"]
    assert set(overall) == {"model", "copy", "udp_nn"}
    assert overall["udp_nn"]["right_pixels"] > overall["copy"]["right_pixels"]
    assert "udp_nn" in format_frames_table(result)


def test_temporal_change_counts_only_pixels_whose_body_point_stays_put():
    from conr.training.metrics import temporal_change

    udp = _coded_udp(8, 8)[None]
    frame = torch.zeros(1, 4, 8, 8)
    frame[:, 3] = 1
    brighter = frame.clone()
    brighter[:, :3] = 0.1
    assert temporal_change(frame, frame, udp, udp) == 0.0
    assert temporal_change(frame, brighter, udp, udp) == pytest.approx(0.1)
    moved = udp.clone()
    moved[:, 0] += 0.01  # every point moved: nothing to compare
    assert temporal_change(frame, brighter, udp, moved) is None


# ---------------------------------------------------------------- conr parse


def test_conr_parse_writes_udp_pictures_and_a_point_cloud(data, tmp_path, capsys):
    from conr.cli import main
    from conr.files.io import read_frame
    from conr.files.udp import read_udp

    sheet = data / "char_0000" / "sheet"
    out, ply = tmp_path / "parsed", tmp_path / "sheet.ply"
    assert main(["parse", str(sheet), "--out", str(out), "--ply", str(ply), "--device", "cpu"]) == 0
    views = sorted(sheet.glob("*.png"))
    total = 0
    for view in views:
        udp = read_udp(out / f"{view.stem}.npz")
        image = read_frame(view)
        assert udp.shape == image.shape[:2] + (4,)
        picture = read_frame(out / f"{view.stem}.png")
        vis = udp[:, :, 3] > 0.5
        assert np.array_equal(picture[:, :, 3] > 0, vis)
        assert vis.any() and not (vis & (image[:, :, 3] == 0)).any()  # a body, and only inside the cut-out
        total += int((vis & (image[:, :, 3] > 127)).sum())
    head = ply.read_bytes()[:400].split(b"end_header\n")[0].decode()
    assert f"element vertex {total}" in head
    assert ply.stat().st_size == len(head) + len("end_header\n") + total * 15  # 3 floats, 3 bytes
    assert "the parser sees a body in" in capsys.readouterr().err
    # An existing folder is not replaced unless asked.
    assert main(["parse", str(sheet), "--out", str(out), "--device", "cpu"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--steps", "0", "--steps 0: must be from 1 to 100,000,000"),
    ("--batch-size", "0", "--batch-size 0: must be from 1 to 65,536"),
    ("--lr", "nan", "--lr nan: must be from"),
    ("--lr", "-1", "--lr -1.0: must be from"),
    ("--loss-flow", "-2", "argument --loss-flow: -2 is out of range (at least 0)"),
])
def test_out_of_range_training_options_are_refused_before_anything_is_made(data, tmp_path, option, value, message):
    code, err = _train(data, tmp_path / "run", "--stage", "shader", "--size", "96", option, value)
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()  # no folder left to block the next run


def test_an_unknown_preset_is_refused_by_name(data, tmp_path):
    from conr.cli import main

    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "huge", "--quiet"]) == 2


def test_the_parser_stage_sees_each_image_mirrored_half_the_time_with_its_udp(data):
    from conr.training.data import SampleKey, SampleSet, read_data

    chars = read_data([data])
    plain = SampleSet(chars, 128, jitter=None, flow=False)
    mirrored = SampleSet(chars, 128, jitter=None, flow=False, mirror=True)
    images = [("target_rgba", "target_alpha", "target_udp", None)]
    images += [("sheet_rgb", "sheet_alpha", "sheet_udp", v) for v in range(4)]
    flips = []
    for seed in range(6):
        a, b = plain[SampleKey(0, 4, seed)], mirrored[SampleKey(0, 4, seed)]
        for rgb, alpha, udp, view in images:
            def pick(sample, key):
                return sample[key] if view is None else sample[key][view]

            flip = not torch.equal(pick(a, rgb), pick(b, rgb))
            flips.append(flip)
            turn = (lambda t: t.flip(-1)) if flip else (lambda t: t)
            assert torch.equal(pick(b, rgb), turn(pick(a, rgb)))
            assert torch.equal(pick(b, alpha), turn(pick(a, alpha)))
            was, now = turn(pick(a, udp)), pick(b, udp)
            assert torch.equal(now[1:], was[1:])  # Y, Z and visibility go with the pixels
            vis = was[3] > 0.5
            assert torch.allclose(now[0][vis], (1 - was[0] if flip else was[0])[vis], atol=1e-6)
    assert 0.25 < sum(flips) / len(flips) < 0.75
    with pytest.raises(ValueError, match="correspondences"):
        SampleSet(chars, 128, mirror=True)
