"""Motion from a video: exact answers for the landmark-to-rotation steps, the real estimator on real
photographs, and `conr motion` / `conr poses` end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conr.cli import main
from conr.engine.procedural import HUMANOID_BONES, humanoid_skeleton
from conr.engine.transforms import axis_rotation, euler_to_matrix
from conr.motion.capture import BVH_SCALE, motion_from_track
from conr.motion.estimator import PoseTrack
from conr.motion.filters import OneEuro, fill_gaps
from conr.motion.landmarks import INDEX, markers
from conr.motion.sides import choose_sides, swapped, untwist_legs
from conr.motion.solve import solve_rotations

DEG = math.pi / 180
# Float32 forward kinematics make the landmarks; the solver must give the angles back this closely.
TOLERANCE_DEG = 0.01


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.acos(cos.clamp(-1, 1)) / DEG


def known_poses(frames: int = 12, seed: int = 0, motion: bool = False) -> torch.Tensor:
    """(T, J, 3, 3) poses the landmarks determine: elbows and knees bent on their hinges by 30-100
    degrees, spine and chest turning together, neck and head turning together, feet pitching.
    Independent random poses, or with `motion` one move growing smoothly from frame to frame."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.3, 1.0, frames, dtype=torch.float64)

    def draw(*shape: int) -> torch.Tensor:
        if not motion:
            return torch.rand(frames, *shape, generator=g, dtype=torch.float64)
        return 0.5 + (torch.rand((1, *shape), generator=g, dtype=torch.float64) - 0.5) * \
            ramp.view(-1, *[1] * len(shape))

    def rnd(limit_deg: float) -> torch.Tensor:
        return euler_to_matrix((draw(3) * 2 - 1) * limit_deg * DEG, "ZXY")

    def bend() -> torch.Tensor:
        return (30 + 70 * draw()) * DEG

    rot = torch.eye(3, dtype=torch.float64).expand(frames, len(HUMANOID_BONES), 3, 3).clone()
    i = HUMANOID_BONES.index
    rot[:, i("hips")] = rnd(60)
    twist = axis_rotation("Y", (draw() * 2 - 1) * 30 * DEG)
    rot[:, i("spine")] = rot[:, i("chest")] = twist
    nod = rnd(20)
    rot[:, i("neck")] = rot[:, i("head")] = nod
    for side, forward in (("left", -1), ("right", 1)):
        rot[:, i(f"{side}UpperArm")] = rnd(70)
        rot[:, i(f"{side}LowerArm")] = axis_rotation("Y", forward * bend())
        rot[:, i(f"{side}Hand")] = rnd(30)
        rot[:, i(f"{side}UpperLeg")] = rnd(50)
        rot[:, i(f"{side}LowerLeg")] = axis_rotation("X", bend())
        rot[:, i(f"{side}Foot")] = axis_rotation("X", (draw() - 0.5) * 50 * DEG)
    return rot


def track_of(rotations: torch.Tensor, root: torch.Tensor | None = None, px_per_unit: float = 300.0) -> PoseTrack:
    """The landmarks a perfect estimator would report for the skeleton in these poses: world
    coordinates centred between the hips, image coordinates of an orthographic camera facing it."""
    skel, _ = humanoid_skeleton()
    pts = markers(skel.forward(rotations.float(), None if root is None else root.float())).numpy()
    hips = (pts[:, INDEX["left_hip"]] + pts[:, INDEX["right_hip"]]) / 2
    world = pts - hips[:, None]
    image = np.stack([320 + pts[..., 0] * px_per_unit, 400 - pts[..., 1] * px_per_unit], -1)
    t = len(pts)
    return PoseTrack(world, image, np.ones((t, 33)), np.ones(t, bool), 30.0, 640, 480)


# ---------------------------------------------------------------------------------------- exact answers


def test_landmarks_of_known_poses_give_those_poses_back():
    truth = known_poses()
    skel, _ = humanoid_skeleton()
    solved = solve_rotations(markers(skel.forward(truth.float())))
    err = _angle_deg(solved, truth)  # (T, J)
    worst = {HUMANOID_BONES[j]: float(err[:, j].max()) for j in range(len(HUMANOID_BONES))}
    assert max(worst.values()) < TOLERANCE_DEG, worst


def test_the_solver_does_not_depend_on_scale_or_position():
    truth = known_poses(4, seed=1)
    skel, _ = humanoid_skeleton()
    pts = markers(skel.forward(truth.float()))
    moved = pts * 1.73 + torch.tensor([0.4, -2.0, 5.0], dtype=torch.float64)
    assert float(_angle_deg(solve_rotations(moved), truth).max()) < TOLERANCE_DEG


def test_a_straight_arm_takes_no_twist_from_noise():
    rot = torch.eye(3, dtype=torch.float64).expand(1, len(HUMANOID_BONES), 3, 3).clone()
    rot[:, HUMANOID_BONES.index("leftUpperArm")] = axis_rotation("Z", torch.tensor([-60 * DEG], dtype=torch.float64))
    skel, _ = humanoid_skeleton()
    pts = markers(skel.forward(rot.float()))
    pts[:, INDEX["left_wrist"]] += torch.tensor([0.0, 0.0, 1e-4], dtype=torch.float64)  # a hair off straight
    solved = solve_rotations(pts)
    assert float(_angle_deg(solved, rot)[0, HUMANOID_BONES.index("leftUpperArm")]) < 0.5


def test_motion_from_a_perfect_track_is_the_motion_with_feet_on_the_floor():
    truth = known_poses(10, seed=2, motion=True)
    motion = motion_from_track(track_of(truth), smooth=None)
    assert float(_angle_deg(motion.rotations, truth).max()) < TOLERANCE_DEG
    feet = markers(motion.globals())[:, [INDEX[f"{s}_{p}"] for s in ("left", "right")
                                         for p in ("heel", "foot_index", "ankle")], 1]
    rest_floor = float(markers(humanoid_skeleton()[0].rest_global())[[INDEX["left_heel"], INDEX["left_foot_index"]],
                                                                       1].min())
    np.testing.assert_allclose(feet.min(dim=1).values.numpy(), rest_floor, atol=1e-5)


def test_sideways_travel_follows_the_hips_across_the_image():
    frames = 8
    truth = torch.eye(3, dtype=torch.float64).expand(frames, len(HUMANOID_BONES), 3, 3).clone()
    root = torch.zeros(frames, 3)
    root[:, 0] = torch.linspace(0, 0.7, frames)  # skeleton units
    motion = motion_from_track(track_of(truth, root), smooth=None)
    np.testing.assert_allclose(motion.root_translation[:, 0].numpy(), root[:, 0].numpy(), atol=1e-3)


def test_frames_without_a_person_are_filled_and_counted():
    truth = known_poses(9, seed=3, motion=True)
    track = track_of(truth)
    lost = [3, 4, 8]
    track.found[lost] = False
    track.world[lost] = 0
    track.image[lost] = 0
    motion = motion_from_track(track, smooth=None)
    assert motion.warnings == ["no person found in 3 of 9 frames (3-4, 8); filled from their neighbours"]
    assert motion.num_frames == 9
    kept = [k for k in range(9) if k not in lost]
    assert float(_angle_deg(motion.rotations[kept], truth[kept]).max()) < TOLERANCE_DEG


def test_fill_gaps_interpolates_linearly_and_holds_the_ends():
    x = np.array([[0.0], [9.0], [2.0], [9.0], [9.0], [8.0], [9.0]])
    found = np.array([False, True, True, False, False, True, False])
    np.testing.assert_allclose(fill_gaps(x, found)[:, 0], [9, 9, 2, 4, 6, 8, 8])


def test_one_euro_steadies_a_still_pose_and_keeps_up_with_a_fast_move():
    rng = np.random.default_rng(0)
    still = 1.0 + 0.01 * rng.standard_normal(300)
    np.testing.assert_array_equal(OneEuro()(np.full(50, 3.0), 30.0), np.full(50, 3.0))
    assert OneEuro()(still, 30.0)[30:].std() < still.std() / 2
    ramp = np.linspace(0, 6, 60)  # 3 units/s
    lag_adaptive = np.abs(OneEuro(1.5, 0.5)(ramp, 30.0) - ramp)[-1]
    lag_fixed = np.abs(OneEuro(1.5, 0.0)(ramp, 30.0) - ramp)[-1]
    assert lag_adaptive < lag_fixed / 3


def test_left_and_right_mixed_up_by_the_estimator_are_put_back():
    truth = known_poses(20, seed=4, motion=True)
    track = track_of(truth)
    wrong = np.zeros(20, bool)
    wrong[[0, 1, 7, 8, 9, 15]] = True  # the reading seen from behind: sides swapped, depth reversed
    world, image = track.world.copy(), track.image.copy()
    world[wrong], image[wrong] = swapped(world[wrong], image[wrong])
    np.testing.assert_array_equal(choose_sides(world, track.found), wrong)
    legs = track.world.copy()
    legs[5, [INDEX["left_knee"], INDEX["right_knee"]]] = legs[5, [INDEX["right_knee"], INDEX["left_knee"]]]
    legs[5, [INDEX["left_hip"], INDEX["right_hip"]]] = legs[5, [INDEX["right_hip"], INDEX["left_hip"]]]
    fixed = untwist_legs(legs, track.image.copy())
    assert fixed.tolist() == [k == 5 for k in range(20)]
    np.testing.assert_array_equal(legs[5, INDEX["left_knee"]], track.world[5, INDEX["left_knee"]])


def test_bvh_written_and_read_back_is_the_same_motion(tmp_path):
    from conr.engine.formats.bvh import load_bvh
    from conr.engine.retarget import match_humanoid

    truth = known_poses(6, seed=5, motion=True)
    root = torch.zeros(6, 3)
    root[:, 0] = torch.linspace(0, 0.3, 6)
    motion = motion_from_track(track_of(truth, root), smooth=None)
    path = tmp_path / "m.bvh"
    motion.save_bvh(path)
    bvh = load_bvh(path)
    assert bvh.num_frames == 6 and abs(bvh.fps - 30.0) < 1e-4
    bones = match_humanoid(bvh.skeleton.names)
    assert sorted(bones) == sorted(HUMANOID_BONES)
    got = bvh.global_transforms(np.arange(6))[:, [bones[b] for b in HUMANOID_BONES], :3, 3]
    want = motion.globals()[..., :3, 3].double() * BVH_SCALE
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-3)  # centimetres


# ---------------------------------------------------------------------------------------- the real estimator

@pytest.fixture
def landmarker() -> None:
    """Tests of the real estimator need MediaPipe (the README's set-up installs it)."""
    pytest.importorskip("mediapipe", reason="MediaPipe is not installed: see the README's set-up")


def _astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (test extra) ships the photograph")
    return skimage_data.astronaut()  # 512 x 512 RGB: a person facing the camera, head to hips


def test_the_estimator_finds_the_person_in_a_real_photograph(landmarker):
    from conr.motion.estimator import track_frames
    from conr.motion.solve import solve_rotations

    track = track_frames([_astronaut()], 30.0)
    assert track.found.tolist() == [True]
    px = {n: track.image[0, INDEX[n]] for n in ("nose", "left_shoulder", "right_shoulder", "left_eye", "right_eye")}
    # Boxes drawn by hand on the photograph around her face and shoulders.
    assert 190 < px["nose"][0] < 250 and 100 < px["nose"][1] < 160
    assert 270 < px["left_shoulder"][0] < 340 and 210 < px["left_shoulder"][1] < 290  # her left: the image's right
    assert 80 < px["right_shoulder"][0] < 150 and 200 < px["right_shoulder"][1] < 280
    assert px["right_eye"][0] < px["nose"][0] < px["left_eye"][0]
    hips = solve_rotations(torch.from_numpy(track.world))[0, 0]
    assert float(hips[2, 2]) > 0.7  # the body faces the camera (+Z)


def _photo_video(path: Path, frames: int = 10, blank: tuple[int, ...] = ()) -> Path:
    """A short video made from the photograph: a slow pan, with grey frames where `blank` says."""
    import cv2

    from conr.files.video import VideoWriter

    img = _astronaut()
    with VideoWriter(path, fps=10, premultiplied=False) as writer:
        for k in range(frames):
            shift = np.float32([[1, 0, 3 * k], [0, 1, 0]])
            frame = cv2.warpAffine(img, shift, (512, 512), borderMode=cv2.BORDER_REPLICATE)
            if k in blank:
                frame[:] = 128
            writer.write(np.dstack([frame, np.full((512, 512), 255, np.uint8)]))
    return path


def test_conr_motion_then_conr_poses_then_render(landmarker, tmp_path, capsys):
    video = _photo_video(tmp_path / "pan.mp4", frames=10, blank=(4,))
    bvh = tmp_path / "pan.bvh"
    assert main(["motion", str(video), "--out", str(bvh), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "no person found in 1 of 10 frames (4)" in err and "wrote 10 frames" in err
    assert main(["motion", str(video), "--out", str(bvh), "--quiet"]) == 2  # never clobbered unasked
    assert "already exists" in capsys.readouterr().err
    poses = tmp_path / "poses"
    assert main(["poses", "--procedural", "900002", str(bvh), "-o", str(poses), "--size", "64",
                 "--frames", "0:3", "--sheet", "2"]) == 0
    frames = sorted(poses.glob("*.npz"))
    assert len(frames) == 3
    udp = np.load(frames[0])["i"]
    assert udp[..., 3].mean() > 0.02  # a body is drawn
    out = tmp_path / "render"
    assert main(["render", "--sheets", str(poses / "sheet"), "--poses", str(poses), "--out", str(out),
                 "--video", str(out / "dance.mp4"), "--quiet"]) == 0
    assert (out / "dance.mp4").stat().st_size > 1000 and len(list(out.glob("*.png"))) == 3


def test_conr_poses_takes_a_video_directly(landmarker, tmp_path):
    video = _photo_video(tmp_path / "pan.mp4", frames=4)
    out = tmp_path / "poses"
    assert main(["poses", "--procedural", "900003", str(video), "-o", str(out), "--size", "48"]) == 0
    assert len(list(out.glob("*.npz"))) == 4


@pytest.mark.parametrize("case", ["not a video", "nobody", "bad output name", "bad fps"])
def test_bad_motion_inputs_get_clear_messages(landmarker, tmp_path, capsys, case):
    video = tmp_path / "in.mp4"
    args = ["motion", str(video), "--out", str(tmp_path / "m.bvh"), "--quiet"]
    if case == "not a video":
        video.write_text("hello")
        words = ["in.mp4", "cannot read this video"]
    elif case == "nobody":
        _photo_video(video, frames=3, blank=(0, 1, 2))
        words = ["no person was found"]
    elif case == "bad output name":
        _photo_video(video, frames=1)
        args[3] = str(tmp_path / "m.txt")
        words = ["m.txt", ".bvh"]
    else:
        _photo_video(video, frames=1)
        args += ["--fps", "0"]
        words = ["--fps"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "m.bvh").exists()


def test_the_web_ui_service_moves_the_demo_character_like_the_person_in_a_video(landmarker, tmp_path):
    from conr.ui.service import RenderRequest, RenderService

    video = _photo_video(tmp_path / "pan.mp4", frames=6)
    service = RenderService(None, "cpu", workdir=tmp_path / "work")
    req = RenderRequest(pose_source="demo", demo_seed=900006, motion_file=str(video), frames=3, fps=10)
    result = service.render(req, tmp_path / "out")
    assert result.frames == 3  # the video is cut to the frames asked for
    assert result.mp4.stat().st_size > 1000
    from conr.engine.formats.bvh import load_bvh

    assert result.bvh is not None and load_bvh(result.bvh).num_frames == 3  # the motion, to download
    assert list((tmp_path / "work").iterdir()) == []


def test_fps_and_frames_pick_the_video_frames(tmp_path):
    from conr.motion.estimator import open_video

    video = _photo_video(tmp_path / "pan.mp4", frames=10)  # 10 fps, 1 s
    assert sum(1 for _ in open_video(video)[1]) == 10
    info, frames = open_video(video, fps=5)
    assert info.fps == 5 and sum(1 for _ in frames) == 5
    firsts = [f[0, 0].copy() for f in open_video(video, fps=5)[1]]
    every_other = [f[0, 0].copy() for k, f in enumerate(open_video(video)[1]) if k % 2 == 0]
    np.testing.assert_array_equal(firsts, every_other)
    assert sum(1 for _ in open_video(video, frame_range=(2, 6))[1]) == 4
    assert sum(1 for _ in open_video(video, fps=20, frame_range=(0, 100))[1]) == 20
