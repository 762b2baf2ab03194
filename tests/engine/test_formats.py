"""glTF/GLB/VRM and BVH readers, retargeting and `conr poses`, on small files written by the tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conr.cli import main
from conr.engine.formats import load_model
from conr.engine.formats.bvh import load_bvh
from conr.engine.motions import procedural_motion
from conr.engine.procedural import HUMANOID_BONES, character, humanoid_skeleton
from conr.engine.renderer import render_udp
from conr.engine.retarget import match_humanoid, split_name
from conr.engine.scene import pose_by_motion, sequence_camera
from conr.engine.transforms import axis_rotation, matrix_to_quat
from conr.engine.udp import UDPNormalizer
from conr.errors import ConrError

from .writers import mesh_to_glb, rebase, write_bvh

SIZE = 64


@pytest.fixture(scope="module")
def glb(girl, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "girl.glb"
    mesh_to_glb(girl, path)
    return path


def udp_frames(folder: Path) -> np.ndarray:
    return np.stack([np.load(f)["i"] for f in sorted(folder.glob("*.npz"), key=lambda f: int(f.stem))])


def direct_udp(mesh, posed: torch.Tensor) -> np.ndarray:
    """The reference: render the procedural character posed directly, with the same framing rule."""
    cam = sequence_camera(posed, SIZE)
    norm = UDPNormalizer.from_vertices(mesh.rest_vertices())
    return np.stack([render_udp(mesh, p, cam, norm).numpy() for p in posed])


def assert_same_frames(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    # Float round-off may flip a pixel on a silhouette; everything else must match.
    agree = (a[..., 3] == b[..., 3]).mean()
    assert agree > 0.997, agree
    both = (a[..., 3] == 1) & (b[..., 3] == 1)
    diff = np.abs(a[both] - b[both]).max(1)
    # Where thin layers overlap (eyes on the face) round-off can pick the other layer at a few pixels.
    assert (diff > 0.01).mean() < 0.01
    assert np.median(diff) < 1e-3



def _arm_and_knee_pose(girl):
    """Frame 0 at rest; frame 1: left upper arm -90 degrees about Z, left knee 60 about X, root moved."""
    rot = girl.skeleton.identity_pose(2)
    rot[1, HUMANOID_BONES.index("leftUpperArm")] = axis_rotation("Z", torch.tensor(-math.pi / 2))
    rot[1, HUMANOID_BONES.index("leftLowerLeg")] = axis_rotation("X", torch.tensor(math.pi / 3))
    root = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.05, 0.0]])
    return girl.pose(girl.skeleton.forward(rot, root))

def test_glb_round_trip_keeps_mesh_colours_and_bones(girl, glb) -> None:
    model = load_model(glb)
    assert torch.allclose(model.mesh.rest_vertices(), girl.vertices, atol=1e-5)
    assert model.mesh.num_faces == girl.num_faces
    assert set(model.humanoid) == set(HUMANOID_BONES)
    # Colours survive the linear-factor round trip (face order is per material, so compare as sets).
    a = {tuple(c) for c in girl.face_colors.numpy().round(2).tolist()}
    b = {tuple(c) for c in model.mesh.face_colors.numpy().round(2).tolist()}
    assert a == b
    assert model.warnings == []


def test_poses_with_procedural_motion_on_glb_matches_direct_render(girl, glb, tmp_path) -> None:
    out = tmp_path / "walk"
    assert main(["poses", str(glb), "walk", "-o", str(out), "--size", str(SIZE), "--frames", "0:3"]) == 0
    posed, _ = pose_by_motion(girl, procedural_motion("walk", None))
    assert_same_frames(udp_frames(out), direct_udp(girl, posed[:3]))
    manifest = json.loads((out / "poses.json").read_text())
    assert manifest["frames"] == ["0.npz", "1.npz", "2.npz"]
    assert manifest["udp_normalizer"]["extent"] > 1.0


def test_glb_own_animation_bends_the_elbow(girl, tmp_path) -> None:
    path = tmp_path / "anim.glb"
    angles = torch.tensor([0.0, math.pi / 4, math.pi / 2])
    quats = matrix_to_quat(axis_rotation("Y", -angles)).numpy()  # left elbow bends forward
    mesh_to_glb(girl, path, animation={"leftLowerArm": quats})
    model = load_model(path)
    assert len(model.animations) == 1 and model.animations[0].local.shape[0] == 3
    out = tmp_path / "own"
    assert main(["poses", str(path), str(path), "-o", str(out), "--size", str(SIZE)]) == 0
    rot = girl.skeleton.identity_pose(3)
    rot[:, HUMANOID_BONES.index("leftLowerArm")] = axis_rotation("Y", -angles)
    posed = girl.pose(girl.skeleton.forward(rot))
    assert_same_frames(udp_frames(out), direct_udp(girl, posed))


BVH_NAMES = ["Hips", "Spine", "Spine1", "Neck", "Head",
             "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "RightShoulder", "RightArm", "RightForeArm", "RightHand",
             "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase"]


def bvh_of_humanoid(path: Path, frames: np.ndarray, extra_thumb: bool = False, height: float = 1.0) -> None:
    """The procedural skeleton in centimetres, with Mixamo/CMU-style names."""
    skel, _ = humanoid_skeleton(height)
    offsets = skel.rest_local[:, :3, 3].numpy() * 100
    names, parents = list(BVH_NAMES), list(skel.parents)
    if extra_thumb:  # a joint with no humanoid equivalent, as the last child of the left hand
        names.insert(9, "LeftHandThumb1")
        parents = parents[:9] + [8] + [p + 1 if p >= 9 else p for p in parents[9:]]
        offsets = np.insert(offsets, 9, [3.0, 0, 2.0], axis=0)
        frames = np.insert(frames, 3 + 3 * 9, 0.0, axis=1)
        frames = np.insert(frames, 3 + 3 * 9, 0.0, axis=1)
        frames = np.insert(frames, 3 + 3 * 9, 0.0, axis=1)
    write_bvh(path, names, parents, offsets, frames)


def test_bvh_names_map_to_the_humanoid() -> None:
    assert split_name("mixamorig:LeftUpLeg") == ("left", "upleg")
    assert split_name("J_Bip_R_LowerArm") == ("right", "lowerarm")
    assert split_name("lShldr") == ("left", "shldr")
    m = match_humanoid(BVH_NAMES)
    assert set(m) == set(HUMANOID_BONES)
    assert BVH_NAMES[m["chest"]] == "Spine1" and BVH_NAMES[m["leftUpperLeg"]] == "LeftUpLeg"


def test_bvh_reader_gives_forward_kinematics(tmp_path) -> None:
    frames = np.zeros((2, 3 + 3 * 21))
    frames[:, :3] = [0, 80, 0]
    frames[1, 3 + 3 * 6] = -90  # LeftArm Z rotation (first of ZXY)
    path = tmp_path / "m.bvh"
    bvh_of_humanoid(path, frames)
    bvh = load_bvh(path)
    assert bvh.num_frames == 2 and abs(bvh.fps - 30) < 1e-3
    g = bvh.global_transforms()
    hand = BVH_NAMES.index("LeftHand")
    arm = BVH_NAMES.index("LeftArm")
    # Arm pointing down: the hand is straight below the shoulder joint by the arm's length.
    d = g[1, hand, :3, 3] - g[1, arm, :3, 3]
    assert torch.allclose(d, torch.tensor([0.0, -40.5, 0.0], dtype=d.dtype), atol=1e-3)


def test_bvh_motion_retargets_onto_glb(girl, glb, tmp_path, capsys) -> None:
    frames = np.zeros((2, 3 + 3 * 21))
    hip = 80 * character(114)[0].height
    frames[:, :3] = [0, hip, 0]
    frames[1, :3] = [10, hip - 5, 0]  # hips move 10 cm aside, 5 cm down
    frames[1, 3 + 3 * 6] = -90  # LeftArm down
    frames[1, 3 + 3 * 14 + 1] = 60  # LeftLeg (knee) bends back: X is the second of ZXY
    path = tmp_path / "clip.bvh"
    # Same proportions as the model, so the retargeted pose must equal the directly posed one.
    bvh_of_humanoid(path, frames, extra_thumb=True, height=character(114)[0].height)
    out = tmp_path / "bvh"
    assert main(["poses", str(glb), str(path), "-o", str(out), "--size", str(SIZE)]) == 0
    assert "LeftHandThumb1" in capsys.readouterr().err
    assert_same_frames(udp_frames(out), direct_udp(girl, _arm_and_knee_pose(girl)))


def test_motion_bones_missing_from_model_are_listed_once(girl, tmp_path, capsys) -> None:
    path = tmp_path / "nofeet.vrm"
    bones = {b: i for i, b in enumerate(HUMANOID_BONES) if not b.endswith("Toes")}
    mesh_to_glb(girl, path, vrm=bones)
    assert main(["poses", str(path), "dance", "-o", str(tmp_path / "o"), "--size", "32", "--frames", "0:2"]) == 0
    err = capsys.readouterr().err
    assert err.count("lacks") == 1 and "leftToes, rightToes" in err


def test_missing_texture_warns_with_its_name_and_uses_flat_colour(girl, tmp_path, capsys) -> None:
    path = tmp_path / "tex.glb"
    mesh_to_glb(girl, path, texture_uri="hair_diffuse.png")
    model = load_model(path)
    assert any("hair_diffuse.png" in w for w in model.warnings)
    assert main(["poses", str(path), "stand", "-o", str(tmp_path / "o"), "--size", "32"]) == 0
    assert "hair_diffuse.png" in capsys.readouterr().err


def test_poses_writes_previews_when_asked(glb, tmp_path) -> None:
    out = tmp_path / "p"
    assert main(["poses", str(glb), "wave", "-o", str(out), "--size", "32", "--frames", "0:2", "--preview"]) == 0
    import cv2

    img = cv2.imread(str(out / "rgba" / "1.png"), cv2.IMREAD_UNCHANGED)
    udp = np.load(out / "1.npz")["i"]
    assert img.shape == (32, 32, 4) and np.all(img[..., 3][udp[..., 3] == 1] > 0)


# Bad input: each error names the file, the CLI exits 2, and no output folder is left behind.

def _fails(args: list[str], capsys, must_name: str, out: Path) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert must_name in err, err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))
    return err


def test_truncated_glb_is_reported(glb, tmp_path, capsys) -> None:
    bad = tmp_path / "cut.glb"
    bad.write_bytes(glb.read_bytes()[:5000])
    err = _fails(["poses", str(bad), "walk", "-o", str(tmp_path / "o")], capsys, str(bad), tmp_path / "o")
    assert "truncated" in err


def test_glb_with_inconsistent_accessor_is_reported(glb, tmp_path, capsys) -> None:
    data = bytearray(glb.read_bytes())
    jlen = int.from_bytes(data[12:16], "little")
    doc = json.loads(data[20:20 + jlen])
    doc["accessors"][0]["count"] *= 1000
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    rest = bytes(data[20 + jlen:])
    total = 12 + 8 + len(js) + len(rest)
    fixed = data[:8] + total.to_bytes(4, "little") + len(js).to_bytes(4, "little") + data[16:20] + js + rest
    bad = tmp_path / "bad.glb"
    bad.write_bytes(bytes(fixed))
    err = _fails(["poses", str(bad), "walk", "-o", str(tmp_path / "o")], capsys, str(bad), tmp_path / "o")
    assert "accessor 0" in err


def test_missing_and_unsupported_files_are_reported(glb, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    _fails(["poses", str(tmp_path / "nope.glb"), "walk", "-o", str(out)], capsys, "nope.glb", out)
    txt = tmp_path / "model.obj"
    txt.write_text("v 0 0 0\n")
    _fails(["poses", str(txt), "walk", "-o", str(out)], capsys, "model.obj", out)
    _fails(["poses", str(glb), str(tmp_path / "missing.bvh"), "-o", str(out)], capsys, "missing.bvh", out)
    not_json = tmp_path / "junk.gltf"
    not_json.write_text("hello")
    _fails(["poses", str(not_json), "walk", "-o", str(out)], capsys, "junk.gltf", out)


def test_truncated_and_malformed_bvh_are_reported(glb, tmp_path, capsys) -> None:
    frames = np.zeros((4, 3 + 3 * 21))
    path = tmp_path / "clip.bvh"
    bvh_of_humanoid(path, frames)
    out = tmp_path / "o"
    cut = tmp_path / "cut.bvh"
    cut.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    err = _fails(["poses", str(glb), str(cut), "-o", str(out)], capsys, str(cut), out)
    assert "header says 4 frames, found 2" in err
    broken = tmp_path / "broken.bvh"
    broken.write_text(path.read_text().replace("OFFSET", "OFSET", 1))
    err = _fails(["poses", str(glb), str(broken), "-o", str(out)], capsys, str(broken), out)
    assert "line 4" in err
    short = tmp_path / "short.bvh"
    lines = path.read_text().splitlines()
    lines[-1] = " ".join(lines[-1].split()[:-1])
    short.write_text("\n".join(lines) + "\n")
    err = _fails(["poses", str(glb), str(short), "-o", str(out)], capsys, str(short), out)
    assert "frame 3 has 65 values, expected 66" in err


def test_existing_output_is_not_touched(glb, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.npz").write_bytes(b"x")
    assert main(["poses", str(glb), "walk", "-o", str(out), "--size", "32"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "mine.npz").read_bytes() == b"x"


def test_load_errors_are_conr_errors(tmp_path) -> None:
    p = tmp_path / "x.glb"
    p.write_bytes(b"glTF\x02\x00\x00\x00")
    with pytest.raises(ConrError) as e:
        load_model(p)
    assert e.value.path == p


def test_model_facing_minus_z_gets_the_same_motion_and_a_front_view(girl, tmp_path) -> None:
    # A VRM 0.x-style model faces -Z: turn the character half way round.
    turned = rebase(girl, girl.skeleton.identity_pose(), axis_rotation("Y", torch.tensor(math.pi)))
    path = tmp_path / "turned.glb"
    mesh_to_glb(turned, path)
    out = tmp_path / "o"
    assert main(["poses", str(path), "walk", "-o", str(out), "--size", str(SIZE), "--frames", "0:3"]) == 0
    posed, _ = pose_by_motion(girl, procedural_motion("walk", None))
    expect = direct_udp(girl, posed[:3])
    # Its rest pose is turned too, so its UDP x and z run the other way.
    vis = expect[..., 3:]
    expect[..., [0, 2]] = (1 - expect[..., [0, 2]]) * vis
    assert_same_frames(udp_frames(out), expect)


def test_a_pose_model_is_driven_by_a_t_pose_motion(girl, tmp_path) -> None:
    from conr.engine.motions import stand

    a_pose = rebase(girl, stand().for_skeleton(girl.skeleton.names)[0][0])
    path = tmp_path / "apose.glb"
    mesh_to_glb(a_pose, path)
    out = tmp_path / "o"
    assert main(["poses", str(path), "wave", "-o", str(out), "--size", str(SIZE), "--frames", "0:2"]) == 0
    posed, _ = pose_by_motion(girl, procedural_motion("wave", None))
    got, expect = udp_frames(out), direct_udp(girl, posed[:2])
    # UDP values differ (each encodes its own rest pose) but the silhouettes agree, the raised arm included.
    assert (got[..., 3] == expect[..., 3]).mean() > 0.985  # skinning near bent joints differs slightly


@pytest.mark.parametrize("names", [
    ["pelvis", "spine_01", "spine_02", "neck_01", "head", "clavicle_l", "upperarm_l", "lowerarm_l", "hand_l",
     "thigh_l", "calf_l", "foot_l", "ball_l"],
    ["hip", "abdomen", "chest", "neck", "head", "lCollar", "lShldr", "lForeArm", "lHand", "lThigh", "lShin", "lFoot",
     "lToe"],
    ["J_Bip_C_Hips", "J_Bip_C_Spine", "J_Bip_C_Chest", "J_Bip_C_Neck", "J_Bip_C_Head", "J_Bip_L_Shoulder",
     "J_Bip_L_UpperArm", "J_Bip_L_LowerArm", "J_Bip_L_Hand", "J_Bip_L_UpperLeg", "J_Bip_L_LowerLeg", "J_Bip_L_Foot",
     "J_Bip_L_ToeBase"],
])
def test_common_skeleton_naming_schemes_are_recognised(names) -> None:
    m = match_humanoid(names)
    left = [b for b in HUMANOID_BONES if not b.startswith("right")]
    assert sorted(m) == sorted(left)
    assert len(set(m.values())) == len(m)


def test_bvh_without_hips_and_cuda_without_a_gpu_are_reported(glb, tmp_path, capsys) -> None:
    path = tmp_path / "odd.bvh"
    write_bvh(path, ["Root", "Thing"], [-1, 0], np.array([[0, 0, 0], [0, 10, 0]]), np.zeros((2, 9)))
    out = tmp_path / "o"
    err = _fails(["poses", str(glb), str(path), "-o", str(out)], capsys, str(path), out)
    assert "hips" in err
    if not torch.cuda.is_available():
        err = _fails(["poses", str(glb), "walk", "-o", str(out), "--device", "cuda"], capsys, "CUDA", out)
        assert "--device cpu" in err


def test_gltf_with_external_buffer_and_vrm0_map(girl, glb, tmp_path, capsys) -> None:
    data = glb.read_bytes()
    jlen = int.from_bytes(data[12:16], "little")
    doc = json.loads(data[20:20 + jlen])
    blob = data[20 + jlen + 8:]
    doc["buffers"][0]["uri"] = "girl data.bin"
    # VRM 0.x lists its bones; its upperChest folds into chest when there is no chest.
    names = [n["name"] for n in doc["nodes"]]
    bones = [{"bone": b if b != "chest" else "upperChest", "node": names.index(b)} for b in HUMANOID_BONES]
    doc["extensions"] = {"VRM": {"humanoid": {"humanBones": bones}}}
    gltf = tmp_path / "girl.gltf"
    gltf.write_text(json.dumps(doc))
    out = tmp_path / "o"
    err = _fails(["poses", str(gltf), "walk", "-o", str(out)], capsys, str(gltf), out)
    assert "girl data.bin" in err
    (tmp_path / "girl data.bin").write_bytes(blob)
    model = load_model(gltf)
    assert set(model.humanoid) == set(HUMANOID_BONES)
    assert torch.allclose(model.mesh.rest_vertices(), girl.vertices, atol=1e-5)


def test_non_finite_values_are_reported(glb, tmp_path, capsys) -> None:
    frames = np.zeros((3, 3 + 3 * 21))
    frames[2, 7] = np.nan
    path = tmp_path / "nan.bvh"
    bvh_of_humanoid(path, frames)
    out = tmp_path / "o"
    err = _fails(["poses", str(glb), str(path), "-o", str(out)], capsys, str(path), out)
    assert "frame 2" in err and "not finite" in err


def test_unskinned_mesh_follows_its_animated_node(tmp_path) -> None:
    from .writers import GlbBuilder

    b = GlbBuilder()
    # A unit quad in the x-y plane, on a child node placed 1 up (given as a matrix, column-major).
    quad = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32)
    pos = b.add(quad, "VEC3", 5126)
    idx = b.add(np.array([0, 1, 2, 0, 2, 3], np.uint16), "SCALAR", 5123)
    times = b.add(np.array([[0.0], [1.0]], np.float32), "SCALAR", 5126)
    s = math.sin(math.pi / 4)
    rots = b.add(np.array([[0, 0, 0, 1], [0, s, 0, s]], np.float32), "VEC4", 5126)  # 0 -> 90 degrees about y
    matrix = np.eye(4)
    matrix[1, 3] = 1.0
    doc = b.document(
        scenes=[{"nodes": [0]}],
        nodes=[{"name": "Hips", "children": [1]}, {"name": "card", "matrix": matrix.T.reshape(-1).tolist()},
               {"name": "holder", "children": [3]}, {"name": "quad", "mesh": 0}],
        meshes=[{"primitives": [{"attributes": {"POSITION": pos}, "indices": idx}]}],
        animations=[{"channels": [{"sampler": 0, "target": {"node": 2, "path": "rotation"}}],
                     "samplers": [{"input": times, "output": rots, "interpolation": "LINEAR"}]}],
    )
    doc["nodes"][1]["children"] = [2]
    path = tmp_path / "card.glb"
    b.write_glb(path, doc)
    model = load_model(path)
    g = model.mesh.skeleton.global_from_local(model.animations[0].local)
    posed = model.mesh.pose(g)
    assert model.animations[0].local.shape[0] == 31  # one second at 30 fps, both ends included
    assert torch.allclose(posed[0], torch.tensor(quad) + torch.tensor([0, 1.0, 0]), atol=1e-5)
    # After a quarter turn about y the quad lies in the y-z plane: x -> -z.
    assert torch.allclose(posed[-1][:, 0], torch.zeros(4), atol=1e-5)
    assert torch.allclose(posed[-1][:, 2], -torch.tensor(quad[:, 0]), atol=1e-5)


def test_bvh_is_resampled_to_the_requested_rate(glb, tmp_path) -> None:
    frames = np.zeros((121, 3 + 3 * 21))
    frames[:, 1] = 80
    frames[:, 3 + 3 * 6] = np.linspace(0, -90, 121)
    path = tmp_path / "fast.bvh"
    bvh_of_humanoid(path, frames)
    path.write_text(path.read_text().replace("Frame Time: 0.033333", "Frame Time: 0.008333"))
    out = tmp_path / "o"
    assert main(["poses", str(glb), str(path), "-o", str(out), "--size", "32", "--fps", "30"]) == 0
    manifest = json.loads((out / "poses.json").read_text())
    assert len(manifest["frames"]) == 31 and manifest["fps"] == 30


def test_embedded_texture_is_drawn_per_pixel(tmp_path) -> None:
    import cv2

    from conr.engine.camera import Camera
    from conr.engine.renderer import CelStyle, render_rgba

    from .writers import GlbBuilder

    texels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)  # RGB
    ok, png = cv2.imencode(".png", texels[..., ::-1])
    b = GlbBuilder()
    quad = np.array([[-1, 1, 0], [1, 1, 0], [1, -1, 0], [-1, -1, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)  # image top-left at the quad's top-left
    doc = b.document(
        scenes=[{"nodes": [0]}], nodes=[{"name": "Hips", "mesh": 0}],
        meshes=[{"primitives": [{"attributes": {"POSITION": b.add(quad, "VEC3", 5126), "TEXCOORD_0": b.add(uv, "VEC2", 5126)},
                                 "indices": b.add(np.array([0, 2, 1, 0, 3, 2], np.uint16), "SCALAR", 5123), "material": 0}]}],
        materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        textures=[{"source": 0}],
        images=[{"bufferView": b.add_bytes(png.tobytes()), "mimeType": "image/png"}],
    )
    path = tmp_path / "tex.glb"
    b.write_glb(path, doc)
    model = load_model(path)
    assert model.warnings == [] and len(model.mesh.textures) == 1
    cam = Camera((0.0, 0.0, 5.0), (0.0, 0.0, 0.0), 8, 8, "orthographic", ortho_height=2.0, near=1.0, far=10.0)
    rgba = render_rgba(model.mesh, model.mesh.rest_vertices(), cam, CelStyle(outline_px=0, shadow=1.0), ssaa=1)
    got = (rgba[..., :3] * 255).round().byte()
    assert torch.all(rgba[..., 3] == 1)
    for (r, c), colour in {(1, 1): texels[0, 0], (1, 6): texels[0, 1], (6, 1): texels[1, 0], (6, 6): texels[1, 1]}.items():
        assert got[r, c].tolist() == colour.tolist()


@pytest.mark.parametrize("mode", ["MASK", "OPAQUE"])
def test_cut_out_texture_makes_holes_in_udp_and_rgba(tmp_path, mode) -> None:
    import cv2

    from conr.engine.camera import Camera
    from conr.engine.renderer import CelStyle, render_rgba, render_udp

    from .writers import GlbBuilder

    texels = np.full((2, 2, 4), 255, np.uint8)
    texels[:, 1, 3] = 0  # the right half of the image is transparent
    ok, png = cv2.imencode(".png", texels)
    b = GlbBuilder()
    front = np.array([[-1, 1, 0.5], [1, 1, 0.5], [1, -1, 0.5], [-1, -1, 0.5]], np.float32)
    back = front * [0.5, 0.5, 0] + [0, 0, -0.5]
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tri = np.array([0, 2, 1, 0, 3, 2], np.uint16)
    prim = lambda verts, mat: {"attributes": {"POSITION": b.add(verts.astype(np.float32), "VEC3", 5126),  # noqa: E731
                                              "TEXCOORD_0": b.add(uv, "VEC2", 5126)},
                               "indices": b.add(tri, "SCALAR", 5123), "material": mat}
    doc = b.document(
        scenes=[{"nodes": [0]}], nodes=[{"name": "Hips", "mesh": 0}],
        meshes=[{"primitives": [prim(front, 0), prim(back, 1)]}],
        materials=[{"alphaMode": mode, "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}},
                   {"pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}],
        textures=[{"source": 0}],
        images=[{"bufferView": b.add_bytes(png.tobytes()), "mimeType": "image/png"}],
    )
    path = tmp_path / "cut.glb"
    b.write_glb(path, doc)
    mesh = load_model(path).mesh
    v = mesh.rest_vertices()
    cam = Camera((0.0, 0.0, 5.0), (0.0, 0.0, 0.0), 8, 8, "orthographic", ortho_height=2.0, near=1.0, far=10.0)
    udp = render_udp(mesh, v, cam, UDPNormalizer.from_vertices(v))
    z = UDPNormalizer.from_vertices(v).decode(udp[..., :3])[..., 2]
    rgba = render_rgba(mesh, v, cam, CelStyle(outline_px=0, shadow=1.0), ssaa=1)
    left, right = (slice(None), slice(0, 4)), (slice(None), slice(4, 8))
    assert torch.all(udp[left][..., 3] == 1) and torch.allclose(z[left], torch.tensor(0.5))
    if mode == "MASK":
        # Through the hole: the back quad (red, z = -0.5) where it is, nothing elsewhere.
        assert torch.allclose(z[2:6, 4:6], torch.tensor(-0.5), atol=1e-5)
        assert torch.all(udp[0, 4:, 3] == 0) and torch.all(udp[:, 6:, 3] == 0)
        assert torch.allclose(rgba[2:6, 4:6, :3], torch.tensor([1.0, 0, 0]), atol=1e-3)
    else:
        assert torch.all(udp[right][..., 3] == 1) and torch.allclose(z[right], torch.tensor(0.5))


def test_eight_influences_keep_the_four_heaviest(tmp_path) -> None:
    from .writers import GlbBuilder

    b = GlbBuilder()
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    j0 = np.tile(np.array([0, 1, 2, 3], np.uint8), (3, 1))
    j1 = np.tile(np.array([4, 5, 0, 0], np.uint8), (3, 1))
    w0 = np.tile(np.array([0.05, 0.1, 0.05, 0.1], np.float32), (3, 1))
    w1 = np.tile(np.array([0.5, 0.2, 0, 0], np.float32), (3, 1))
    ibm = np.tile(np.eye(4, dtype=np.float32).reshape(1, 16), (6, 1))
    doc = b.document(
        scenes=[{"nodes": [0, 6]}],
        nodes=[{"name": f"j{k}", **({"children": [k + 1]} if k < 5 else {})} for k in range(6)] + [{"mesh": 0, "skin": 0}],
        meshes=[{"primitives": [{"attributes": {"POSITION": b.add(verts, "VEC3", 5126),
                                                "JOINTS_0": b.add(j0, "VEC4", 5121), "JOINTS_1": b.add(j1, "VEC4", 5121),
                                                "WEIGHTS_0": b.add(w0, "VEC4", 5126), "WEIGHTS_1": b.add(w1, "VEC4", 5126)}}]}],
        skins=[{"joints": list(range(6)), "inverseBindMatrices": b.add(ibm, "MAT4", 5126)}],
    )
    path = tmp_path / "eight.glb"
    b.write_glb(path, doc)
    mesh = load_model(path).mesh
    names = mesh.skeleton.names
    got = {names[j]: round(float(w), 4) for j, w in zip(mesh.joints[0].tolist(), mesh.weights[0].tolist()) if w > 0}
    assert got == pytest.approx({"j4": 0.5 / 0.9, "j5": 0.2 / 0.9, "j1": 0.1 / 0.9, "j3": 0.1 / 0.9}, abs=1e-4)


def test_poses_output_is_what_conr_render_reads(glb, tmp_path) -> None:
    from conr.files.io import list_inputs
    from conr.files.udp import UDP_EXTS, read_udp

    out = tmp_path / "o"
    assert main(["poses", str(glb), "dance", "-o", str(out), "--size", "32", "--frames", "0:3", "--preview"]) == 0
    files = list_inputs(out, UDP_EXTS, "poses")
    assert [f.name for f in files] == ["0.npz", "1.npz", "2.npz"]
    frame = read_udp(files[1])
    assert frame.shape == (32, 32, 4) and frame[..., 3].sum() > 20


def test_model_without_a_skeleton_cannot_take_a_motion(tmp_path, glb, capsys) -> None:
    from .writers import GlbBuilder

    b = GlbBuilder()
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    doc = b.document(scenes=[{"nodes": [0]}], nodes=[{"name": "statue", "mesh": 0}],
                     meshes=[{"primitives": [{"attributes": {"POSITION": b.add(tri, "VEC3", 5126)}}]}])
    path = tmp_path / "statue.glb"
    b.write_glb(path, doc)
    out = tmp_path / "o"
    err = _fails(["poses", str(path), "walk", "-o", str(out)], capsys, str(path), out)
    assert "hips" in err and "fix:" in err
    _fails(["poses", str(glb), "walk", "-o", str(out), "--size", "100000"], capsys, "argument --size: 100000 is out of range (16 to 8192)", out)


def test_poses_can_also_write_the_models_character_sheet(glb, tmp_path) -> None:
    import cv2

    out = tmp_path / "o"
    assert main(["poses", str(glb), "walk", "-o", str(out), "--size", "48", "--frames", "0:1", "--sheet", "3"]) == 0
    manifest = json.loads((out / "poses.json").read_text())
    assert [v["yaw"] for v in manifest["sheet"]] == [0.0, 180.0, 90.0]
    for v in manifest["sheet"]:
        img = cv2.imread(str(out / v["file"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (48, 48, 4) and img[..., 3].max() == 255 and img[0, 0, 3] == 0
        udp = np.load(out / v["udp"])["i"]
        assert np.all(img[..., 3][udp[..., 3] == 1] > 0)


def test_z_up_bvh_drives_a_y_up_model_the_same_way(girl, glb, tmp_path) -> None:
    # The same clip as test_bvh_motion_retargets_onto_glb, exported Z-up and facing -Y (Blender's way):
    # every vector (x, y, z) becomes (x, -z, y).
    height = character(114)[0].height
    skel, _ = humanoid_skeleton(height)
    off = skel.rest_local[:, :3, 3].numpy() * 100
    off = np.stack([off[:, 0], -off[:, 2], off[:, 1]], 1)
    hip = 80 * height
    frames = np.zeros((2, 3 + 3 * 21))
    frames[:, :3] = [0, 0, hip]
    frames[1, :3] = [10, 0, hip - 5]
    frames[1, 3 + 3 * 6 + 2] = 90  # LeftArm: our -90 degrees about +Z is +90 about +Y here
    frames[1, 3 + 3 * 14 + 1] = 60  # LeftLeg about X, unchanged
    path = tmp_path / "zup.bvh"
    write_bvh(path, BVH_NAMES, list(skel.parents), off, frames)
    out = tmp_path / "o"
    assert main(["poses", str(glb), str(path), "-o", str(out), "--size", str(SIZE)]) == 0
    assert_same_frames(udp_frames(out), direct_udp(girl, _arm_and_knee_pose(girl)))


def test_compressed_gltf_is_refused_with_a_hint(tmp_path, capsys) -> None:
    path = tmp_path / "draco.gltf"
    path.write_text(json.dumps({"asset": {"version": "2.0"}, "extensionsRequired": ["KHR_draco_mesh_compression"]}))
    out = tmp_path / "o"
    err = _fails(["poses", str(path), "walk", "-o", str(out)], capsys, str(path), out)
    assert "KHR_draco_mesh_compression" in err and "without mesh compression" in err


@pytest.mark.parametrize("doc, message", [
    ({"nodes": [{"children": [1]}, {"children": [0]}]}, "cycle"),
    ({"nodes": [{"name": "Hips"}]}, "no triangle meshes"),
    ({"nodes": [{"children": [5]}]}, "invalid"),
])
def test_broken_node_trees_are_reported(tmp_path, capsys, doc, message) -> None:
    path = tmp_path / "broken.gltf"
    path.write_text(json.dumps({"asset": {"version": "2.0"}, **doc}))
    out = tmp_path / "o"
    assert message in _fails(["poses", str(path), "walk", "-o", str(out)], capsys, str(path), out)


def test_animation_is_picked_by_name_or_index(girl, glb, tmp_path, capsys) -> None:
    path = tmp_path / "clip.glb"
    quats = matrix_to_quat(axis_rotation("Y", -torch.tensor([0.0, 1.0]))).numpy()
    mesh_to_glb(girl, path, animation={"leftLowerArm": quats})
    # Another file's animation is retargeted by bone names onto the model.
    for pick in ("clip", "0"):
        out = tmp_path / f"o{pick}"
        assert main(["poses", str(glb), str(path), "--animation", pick, "-o", str(out), "--size", "32"]) == 0
        assert len(list(out.glob("*.npz"))) == 2
    out = tmp_path / "bad"
    err = _fails(["poses", str(glb), str(path), "--animation", "Run", "-o", str(out)], capsys, str(path), out)
    assert "no animation named 'Run'" in err and "available: clip" in err
    assert "no animations" in _fails(["poses", str(glb), str(glb), "-o", str(out)], capsys, str(glb), out)


def test_frame_range_picks_frames_and_is_checked(girl, glb, tmp_path, capsys) -> None:
    frames = np.zeros((12, 3 + 3 * 21))
    frames[:, 1] = 80
    frames[:, 3 + 3 * 6] = np.linspace(0, -90, 12)
    path = tmp_path / "arm.bvh"
    bvh_of_humanoid(path, frames)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["poses", str(glb), str(path), "--out", str(whole), "--size", "32"]) == 0
    assert main(["poses", str(glb), str(path), "--out", str(part), "--size", "32", "--frames", "4:7"]) == 0
    assert sorted(f.name for f in part.glob("*.npz")) == ["0.npz", "1.npz", "2.npz"]
    # Same camera rule over fewer frames may frame differently: compare the poses, not pixels.
    assert json.loads((part / "poses.json").read_text())["frames"] == ["0.npz", "1.npz", "2.npz"]
    assert len(list(whole.glob("*.npz"))) == 12
    out = tmp_path / "o"
    err = _fails(["poses", str(glb), str(path), "--out", str(out), "--frames", "10:20"], capsys, str(path), out)
    assert "frame range 10:20 is outside the motion, which has 12 frames" in err
    err = _fails(["poses", str(glb), str(path), "--out", str(out), "--frames", "5"], capsys, "is not a range", out)
    assert "A:B" in err


def test_orbit_camera_circles_the_character_at_one_distance(glb, tmp_path) -> None:
    out = tmp_path / "o"
    assert main(["poses", str(glb), "stand", "--out", str(out), "--size", "48", "--frames", "0:4", "--camera", "orbit"]) == 0
    cams = json.loads((out / "poses.json").read_text())["camera"]
    eyes = np.array([c["eye"] for c in cams])
    target = np.array(cams[0]["target"])
    dist = np.linalg.norm(eyes - target, axis=1)
    assert np.allclose(dist, dist[0]) and len(cams) == 4
    # A quarter turn per frame: front (+z), left side (+x), back (-z), right side (-x).
    d = (eyes - target)[:, [0, 2]] / dist[:, None]
    assert np.allclose(np.sign(d.round(3)), [[0, 1], [1, 0], [0, -1], [-1, 0]], atol=0.2)
    frames = udp_frames(out)
    widths = [int((f[..., 3].max(0) > 0).sum()) for f in frames]
    assert widths[1] < widths[0] and widths[3] < widths[2]  # the side view is narrower (T-pose arms point at us)


def test_camera_file_gives_one_or_per_frame_cameras(girl, glb, tmp_path, capsys) -> None:
    from conr.engine.camera import Camera

    cam = {"eye": [0.0, 0.9, 4.0], "target": [0.0, 0.9, 0.0], "fov_y": 30}
    one = tmp_path / "cam.json"
    one.write_text(json.dumps(cam))
    out = tmp_path / "o"
    assert main(["poses", str(glb), "stand", "--out", str(out), "--size", "32", "--camera", str(one)]) == 0
    posed, _ = pose_by_motion(girl, procedural_motion("stand", None))
    norm = UDPNormalizer.from_vertices(girl.rest_vertices())
    got = udp_frames(out)[0]
    used = json.loads((out / "poses.json").read_text())["camera"][0]
    expect = render_udp(girl, posed[0], Camera((0.0, 0.9, 4.0), (0.0, 0.9, 0.0), 32, 32, fov_y=30,
                                               near=used["near"], far=used["far"]), norm).numpy()
    assert (got[..., 3] == expect[..., 3]).mean() > 0.995
    many = tmp_path / "cams.json"
    many.write_text(json.dumps({"frames": [cam, cam]}))
    out2 = tmp_path / "o2"
    err = _fails(["poses", str(glb), "stand", "--out", str(out2), "--camera", str(many)], capsys, str(many), out2)
    assert "2 cameras for 1 frames" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"eye": [0, 1]}))
    err = _fails(["poses", str(glb), "stand", "--out", str(out2), "--camera", str(bad)], capsys, str(bad), out2)
    assert "malformed" in err
    err = _fails(["poses", str(glb), "stand", "--out", str(out2), "--camera", str(tmp_path / "none.json")], capsys,
                 "none.json", out2)
    assert "front, orbit" in err


def test_animation_without_keyframes_is_a_motion_with_no_frames(girl, tmp_path, capsys) -> None:
    path = tmp_path / "empty.glb"
    mesh_to_glb(girl, path, animation={"leftLowerArm": np.zeros((0, 4))})
    out = tmp_path / "o"
    err = _fails(["poses", str(path), str(path), "--out", str(out)], capsys, str(path), out)
    assert "no keyframes" in err
    bvh = tmp_path / "empty.bvh"
    bvh_of_humanoid(bvh, np.zeros((0, 3 + 3 * 21)))
    assert "no frames" in _fails(["poses", str(path), str(bvh), "--out", str(out)], capsys, str(bvh), out)


@pytest.mark.parametrize("name, data", [
    ("model.glb", b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
    ("model.pmx", b"PK\x03\x04 a zip file, not a model"),
    ("model.vrm", b""),
])
def test_model_files_that_are_not_what_their_extension_says(tmp_path, capsys, name, data) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "o"
    _fails(["poses", str(path), "walk", "--out", str(out)], capsys, str(path), out)


@pytest.mark.parametrize("name, data, message", [
    ("clip.bvh", b"\x89PNG\r\n\x1a\n binary", "malformed BVH"),
    ("clip.vmd", b"HIERARCHY\nROOT Hips\n", "not a VMD file"),
])
def test_motion_files_that_are_not_what_their_extension_says(glb, tmp_path, capsys, name, data, message) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "o"
    assert message in _fails(["poses", str(glb), str(path), "--out", str(out)], capsys, str(path), out)
