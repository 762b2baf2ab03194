"""`conr render` end to end on real files with a tiny model: outputs, videos, resume, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conr.cli import main
from conr.render.preprocess import prepare_udp


def render(capsys, *args: str) -> tuple[int, str]:
    code = main(["render", *args, "--device", "cpu", "--quiet"])
    return code, capsys.readouterr().err


def base_args(sheets, poses, weights, out) -> list[str]:
    return ["--sheets", str(sheets), "--poses", str(poses), "--weights", str(weights), "--out", str(out)]


def read_png(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)


def test_udp_sequence_to_frames_and_video(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    out, video = tmp_path / "out", tmp_path / "dance.mp4"
    code, err = render(capsys, *base_args(sheets, udp_poses, tiny_weights, out), "--video", str(video),
                       "--batch-size", "2")
    assert code == 0, err
    assert "rendered 3 frame(s)" in err
    for k in range(3):
        udp = np.load(udp_poses / f"{k}.npz")["i"]
        frame = read_png(out / f"{k}.png")
        assert frame.shape == udp.shape  # un-cropped to the pose frame's own size
        # outside the square crop around the visible body nothing is drawn
        crop = prepare_udp(udp, 256).crop
        outside = np.ones(udp.shape[:2], bool)
        outside[crop.top:crop.bottom, crop.left:crop.right] = False
        assert frame[outside, 3].max(initial=0) == 0 and frame[~outside, 3].max() > 0
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 3
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_frames_follow_natural_order_and_keep_names(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    (udp_poses / "0.npz").rename(udp_poses / "10.npz")
    out = tmp_path / "out"
    code, err = render(capsys, *base_args(sheets, udp_poses, tiny_weights, out))
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["1.png", "10.png", "2.png"]


def test_existing_output_is_kept_unless_asked(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    out = tmp_path / "out"
    assert render(capsys, *base_args(sheets, udp_poses, tiny_weights, out))[0] == 0
    first = (out / "0.png").read_bytes()
    os.utime(out / "0.png", (1, 1))

    code, err = render(capsys, *base_args(sheets, udp_poses, tiny_weights, out))
    assert code == 2 and "already holds 3 frame(s)" in err and "--overwrite" in err

    (out / "2.png").unlink()
    code, err = render(capsys, *base_args(sheets, udp_poses, tiny_weights, out), "--resume")
    assert code == 0, err
    assert os.stat(out / "0.png").st_mtime == 1  # kept, not rendered again
    assert (out / "2.png").exists() and "kept 2 existing" in err

    code, err = render(capsys, *base_args(sheets, udp_poses, tiny_weights, out), "--overwrite")
    assert code == 0 and (out / "0.png").read_bytes() == first and os.stat(out / "0.png").st_mtime != 1


def test_pose_images_with_saved_udp(capsys, sheets, image_poses, tiny_weights, tmp_path):
    out = tmp_path / "out"
    code, err = render(capsys, *base_args(sheets, image_poses, tiny_weights, out), "--save-udp",
                       "--video", str(tmp_path / "v.webm"))
    assert code == 0, err
    for name in ("0", "1"):
        pose = read_png(image_poses / f"{name}.png")
        assert read_png(out / f"{name}.png").shape == pose.shape
        with np.load(out / "udp" / f"{name}.npz", allow_pickle=False) as z:
            udp = z["i"]
        assert udp.shape == pose.shape and udp.dtype == np.float32
        assert 0 <= udp.min() and udp.max() <= 1
    assert (tmp_path / "v.webm").stat().st_size > 0


def test_straight_alpha_output(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert render(capsys, *base_args(sheets, udp_poses, tiny_weights, a))[0] == 0
    assert render(capsys, *base_args(sheets, udp_poses, tiny_weights, b), "--alpha", "straight")[0] == 0
    pre, straight = read_png(a / "0.png").astype(int), read_png(b / "0.png").astype(int)
    assert (pre[..., 3] == straight[..., 3]).all()
    seen = pre[..., 3] > 64
    # premultiplied = straight * alpha / 255, up to rounding
    assert np.abs(straight[seen, :3] * pre[seen, 3:4] / 255 - pre[seen, :3]).max() <= 2.5


def test_python_api_streams_frames_in_order(sheets, udp_poses, tiny_weights):
    from conr.render.pipeline import Renderer, find_poses

    renderer = Renderer.from_weights(tiny_weights, device="cpu")
    sheet = renderer.load_sheet(sheets)
    assert sheet.views == 4
    frames = renderer.render(sheet, find_poses(udp_poses), batch_size=2)
    assert [f.name for f in frames] == ["0", "1", "2"]


# ---------------------------------------------------------------- bad input


def _expect_error(capsys, args, out: Path, *needles: str) -> None:
    code, err = render(capsys, *args)
    assert code == 2, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on bad input"


def _cv2_png(path: Path, rgba: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA) if rgba.shape[2] == 4 else rgba)
    return path


def test_sheet_without_transparency(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    _cv2_png(sheets / "2.png", np.full((64, 64, 4), 255, np.uint8))
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "2.png", "background")


def test_rgb_sheet(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    _cv2_png(sheets / "1.png", np.full((64, 64, 3), 200, np.uint8))
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "1.png", "alpha")


def test_truncated_sheet(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    data = (sheets / "0.png").read_bytes()
    (sheets / "0.png").write_bytes(data[: len(data) // 2])
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "0.png", "truncated")


def test_empty_folders(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(capsys, base_args(empty, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "empty", "no character sheet files")
    _expect_error(capsys, base_args(sheets, empty, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "empty", "no pose files")


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((32, 32, 3), np.float32), "shape (32, 32, 3)"),
    (np.zeros((32, 32, 4), np.int32), "dtype int32"),
    (np.full((32, 32, 4), np.nan, np.float32), "NaN"),
])
def test_bad_pose_frames(capsys, sheets, udp_poses, tiny_weights, tmp_path, bad, needle):
    np.savez(udp_poses / "1.npz", i=bad)
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "1.npz", needle)


def test_pickled_pose_archive(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    np.savez(udp_poses / "1.npz", i=np.array([{"x": 1}], dtype=object))
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "1.npz", "pickled")


def test_oversized_image(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    img = np.zeros((2, 9000, 4), np.uint8)
    img[0, :10] = 255
    _cv2_png(sheets / "3.png", img)
    _expect_error(capsys, base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), tmp_path / "o",
                  "3.png", "8192")


def test_weights_folder_missing_a_file(capsys, sheets, udp_poses, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "shader.pth").write_bytes(b"")
    _expect_error(capsys, base_args(sheets, udp_poses, weights, tmp_path / "o"), tmp_path / "o",
                  str(weights), "udpparsernet.pth")


def test_existing_video_is_not_clobbered(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"keep me")
    _expect_error(capsys, [*base_args(sheets, udp_poses, tiny_weights, tmp_path / "o"), "--video", str(video)],
                  tmp_path / "o", "v.mp4", "already exists")
    assert video.read_bytes() == b"keep me"
