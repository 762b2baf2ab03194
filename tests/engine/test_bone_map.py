"""`conr poses --procedural SEED` and `--bone-map FILE`, on small files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conr.cli import main
from conr.engine.procedural import HUMANOID_BONES
from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh

from .test_formats import BVH_NAMES, assert_same_frames, bvh_of_humanoid, udp_frames
from .writers import mesh_to_glb, write_bvh

SIZE = 32
ODD = [f"bone_{j:02d}" for j in range(len(HUMANOID_BONES))]


def renamed(mesh: SkinnedMesh, names: list[str]) -> SkinnedMesh:
    """The same mesh whose skeleton joints are called `names`."""
    s = mesh.skeleton
    return SkinnedMesh(mesh.vertices, mesh.faces, mesh.joints, mesh.weights, Skeleton(list(names), list(s.parents),
                       s.rest_local), mesh.face_colors, mesh.face_unlit)


@pytest.fixture(scope="module")
def models(girl, tmp_path_factory) -> tuple[Path, Path]:
    """The same character twice: bones named like VRM, and bones named bone_00 ... bone_20."""
    folder = tmp_path_factory.mktemp("models")
    mesh_to_glb(girl, folder / "named.glb")
    mesh_to_glb(renamed(girl, ODD), folder / "odd.glb")
    return folder / "named.glb", folder / "odd.glb"


def write_map(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def full_map() -> dict[str, str]:
    return dict(zip(HUMANOID_BONES, ODD))


def _fails(args: list[str], capsys, *must_say: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    for text in must_say:
        assert text in err, err
    return err


def test_procedural_character_gives_synth_frames_and_sheet(tmp_path) -> None:
    out = tmp_path / "p"
    assert main(["poses", "--procedural", "7", "walk", "-o", str(out), "--size", str(SIZE), "--frames", "0:2",
                 "--sheet", "2"]) == 0
    manifest = json.loads((out / "poses.json").read_text())
    assert manifest["model"] == "procedural:7"
    assert manifest["frames"] == ["0.npz", "1.npz"] and len(manifest["sheet"]) == 2
    assert sorted(p.name for p in (out / "sheet").glob("*.png")) == ["view_00.png", "view_01.png"]
    # `conr synth` poses the same character directly (no retargeting): the frames agree to round-off.
    syn = tmp_path / "s"
    assert main(["synth", "--seed", "7", "--motion", "walk", "--poses-per-character", "2", "--size", str(SIZE),
                 "--sheet-views", "2", "--no-targets", "-o", str(syn)]) == 0
    frames = udp_frames(out)
    assert frames[..., 3].sum() > 20
    assert_same_frames(frames, udp_frames(syn / "char_0000" / "udp"))
    for k in range(2):
        a = np.load(out / "sheet" / f"view_{k:02d}.npz")["i"]
        b = np.load(syn / "char_0000" / "sheet" / f"view_{k:02d}.npz")["i"]
        assert_same_frames(a[None], b[None])


def test_procedural_seeds_differ_and_default_out_is_named_by_seed(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for seed in ("7", "8"):
        assert main(["poses", "--procedural", seed, "stand", "--size", str(SIZE)]) == 0
    a, b = udp_frames(tmp_path / "poses_procedural7_stand"), udp_frames(tmp_path / "poses_procedural8_stand")
    assert not np.array_equal(a, b)


def test_wrong_forms_say_which_is_expected(models, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    err = _fails(["poses", "--procedural", "7", str(models[0]), "walk", "-o", str(out)], capsys, "--procedural")
    assert "only the motion" in err and "conr poses --procedural SEED MOTION" in err
    err = _fails(["poses", "walk", "-o", str(out)], capsys, "expected a model and a motion", "'walk'")
    assert "conr poses MODEL MOTION" in err
    _fails(["poses", str(models[0]), "walk", "dance", "-o", str(out)], capsys, "3 inputs")
    assert not out.exists()


def test_unrecognised_bones_are_listed_and_a_bone_map_fixes_them(models, tmp_path, capsys) -> None:
    named, odd = models
    out = tmp_path / "o"
    err = _fails(["poses", str(odd), "walk", "-o", str(out), "--size", str(SIZE)], capsys, str(odd), "hips",
                 "bone_00", "bone_20", "--bone-map", '{"hips": "pelvis"')
    assert not out.exists()
    bone_map = write_map(tmp_path / "map.json", full_map())
    assert main(["poses", str(odd), "walk", "-o", str(out), "--size", str(SIZE), "--frames", "0:3",
                 "--bone-map", str(bone_map)]) == 0
    ref = tmp_path / "ref"
    assert main(["poses", str(named), "walk", "-o", str(ref), "--size", str(SIZE), "--frames", "0:3"]) == 0
    assert np.array_equal(udp_frames(out), udp_frames(ref))
    assert json.loads((out / "poses.json").read_text())["humanoid_bones"] == sorted(HUMANOID_BONES)


def test_bone_map_wins_over_names_matched_automatically(models, tmp_path) -> None:
    # Swapping the arms by map must move the other arm than the names say.
    named = models[0]
    swap = {f"{a}{p}": f"{b}{p}" for a, b in (("left", "right"), ("right", "left"))
            for p in ("Shoulder", "UpperArm", "LowerArm", "Hand")}
    bone_map = write_map(tmp_path / "swap.json", swap)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["poses", str(named), "wave", "-o", str(a), "--size", str(SIZE), "--frames", "10:11"]) == 0
    assert main(["poses", str(named), "wave", "-o", str(b), "--size", str(SIZE), "--frames", "10:11",
                 "--bone-map", str(bone_map)]) == 0
    assert not np.array_equal(udp_frames(a), udp_frames(b))


def test_bvh_with_odd_names_is_read_through_the_map(models, tmp_path, capsys) -> None:
    named = models[0]
    frames = np.zeros((2, 3 + 3 * 21))
    frames[:, :3] = [0, 80, 0]
    frames[1, 3 + 3 * 6] = -90  # left upper arm down
    frames[1, 3 + 3 * 14 + 1] = 60  # left knee bent
    clean, odd = tmp_path / "clean.bvh", tmp_path / "odd.bvh"
    bvh_of_humanoid(clean, frames)
    # The same clip, its joints named j00 ... j20 (BVH_NAMES order).
    text = clean.read_text()
    odd_names = [f"j{j:02d}" for j in range(len(BVH_NAMES))]
    for j, n in sorted(enumerate(BVH_NAMES), key=lambda jn: -len(jn[1])):
        text = text.replace(f" {n}\n", f" {odd_names[j]}\n")
    odd.write_text(text)
    out = tmp_path / "o"
    _fails(["poses", str(named), str(odd), "-o", str(out)], capsys, str(odd), "hips", "j00", "--bone-map")
    from conr.engine.retarget import match_humanoid

    canon = match_humanoid(BVH_NAMES)
    bone_map = write_map(tmp_path / "map.json", {b: odd_names[j] for b, j in canon.items()})
    assert main(["poses", str(named), str(odd), "-o", str(out), "--size", str(SIZE),
                 "--bone-map", str(bone_map)]) == 0
    ref = tmp_path / "ref"
    assert main(["poses", str(named), str(clean), "-o", str(ref), "--size", str(SIZE)]) == 0
    assert np.array_equal(udp_frames(out), udp_frames(ref))


@pytest.mark.parametrize("content, must_say", [
    ("{not json", "not valid JSON"),
    ('["hips", "bone_00"]', "JSON object"),
    ('{"hip": "bone_00"}', "'hip' is not one of our humanoid bones"),
    ('{"hips": 3}', "must be a bone name"),
    ('{"hips": "bone_00", "spine": "bone_00"}', "both map to bone 'bone_00'"),
    ('{"hips": "pelvis"}', "'pelvis'"),
])
def test_bad_bone_maps_are_reported(models, tmp_path, capsys, content, must_say) -> None:
    path = tmp_path / "map.json"
    path.write_text(content)
    out = tmp_path / "o"
    err = _fails(["poses", str(models[1]), "walk", "-o", str(out), "--bone-map", str(path)], capsys, str(path),
                 must_say)
    if "hip'" in must_say:
        assert "did you mean 'hips'" in err and "leftUpperArm" in err
    if "pelvis" in must_say:
        assert "not in the model" in err and "bone_00" in err
    assert not out.exists()


def test_long_bone_lists_are_cut(girl, tmp_path, capsys) -> None:
    # A skeleton of 60 joints: the message shows 40 names and counts the rest.
    from conr.engine.retarget import bone_list

    assert bone_list([f"b{i}" for i in range(60)]).endswith("b39 and 20 more")
    path = tmp_path / "long.bvh"
    names = [f"x{i}" for i in range(60)]
    write_bvh(path, names, list(range(-1, 59)), np.tile([[0.0, 1.0, 0.0]], (60, 1)), np.zeros((1, 3 + 3 * 60)))
    _fails(["poses", "--procedural", "3", str(path), "-o", str(tmp_path / "o")], capsys, "x39 and 20 more")


def test_options_may_come_between_model_and_motion(models, tmp_path) -> None:
    named, _ = models
    out = tmp_path / "o"
    assert main(["poses", str(named), "--size", "32", "walk", "-o", str(out), "--frames", "0:1"]) == 0
    assert len(list(out.glob("*.npz"))) == 1
