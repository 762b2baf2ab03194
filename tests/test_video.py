"""Video files a user can open: right frame count, size, colours and transparency; atomic output."""

from __future__ import annotations

import av
import numpy as np
import pytest

import conr.files.video as video
from conr.errors import ConrError
from conr.files.video import VideoWriter, parse_color, unpremultiply

H, W, N = 48, 64, 6
RED_AT, BLUE_AT, HALF_AT, CLEAR_AT = (16, 16), (36, 48), (8, 48), (2, 2)  # (y, x) probes
BG = (20, 200, 60)


def _frame() -> np.ndarray:
    """Premultiplied RGBA: opaque red and blue squares, half-transparent green, clear elsewhere."""
    f = np.zeros((H, W, 4), np.uint8)
    f[8:24, 8:28] = (255, 0, 0, 255)
    f[28:44, 36:60] = (0, 0, 255, 255)
    f[4:12, 40:56] = (0, 128, 0, 128)
    return f


def _encode(path, n: int = N, **kwargs) -> VideoWriter:
    with VideoWriter(path, **kwargs) as writer:
        for _ in range(n):
            writer.write(_frame())
    return writer


def _decode(path, decoder: str | None = None) -> list[np.ndarray]:
    """All frames as RGBA; `decoder` forces a decoder (ffmpeg's native vp9 one drops alpha)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = av.CodecContext.create(decoder, "r") if decoder else stream.codec_context
        frames = [f for packet in container.demux(stream) for f in ctx.decode(packet)]
        return [f.to_ndarray(format="rgba") for f in frames]


def _close(pixel: np.ndarray, expected, tol: int) -> None:
    assert np.abs(pixel.astype(int) - np.asarray(expected)).max() <= tol, f"{pixel} vs {expected}"


def test_mp4_composites_over_background(tmp_path):
    writer = _encode(tmp_path / "out.mp4", background=BG)
    frames = _decode(tmp_path / "out.mp4")
    assert writer.codec in video.available_codecs(".mp4")
    assert len(frames) == N and frames[0].shape == (H, W, 4)
    for f in frames:
        _close(f[CLEAR_AT][:3], BG, 6)
        _close(f[RED_AT][:3], (255, 0, 0), 8)
        _close(f[BLUE_AT][:3], (0, 0, 255), 8)
        _close(f[HALF_AT][:3], (10, 228, 30), 8)  # 0.5 * BG + premultiplied green


def test_mp4_pads_odd_sizes_with_background(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", background="black") as writer:
        writer.write(np.full((31, 45, 4), 255, np.uint8))
    (frame,) = _decode(tmp_path / "odd.mp4")
    assert frame.shape == (32, 46, 4)
    _close(frame[15, 20, :3], (255, 255, 255), 6)
    _close(frame[31, 45, :3], (0, 0, 0), 40)  # chroma subsampling blurs the padded corner


def test_webm_keeps_alpha(tmp_path):
    _encode(tmp_path / "out.webm")
    frames = _decode(tmp_path / "out.webm", decoder="libvpx-vp9")
    assert len(frames) == N and frames[0].shape == (H, W, 4)
    for f in frames:
        assert f[CLEAR_AT][3] <= 4
        assert f[RED_AT][3] >= 251 and f[BLUE_AT][3] >= 251
        _close(f[RED_AT][:3], (255, 0, 0), 8)
        _close(f[HALF_AT], (0, 255, 0, 128), 8)  # un-premultiplied for the straight-alpha codec


def test_mov_keeps_alpha(tmp_path):
    writer = _encode(tmp_path / "out.mov")
    frames = _decode(tmp_path / "out.mov")
    assert writer.codec == video.available_codecs(".mov")[0]
    assert len(frames) == N and frames[0].shape == (H, W, 4)
    for f in frames:
        _close(f[CLEAR_AT][3:], (0,), 1)
        _close(f[RED_AT], (255, 0, 0, 255), 3)
        _close(f[HALF_AT], (0, 255, 0, 128), 3)


def test_mov_falls_back_to_lossless_qtrle(tmp_path, monkeypatch):
    if "qtrle" not in av.codecs_available:
        pytest.skip("this PyAV build has no qtrle encoder")
    opens = video._opens
    monkeypatch.setattr(video, "_opens", lambda codec, *a: codec.name != "prores_ks" and opens(codec, *a))
    assert _encode(tmp_path / "anim.mov").codec == "qtrle"
    frames = _decode(tmp_path / "anim.mov")
    assert len(frames) == N
    np.testing.assert_array_equal(frames[0], unpremultiply(_frame()))  # lossless: exact


def test_gif_keeps_transparency(tmp_path):
    _encode(tmp_path / "out.gif")
    frames = _decode(tmp_path / "out.gif")
    assert len(frames) == N and frames[0].shape == (H, W, 4)
    for f in frames:
        assert f[CLEAR_AT][3] == 0
        np.testing.assert_array_equal(f[RED_AT], (255, 0, 0, 255))
        np.testing.assert_array_equal(f[BLUE_AT], (0, 0, 255, 255))
        np.testing.assert_array_equal(f[HALF_AT], (0, 255, 0, 255))  # 1-bit alpha: >= 128 is opaque


def test_frames_of_another_size_are_letterboxed(tmp_path):
    wide = np.zeros((H, 2 * W, 4), np.uint8)
    wide[...] = (255, 0, 0, 255)  # scaled by 1/2 to 64x24, centred: rows 12..35
    with VideoWriter(tmp_path / "box.mov") as writer:
        writer.write(_frame())
        writer.write(wide)
    first, boxed = _decode(tmp_path / "box.mov")
    assert boxed.shape == first.shape == (H, W, 4)
    assert boxed[:12, :, 3].max() <= 1 and boxed[36:, :, 3].max() <= 1
    assert boxed[12:36, :, 3].min() >= 254
    _close(boxed[24, 32], (255, 0, 0, 255), 3)


def test_straight_alpha_input(tmp_path):
    straight = unpremultiply(_frame())
    with VideoWriter(tmp_path / "s.webm", premultiplied=False) as writer:
        writer.write(straight)
    (frame,) = _decode(tmp_path / "s.webm", decoder="libvpx-vp9")
    _close(frame[HALF_AT], (0, 255, 0, 128), 8)


def test_unpremultiply_is_exact():
    premul = np.array([[[64, 32, 0, 128], [7, 7, 7, 0], [200, 1, 0, 100], [255, 255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(
        unpremultiply(premul), [[[128, 64, 0, 128], [0, 0, 0, 0], [255, 3, 0, 100], [255, 255, 255, 255]]]
    )


def test_bad_extension_lists_supported(tmp_path):
    with pytest.raises(ConrError) as info:
        VideoWriter(tmp_path / "clip.avi")
    msg = str(info.value)
    assert "clip.avi" in msg and ".avi" in msg
    assert all(ext in msg for ext in (".gif", ".mov", ".mp4", ".webm"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mov", ".gif"])
def test_exception_inside_with_leaves_nothing(tmp_path, ext):
    (tmp_path / f"keep{ext}").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / f"keep{ext}") as writer:
            writer.write(_frame())
            writer.write(_frame())
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == [f"keep{ext}"]  # no temp file left
    assert (tmp_path / f"keep{ext}").read_bytes() == b"old"  # the old file is untouched


def test_zero_frames_is_an_error(tmp_path):
    with pytest.raises(ConrError, match="no frames to encode") as info:
        with VideoWriter(tmp_path / "empty.mp4"):
            pass
    assert "empty.mp4" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_parse_color():
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("Grey") == parse_color("gray") == (128, 128, 128)
    assert parse_color("#00FF7f") == (0, 255, 127)
    assert parse_color("102030") == (16, 32, 48)
    for bad in ("purple", "#12345", "#gg0000", ""):
        with pytest.raises(ConrError, match="colour"):
            parse_color(bad)
