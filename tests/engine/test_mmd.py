"""PMX models and VMD motions (with leg IK), on small files written by the tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conr.cli import main
from conr.engine.formats import load_model
from conr.engine.formats.vmd import bezier_progress, load_vmd
from conr.engine.ik import pose_mmd
from conr.engine.procedural import HUMANOID_BONES
from conr.engine.transforms import axis_rotation

from .test_formats import SIZE, assert_same_frames, direct_udp, udp_frames
from .writers import MMD_SCALE, mesh_to_glb, mesh_to_pmx, write_vmd


@pytest.fixture(scope="module")
def pmx(girl, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mmd") / "girl.pmx"
    mesh_to_pmx(girl, path, texture="tex\\skin.png")
    return path


def test_pmx_reader_mirrors_into_our_frame(girl, pmx) -> None:
    model = load_model(pmx)
    assert torch.allclose(model.mesh.rest_vertices() / MMD_SCALE, girl.vertices, atol=1e-5)
    assert model.mesh.num_faces == girl.num_faces
    assert set(model.humanoid) == set(HUMANOID_BONES)
    assert len(model.rig.ik) == 2
    knee = model.rig.ik[0].links[0]
    # The left-handed knee range [-180, -0.5] degrees about x becomes [0.5, 180] here.
    assert knee.lower[0] == pytest.approx(0.5 * math.pi / 180, rel=1e-5) and knee.upper[0] == pytest.approx(math.pi)
    assert any("tex\\skin.png" in w for w in model.warnings)


def test_vmd_arm_key_poses_the_pmx_like_fk(girl, tmp_path) -> None:
    # Without leg IK, whose knee limit bends straight legs by half a degree.
    pmx = tmp_path / "fk.pmx"
    mesh_to_pmx(girl, pmx, leg_ik=False)
    s = math.sin(math.pi / 4)
    vmd = tmp_path / "arm.vmd"
    # Our rotation about z by -90 degrees is (0, 0, -s, s); mirroring z keeps a pure z rotation.
    write_vmd(vmd, [("左腕", 0, (0, 0, 0), (0, 0, 0, 1)), ("左腕", 4, (0, 0, 0), (0, 0, -s, s)),
                    ("センター", 0, (0, 0, 0), (0, 0, 0, 1)), ("センター", 4, (0.1 * MMD_SCALE, 0, 0), (0, 0, 0, 1)), ("左目", 0, (0, 0, 0), (0, 0, 0, 1))])
    assert load_vmd(vmd).num_frames == 5
    out = tmp_path / "o"
    assert main(["poses", str(pmx), str(vmd), "-o", str(out), "--size", str(SIZE)]) == 0
    frames = udp_frames(out)
    assert frames.shape[0] == 5
    rot = girl.skeleton.identity_pose(5)
    angle = torch.linspace(0, -math.pi / 2, 5)
    rot[:, HUMANOID_BONES.index("leftUpperArm")] = axis_rotation("Z", angle)
    root = torch.zeros(5, 3)
    root[:, 0] = torch.linspace(0, 0.1, 5)
    posed = girl.pose(girl.skeleton.forward(rot, root))
    assert_same_frames(frames, direct_udp(girl, posed))


def test_leg_ik_brings_the_ankle_to_the_ik_bone_with_the_knee_forward(girl, pmx, tmp_path) -> None:
    model = load_model(pmx)
    lift = np.array([0.0, 0.18, 0.12]) * MMD_SCALE  # up and forward, in our frame
    vmd = tmp_path / "ik.vmd"
    write_vmd(vmd, [("左足ＩＫ", 0, tuple(lift * [1, 1, -1]), (0, 0, 0, 1))])
    g, missing = pose_mmd(model.mesh.skeleton, model.rig, load_vmd(vmd))
    names = model.mesh.skeleton.names
    ik, ankle = names.index("左足ＩＫ"), names.index("左足首")
    knee, hip = names.index("左ひざ"), names.index("左足")
    assert missing == []
    assert torch.allclose(g[0, ankle, :3, 3], g[0, ik, :3, 3], atol=0.01 * MMD_SCALE)
    assert g[0, knee, 2, 3] > g[0, hip, 2, 3] + 0.05 * MMD_SCALE  # the knee comes forward
    # The other leg, whose IK bone did not move, stays straight below its hip.
    r_ankle, r_hip = names.index("右足首"), names.index("右足")
    assert abs(float(g[0, r_ankle, 0, 3] - g[0, r_hip, 0, 3])) < 1e-3 * MMD_SCALE


def test_vmd_bones_the_model_lacks_are_listed_once(pmx, tmp_path, capsys) -> None:
    vmd = tmp_path / "extra.vmd"
    write_vmd(vmd, [("左目", 0, (0, 0, 0), (0, 0, 0, 1)), ("右目", 3, (0, 0, 0), (0, 0, 0, 1)),
                    ("左目", 3, (0, 0, 0), (0, 0, 0, 1))])
    assert main(["poses", str(pmx), str(vmd), "-o", str(tmp_path / "o"), "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert err.count("lacks") == 1 and "左目" in err and "右目" in err
    assert "tex\\skin.png" in err


def test_bvh_style_procedural_motion_retargets_onto_pmx(pmx, tmp_path) -> None:
    out = tmp_path / "o"
    assert main(["poses", str(pmx), "walk", "-o", str(out), "--size", "32", "--frames", "0:2"]) == 0
    assert udp_frames(out)[..., 3].sum() > 50


def test_truncated_pmx_and_vmd_are_reported(girl, pmx, tmp_path, capsys) -> None:
    cut = tmp_path / "cut.pmx"
    cut.write_bytes(pmx.read_bytes()[:3000])
    out = tmp_path / "o"
    assert main(["poses", str(cut), "walk", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(cut) in err and "truncated" in err and not out.exists()
    vmd = tmp_path / "m.vmd"
    write_vmd(vmd, [("左腕", k, (0, 0, 0), (0, 0, 0, 1)) for k in range(4)])
    cutv = tmp_path / "cut.vmd"
    cutv.write_bytes(vmd.read_bytes()[:50 + 4 + 111 * 2 + 20])
    assert main(["poses", str(pmx), str(cutv), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(cutv) in err and "declares 4 bone keys but holds 2" in err and not out.exists()
    glb = tmp_path / "g.glb"
    mesh_to_glb(girl, glb)
    assert main(["poses", str(glb), str(vmd), "-o", str(out)]) == 2
    assert "PMX" in capsys.readouterr().err


def test_bezier_easing_curves() -> None:
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    linear = bezier_progress(np.array([20, 20, 107, 107]) / 127.0, x)
    assert np.allclose(linear, x, atol=1e-5)
    ease_in = bezier_progress(np.array([127, 0, 127, 0]) / 127.0, x)
    assert ease_in[0] == pytest.approx(0, abs=1e-6) and ease_in[-1] == pytest.approx(1, abs=1e-6)
    assert ease_in[2] < 0.2 and np.all(np.diff(ease_in) >= 0)


def test_vmd_keys_follow_their_easing_curve(tmp_path) -> None:
    vmd = tmp_path / "ease.vmd"
    ease_x = [[127, 0, 127, 0], [20, 20, 107, 107], [20, 20, 107, 107], [20, 20, 107, 107]]
    write_vmd(vmd, [("センター", 0, (0, 0, 0), (0, 0, 0, 1)), ("センター", 10, (10.0, 10.0, 0), (0, 0, 0, 1), ease_x)])
    pos, _ = load_vmd(vmd).sample("センター", np.array([0.0, 5.0, 10.0]))
    assert pos[1, 1] == pytest.approx(5.0, abs=1e-3)  # y: linear curve
    assert pos[1, 0] < 2.0  # x: eased in, far behind half way at mid-time
    assert pos[2, 0] == pytest.approx(10.0) and pos[0, 0] == 0


def test_pmx_texture_found_next_to_the_model_is_used(girl, tmp_path) -> None:
    import cv2

    path = tmp_path / "girl.pmx"
    mesh_to_pmx(girl, path, texture="tex\\skin.png")
    (tmp_path / "tex").mkdir()
    green = np.zeros((4, 4, 3), np.uint8)
    green[..., 1] = 200  # BGR: pure green
    cv2.imwrite(str(tmp_path / "tex" / "skin.png"), green)
    model = load_model(path)
    assert model.warnings == [] and len(model.mesh.textures) == 1
    textured = model.mesh.face_texture == 0
    assert textured.any()
    # Flat colours of textured faces are the texel times the material's diffuse colour.
    tint = model.mesh.face_tint[textured]
    assert torch.allclose(model.mesh.face_colors[textured], tint * torch.tensor([0.0, 200 / 255, 0.0]), atol=1e-4)


@pytest.mark.parametrize("motion", ["walk", "vmd"])
def test_deform_bones_inheriting_rotation_move_the_legs(girl, tmp_path, motion) -> None:
    plain, with_d = tmp_path / "plain.pmx", tmp_path / "d.pmx"
    mesh_to_pmx(girl, plain, leg_ik=False)
    mesh_to_pmx(girl, with_d, leg_ik=False, d_bones=True)
    assert len(load_model(with_d).rig.inherit) == 6
    spec = motion
    if motion == "vmd":
        s = math.sin(math.pi / 8)  # thigh forward by 45 degrees: -45 about x here, +45 mirrored
        spec = str(tmp_path / "kick.vmd")
        write_vmd(Path(spec), [("左足", 0, (0, 0, 0), (s, 0, 0, math.cos(math.pi / 8)))])
    frames = []
    for model in (plain, with_d):
        out = tmp_path / model.stem
        span = "0:3" if motion == "walk" else "0:1"  # the VMD holds a single key: one frame
        assert main(["poses", str(model), spec, "-o", str(out), "--size", str(SIZE), "--frames", span]) == 0
        frames.append(udp_frames(out))
    assert_same_frames(frames[1], frames[0])


def _tga(rgba: np.ndarray, rle: bool, top_left: bool) -> bytes:
    """A 32-bit TGA of (H, W, 4) RGBA, raw or run-length encoded (runs of equal pixels)."""
    import struct

    h, w = rgba.shape[:2]
    rows = rgba if top_left else rgba[::-1]
    bgra = rows[..., [2, 1, 0, 3]].reshape(-1, 4)
    head = struct.pack("<BBB5sHHHHBB", 0, 0, 10 if rle else 2, bytes(5), 0, 0, w, h, 32, 8 | (0x20 if top_left else 0))
    if not rle:
        return head + bgra.tobytes()
    body = bytearray()
    k = 0
    while k < len(bgra):
        run = 1
        while k + run < len(bgra) and run < 128 and (bgra[k + run] == bgra[k]).all():
            run += 1
        if run > 1:
            body += bytes([0x80 | (run - 1)]) + bgra[k].tobytes()
        else:
            body += bytes([0]) + bgra[k].tobytes()
        k += run
    return head + bytes(body)


def test_pmx_textures_outside_the_models_folder_are_not_read(girl, tmp_path) -> None:
    """A model from a stranger must not make us read files elsewhere on the server."""
    import cv2

    (tmp_path / "model").mkdir()
    path = tmp_path / "model" / "girl.pmx"
    cv2.imwrite(str(tmp_path / "secret.png"), np.full((4, 4, 3), 200, np.uint8))
    for name in ("..\\secret.png", str(tmp_path / "secret.png"), "/dev/zero"):
        mesh_to_pmx(girl, path, texture=name)
        model = load_model(path)
        assert len(model.mesh.textures) == 0, name
        assert any("missing or unreadable" in w for w in model.warnings), name


def test_textures_announcing_a_huge_image_are_not_decoded() -> None:
    import struct
    import zlib

    from conr.engine.formats.gltf import decode_rgba

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert decode_rgba(png + b"\0" * 64) is None



@pytest.mark.parametrize("rle, top_left", [(False, False), (True, False), (True, True)])
def test_tga_textures_decode(rle: bool, top_left: bool) -> None:
    from conr.engine.formats.gltf import decode_rgba

    img = np.zeros((3, 5, 4), np.uint8)
    img[..., 3] = 255
    img[0, :, 0] = 255  # a red top row
    img[2, 4] = (10, 20, 30, 40)
    got = decode_rgba(_tga(img, rle, top_left))
    assert got is not None and np.array_equal((got * 255).round().astype(np.uint8), img)


def test_truncated_tga_is_unreadable_not_a_crash() -> None:
    from conr.engine.formats.tga import decode_tga

    img = np.full((4, 4, 4), 200, np.uint8)
    assert decode_tga(_tga(img, True, False)[:-3]) is None
    assert decode_tga(b"not an image at all") is None


def test_vmd_ik_switch_turns_leg_ik_off_from_its_frame(pmx, tmp_path) -> None:
    model = load_model(pmx)
    lift = np.array([0.0, 0.18, 0.12]) * MMD_SCALE * [1, 1, -1]
    vmd = tmp_path / "switch.vmd"
    write_vmd(vmd, [("左足ＩＫ", 0, tuple(lift), (0, 0, 0, 1)), ("左足ＩＫ", 3, tuple(lift), (0, 0, 0, 1))],
              ik_switches=[(0, {"左足ＩＫ": True}), (2, {"左足ＩＫ": False})])
    motion = load_vmd(vmd)
    assert motion.ik_enabled("左足ＩＫ", np.arange(4.0)).tolist() == [True, True, False, False]
    g, _ = pose_mmd(model.mesh.skeleton, model.rig, motion)
    names = model.mesh.skeleton.names
    ik, ankle, hip = names.index("左足ＩＫ"), names.index("左足首"), names.index("左足")
    assert torch.allclose(g[1, ankle, :3, 3], g[1, ik, :3, 3], atol=0.01 * MMD_SCALE)  # on: follows the IK bone
    assert abs(float(g[3, ankle, 0, 3] - g[3, hip, 0, 3])) < 1e-3 * MMD_SCALE  # off: the leg hangs straight
    assert float(g[3, ankle, 1, 3]) < float(g[1, ankle, 1, 3]) - 0.1 * MMD_SCALE


def test_long_bone_names_match_their_15_byte_vmd_form(tmp_path) -> None:
    long_name = "左人差指先端ボーン"  # 18 bytes in Shift-JIS: a VMD keeps 15, cutting a character in half
    vmd = tmp_path / "long.vmd"
    write_vmd(vmd, [(long_name, 0, (0, 0, 0), (0, 0, 0, 1)), ("左腕", 0, (0, 0, 0), (0, 0, 0, 1))])
    motion = load_vmd(vmd)
    assert long_name not in motion.tracks  # stored cut short ...
    assert motion.track_for(long_name) is not None  # ... and still found, as MMD finds it
    assert motion.track_for("左腕") == "左腕" and motion.track_for("右腕") is None
