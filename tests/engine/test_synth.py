"""Procedural characters, motions and the `conr synth` command, end to end on tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conr.cli import main
from conr.engine.camera import fit_camera
from conr.engine.motions import JOINT_LIMITS, dance, procedural_motion, random_poses, walk
from conr.engine.procedural import HUMANOID_BONES, character
from conr.engine.renderer import render_rgba
from conr.engine.scene import pose_by_motion


@pytest.fixture(scope="module")
def girl():
    return character(3)


def test_characters_vary_by_seed_and_are_deterministic() -> None:
    a, b, a2 = character(1)[0], character(2)[0], character(1)[0]
    assert a == a2
    assert a != b
    styles = {character(s)[0].hair_style for s in range(12)}
    assert len(styles) >= 3


def test_character_mesh_is_well_formed(girl) -> None:
    spec, mesh = girl
    assert mesh.faces.max() < mesh.vertices.shape[0]
    assert torch.allclose(mesh.weights.sum(1), torch.ones(mesh.vertices.shape[0]), atol=1e-5)
    assert mesh.skeleton.names == HUMANOID_BONES
    height = float(mesh.vertices[:, 1].max() - mesh.vertices[:, 1].min())
    assert 1.3 < height < 1.8
    # Hair colour and eye colour are both present among the face colours.
    cols = {tuple(round(float(c), 3) for c in row) for row in mesh.face_colors}
    assert tuple(round(c, 3) for c in spec.hair) in cols and tuple(round(c, 3) for c in spec.eyes) in cols


def test_rgba_render_has_character_on_transparent_background(girl) -> None:
    spec, mesh = girl
    cam = fit_camera(mesh.vertices, 96, 96)
    rgba = render_rgba(mesh, mesh.vertices, cam)
    alpha = rgba[..., 3]
    assert alpha[0].max() == 0 and alpha[:, 0].max() == 0  # a transparent border
    assert 0.05 < float((alpha > 0.5).float().mean()) < 0.6
    # Head near the top: the hair colour is in the top rows of the figure (below an ahoge's tip).
    assert spec.hat == "none"
    rows = torch.nonzero(alpha.max(1).values > 0.5).squeeze(1)
    row = int(rows[0]) + max(4, len(rows) // 12)
    top = rgba[row, :, :3][alpha[row] > 0.9]
    hair = torch.tensor(spec.hair)
    assert torch.any((top - hair).abs().max(1).values < 0.3)


def test_motions_are_proper_rotations_and_walk_alternates_legs() -> None:
    m = walk(30)
    r = m.rotations
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand_as(r), atol=1e-5)
    li, ri = HUMANOID_BONES.index("leftUpperLeg"), HUMANOID_BONES.index("rightUpperLeg")
    # Forward swing shows as the thigh's down vector gaining +z; the legs are in opposite phase.
    down = torch.tensor([0.0, -1.0, 0.0])
    lz, rz = (r[:, li] @ down)[:, 2], (r[:, ri] @ down)[:, 2]
    assert lz.max() > 0.3 and rz.max() > 0.3
    assert float((lz * rz).mean()) < 0
    assert dance(20).num_frames == 20


def test_random_poses_respect_joint_limits() -> None:
    m = random_poses(16, seed=5)
    e = m.rotations
    knee = HUMANOID_BONES.index("leftLowerLeg")
    # A knee only bends backwards: the shin's down vector never gains +z.
    shin = e[:, knee] @ torch.tensor([0.0, -1.0, 0.0])
    assert torch.all(shin[:, 2] <= 1e-6)
    assert JOINT_LIMITS["leftLowerLeg"][0] == (0, 110)
    assert not torch.allclose(m.rotations[0], m.rotations[1])


def test_posed_sequence_keeps_feet_on_the_ground(girl) -> None:
    _, mesh = girl
    posed, missing = pose_by_motion(mesh, procedural_motion("walk", 10))
    assert missing == []
    floor = posed[..., 1].min(1).values
    assert float(floor.max() - floor.min()) < 0.08


def _run_synth(out: Path, *extra: str) -> int:
    return main(["synth", "--out", str(out), "--size", "48", "--poses-per-character", "2", "--sheet-views", "2",
                 "--seed", "7", *extra])


def test_synth_writes_manifest_sheets_udp_and_targets(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert _run_synth(out, "--motion", "wave", "--styles", "classic") == 0  # clean cut-out edges
    manifest = json.loads((out / "manifest.json").read_text())
    ch = manifest["characters"][0]
    assert ch["seed"] == 7 and ch["motion"] == {"name": "wave", "frames": 2, "fps": 30.0}
    assert len(ch["sheet"]) == 2 and len(ch["udp"]) == 2 and len(ch["target"]) == 2
    sheet = cv2.imread(str(out / ch["id"] / ch["sheet"][0]["file"]), cv2.IMREAD_UNCHANGED)
    assert sheet.shape == (48, 48, 4) and sheet[..., 3].max() == 255 and sheet[0, 0, 3] == 0
    # Each sheet view comes with its UDP, rendered with the same camera: same silhouette.
    sheet_udp = np.load(out / ch["id"] / ch["sheet"][0]["udp"])["i"]
    assert np.all(sheet[..., 3][sheet_udp[..., 3] == 1] > 0)
    assert (sheet_udp[..., 3] == 1).sum() > 0.5 * (sheet[..., 3] == 255).sum()  # the ink outline is the rest
    udp = np.load(out / ch["id"] / ch["udp"][0])["i"]
    assert udp.shape == (48, 48, 4) and udp.dtype == np.float32
    vis = udp[..., 3]
    assert set(np.unique(vis)) == {0.0, 1.0}
    assert np.all(udp[vis == 0] == 0) and udp.max() <= 1
    target = cv2.imread(str(out / ch["id"] / ch["target"][0]), cv2.IMREAD_UNCHANGED)
    # The target's silhouette contains the UDP's (the outline only adds pixels around it).
    assert np.all(target[..., 3][vis == 1] > 0)
    assert not list(tmp_path.glob(".*partial"))


def test_synth_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    assert _run_synth(tmp_path / "a") == 0 and _run_synth(tmp_path / "b") == 0
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.suffix == ".npz":
            assert np.array_equal(np.load(f)["i"], np.load(tmp_path / "b" / f.relative_to(tmp_path / "a"))["i"])
        elif f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f


def test_synth_refuses_a_non_empty_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _run_synth(out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (["--sheet-views", "9"], "argument --sheet-views/--views: 9 is out of range (1 to 8)"),
    (["--size", "8"], "argument --size: 8 is out of range (16 to 8192)"),
    (["--characters", "0"], "argument --characters/--count: 0 is out of range (1 to 100000)"),
    (["--device", "nonsense"], "--device 'nonsense' is not a device"),
    (["--styles", "cel,watercolor"], "unknown style 'watercolor'"),
    (["--styles", ","], "--styles: unknown style"),
    (["--styles", "cel", "--shading", "flat"], "--styles cannot be combined with --shading"),
    (["--style-seed", "-1"], "argument --style-seed: -1 is out of range"),
    (["--style-seed", "x"], "argument --style-seed: 'x' is not a whole number"),
    (["--detail", "1000"], "argument --detail: 1000 is out of range (0.1 to 4)"),
    (["--detail", "nan"], "argument --detail: 'nan' is not a finite number"),
    (["--yaw", "inf"], "argument --yaw: 'inf' is not a finite number"),
    (["--poses-per-character", "100000000"], "argument --poses-per-character/--frames: 100000000 is out of range"),
])
def test_synth_rejects_bad_arguments(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_procedural_motions_follow_the_frame_rate() -> None:
    assert walk(None, fps=60).num_frames == 60 and walk(None).num_frames == 30
    assert dance(None, fps=15).num_frames == 30
    # The same instant of the cycle at two frame rates is the same pose.
    assert torch.allclose(walk(None, fps=60).rotations[20], walk(None, fps=30).rotations[10], atol=1e-6)


def test_thread_count_is_validated(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path / "o"), "--threads", "0"]) == 2
    assert "argument --threads: 0 is out of range (1 to 256)" in capsys.readouterr().err


def test_synth_sheets_and_udp_pass_conr_render_readers(tmp_path: Path) -> None:
    from conr.files.io import list_inputs, read_rgba
    from conr.files.udp import UDP_EXTS, read_udp

    out = tmp_path / "data"
    assert _run_synth(out) == 0
    ch = out / "char_0000"
    for png in list_inputs(ch / "sheet", {".png"}, "character sheet"):
        rgba = read_rgba(png)
        assert rgba.shape[:2] == (48, 48) and rgba[..., 3].max() > 0
    frames = list_inputs(ch / "udp", UDP_EXTS, "poses")
    assert len(frames) == 2 and read_udp(frames[0]).shape == (48, 48, 4)


def test_random_target_poses_are_the_default(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), "--size", "32", "--characters", "2", "--poses-per-character", "3",
                 "--sheet-views", "1", "--seed", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["seed"] for c in manifest["characters"]] == [4, 5]
    assert all(c["motion"]["name"] == "random" and len(c["udp"]) == 3 for c in manifest["characters"])


def test_flat_shading_without_outline_uses_only_base_colours(girl) -> None:
    from conr.engine.renderer import make_style

    spec, mesh = girl
    cam = fit_camera(mesh.vertices, 64, 64)
    rgba = render_rgba(mesh, mesh.vertices, cam, make_style("flat", outline=False), ssaa=1)
    solid = rgba[..., 3] == 1
    colours = {tuple(c) for c in (mesh.face_colors * 255).round().int().tolist()}
    for tex in mesh.textures:  # the skirt's simple texture
        colours |= {tuple(c) for c in tex[..., :3].reshape(-1, 3).int().tolist()}
    got = {tuple(c) for c in (rgba[solid][:, :3] * 255).round().int().tolist()}
    assert got <= colours  # no shadow tone, no ink
    assert (rgba[..., 3] > 0).sum() == solid.sum()  # no outline ring, no supersampled edges


def test_seeds_draw_simple_textures_on_skirts_and_socks() -> None:
    specs = [character(s)[0] for s in range(40)]
    assert {sp.skirt_pattern for sp in specs} == {"plain", "plaid", "stripes", "dots", "gradient"}
    spec, mesh = character(next(s for s, sp in enumerate(specs) if sp.outfit == "skirt" and sp.skirt_pattern == "plaid"))
    assert len(mesh.textures) >= 1 and (mesh.face_texture >= 0).any()
    assert all(tex.shape[2] == 4 for tex in mesh.textures)
    assert max(len({tuple(c) for c in tex[..., :3].reshape(-1, 3).tolist()}) for tex in mesh.textures) >= 3


def test_seeds_vary_bodies_hair_clothes_and_faces() -> None:
    specs = [character(s)[0] for s in range(120)]
    assert {sp.hair_style for sp in specs} == {"short", "bob", "long", "volume", "twintails", "ponytail", "bun"}
    assert {sp.outfit for sp in specs} == {"skirt", "dress", "shorts", "trousers"}
    assert {sp.hat for sp in specs} == {"none", "beret", "witch", "cap"}
    assert {sp.eye_style for sp in specs} == {"round", "tall", "narrow", "closed"}
    assert any(sp.coat for sp in specs) and any(sp.glasses for sp in specs)
    heads = [sp.head for sp in specs]
    assert min(heads) < 1.0 and max(heads) > 1.35  # from tall figures to chibi
    # A chibi's head is a larger share of its height than a tall figure's.
    def head_share(seed: int) -> float:
        spec, mesh = character(seed)
        ys = mesh.vertices[:, 1]
        return float((ys.max() - 1.2 * spec.height) / (ys.max() - ys.min()))
    chibi = next(s for s, sp in enumerate(specs) if sp.head > 1.35)
    tall = next(s for s, sp in enumerate(specs) if sp.head < 1.0 and sp.height > 1.05 and sp.hat == "none")
    assert head_share(chibi) > head_share(tall) * 1.3


def test_styles_draw_shading_lines_and_cut_out_traits() -> None:
    from conr.engine.styles import STYLES, draw_style, parse_styles

    styles = [draw_style(s) for s in range(200)]
    assert {st.name for st in styles} == set(STYLES)
    assert draw_style(5) == draw_style(5) and draw_style(5, style_seed=1) != draw_style(5)
    assert all(st.shading.outline_px == 0 for st in styles if st.name == "lineless")
    assert all(st.shading.outline_px >= 2 for st in styles if st.name == "ink")
    assert all(st.shading.tones == 3 for st in styles if st.name == "tone3")
    assert {st.cutout.edge for st in styles} == {"hard", "soft", "jagged"}
    assert any(st.cutout.jpeg for st in styles) and any(st.cutout.halo_colour for st in styles)
    assert all(draw_style(s, ("soft", "ink")).name in ("soft", "ink") for s in range(30))
    assert parse_styles("all") == STYLES and parse_styles("ink, soft,ink") == ("ink", "soft")


def test_soft_shading_and_rim_light_add_tones(girl) -> None:
    from conr.engine.renderer import CelStyle

    spec, mesh = girl
    cam = fit_camera(mesh.vertices, 64, 64)
    def tones(style: CelStyle) -> int:
        rgba = render_rgba(mesh, mesh.vertices, cam, style, ssaa=1)
        skin = torch.tensor(spec.skin)
        solid = rgba[..., 3] == 1
        px = rgba[solid][:, :3]
        # Pixels of the skin's hue: how many distinct brightness levels they have.
        ratio = px / skin
        near = (ratio.max(1).values - ratio.min(1).values < 0.02) & (ratio.mean(1) < 1.01)
        return len(torch.unique((ratio[near].mean(1) * 100).round()))
    assert tones(CelStyle(outline_px=0)) <= 2
    assert tones(CelStyle(outline_px=0, softness=0.5, tones=3)) == 3
    assert tones(CelStyle(outline_px=0, softness=0.6)) > 5


@pytest.mark.parametrize("pose", ["t", "posed"])
def test_sheet_poses_give_views_whose_udp_matches_their_pixels(tmp_path: Path, pose: str) -> None:
    out = tmp_path / "data"
    assert _run_synth(out, "--sheet-pose", pose, "--styles", "classic", "--no-targets") == 0
    ch = json.loads((out / "manifest.json").read_text())["characters"][0]
    assert ch["sheet_pose"] == pose and ch["style"]["name"] == "classic"
    views = [cv2.imread(str(out / ch["id"] / v["file"]), cv2.IMREAD_UNCHANGED) for v in ch["sheet"]]
    udps = [np.load(out / ch["id"] / v["udp"])["i"] for v in ch["sheet"]]
    for rgba, udp in zip(views, udps):
        assert np.all(rgba[..., 3][udp[..., 3] == 1] > 0)
    if pose == "t":  # arms straight out: the figure is wider than an A-pose's
        assert _run_synth(tmp_path / "a", "--styles", "classic", "--no-targets") == 0
        a_view = np.load(tmp_path / "a" / "char_0000" / "sheet" / "view_00.npz")["i"]
        width = lambda u: np.ptp(np.nonzero(u[..., 3].any(0))[0])  # noqa: E731
        height = lambda u: np.ptp(np.nonzero(u[..., 3].any(1))[0])  # noqa: E731
        assert width(udps[0]) / height(udps[0]) > 1.2 * width(a_view) / height(a_view)
    else:  # each view in its own pose and turn
        assert ch["sheet"][0]["yaw"] != 0.0
        assert not np.array_equal(udps[0], udps[1])


def test_a_style_seed_restyles_the_same_character(tmp_path: Path) -> None:
    assert _run_synth(tmp_path / "a", "--no-targets") == 0
    assert _run_synth(tmp_path / "b", "--no-targets", "--style-seed", "3") == 0
    a = json.loads((tmp_path / "a" / "manifest.json").read_text())["characters"][0]
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())["characters"][0]
    assert a["spec"] == b["spec"] and a["style"] != b["style"]
    udp_a = np.load(tmp_path / "a" / "char_0000" / "sheet" / "view_00.npz")["i"]
    udp_b = np.load(tmp_path / "b" / "char_0000" / "sheet" / "view_00.npz")["i"]
    assert np.array_equal(udp_a, udp_b)  # the same body, drawn differently
