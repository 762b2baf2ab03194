"""Validated readers: every user-facing error names the file and the problem."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conr.errors import ConrError
from conr.io import (
    MAX_IMAGE_SIDE,
    atomic_write_png,
    list_inputs,
    natural_key,
    natural_sorted,
    read_image_size,
    read_rgba,
    read_udp,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(arr: np.ndarray, color_type: int, width: int | None = None, height: int | None = None) -> bytes:
    """A minimal 8-bit PNG (OpenCV cannot write gray+alpha, and we need lying headers)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", width or w, height or h, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _sheet(h: int = 24, w: int = 20) -> np.ndarray:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[4:16, 3:12] = (200, 30, 40, 255)
    rgba[16:20, 3:12] = (10, 20, 250, 128)
    return rgba


def _raises(fn, *words: str) -> ConrError:
    with pytest.raises(ConrError) as info:
        fn()
    msg = str(info.value).lower()
    for word in words:
        assert word.lower() in msg, f"{word!r} not in {msg!r}"
    return info.value


# ---------------------------------------------------------------- natural order and listing


def test_natural_sorted_orders_numbers_and_ignores_case():
    names = ["frame10.npz", "Frame2.npz", "frame1.npz", "frame02.npz", "b.npz", "A.npz"]
    assert [p.name for p in natural_sorted(names)] == [
        "A.npz", "b.npz", "frame1.npz", "Frame2.npz", "frame02.npz", "frame10.npz",
    ]
    assert natural_key("2.npz") < natural_key("10.npz")


def test_list_inputs_folder(tmp_path):
    for name in ["10.png", "2.png", "B1.PNG", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()  # a folder, even with a matching name, is skipped
    got = list_inputs(tmp_path, {".png"}, "character sheet")
    assert [p.name for p in got] == ["2.png", "10.png", "B1.PNG"]


def test_list_inputs_list_keeps_order_and_checks_files(tmp_path):
    a, b = tmp_path / "b.npz", tmp_path / "a.npz"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert list_inputs([a, b], {"npz"}, "pose") == [a, b]
    _raises(lambda: list_inputs([a, tmp_path / "gone.npz"], {".npz"}, "pose"), "gone.npz", "does not exist")
    (tmp_path / "c.jpg").write_bytes(b"x")
    _raises(lambda: list_inputs([tmp_path / "c.jpg"], {".npz"}, "pose"), "c.jpg", ".npz")


def test_list_inputs_errors_name_the_folder(tmp_path):
    _raises(lambda: list_inputs(tmp_path / "nope", {".png"}, "character sheet"), "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_bytes(b"x")
    _raises(lambda: list_inputs(tmp_path / "empty", {".png", ".webp"}, "character sheet"),
            "empty", "no character sheet files", ".png", ".webp")


# ---------------------------------------------------------------- sizes


def test_read_image_size_from_header_only(tmp_path):
    # a PNG header claiming a huge image with no pixel data: only the header is read
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(np.zeros((1, 4), np.uint8), 0, width=100_000, height=30))
    assert read_image_size(path) == (30, 100_000)
    _raises(lambda: read_rgba(path), "bomb.png", "100000x30", str(MAX_IMAGE_SIDE))
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(cv2.imencode(".jpg", np.zeros((13, 17, 3), np.uint8))[1].tobytes())
    assert read_image_size(jpg) == (13, 17)
    webp = tmp_path / "a.webp"
    webp.write_bytes(cv2.imencode(".webp", _sheet(), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    assert read_image_size(webp) == (24, 20)


# ---------------------------------------------------------------- character sheets


def test_read_rgba_round_trip_is_exact(tmp_path):
    rgba = _sheet()
    atomic_write_png(tmp_path / "s.png", rgba)
    np.testing.assert_array_equal(read_rgba(tmp_path / "s.png"), rgba)


def test_read_rgba_16_bit_rounds(tmp_path):
    v = np.array([0, 128, 129, 257, 32767, 32768, 65407, 65535], np.uint16)
    rgba = np.zeros((2, 8, 4), np.uint16)
    rgba[0, :, 0] = v
    rgba[..., 3] = 65535
    rgba[1, :, 3] = 0
    atomic_write_png(tmp_path / "s16.png", rgba)
    got = read_rgba(tmp_path / "s16.png")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, :, 0], np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8))


def test_read_rgba_gray_alpha(tmp_path):
    ga = np.zeros((3, 4, 2), np.uint8)
    ga[..., 0] = 77
    ga[0, 0, 1] = 255
    ga[1, 1, 1] = 128
    (tmp_path / "ga.png").write_bytes(_png(ga, 4))
    got = read_rgba(tmp_path / "ga.png")
    assert got.shape == (3, 4, 4)
    np.testing.assert_array_equal(got[0, 0], [77, 77, 77, 255])
    np.testing.assert_array_equal(got[1, 1], [77, 77, 77, 128])
    assert got[2, 2, 3] == 0


def test_read_rgba_missing_file(tmp_path):
    _raises(lambda: read_rgba(tmp_path / "missing.png"), "missing.png", "does not exist")


def test_read_rgba_truncated_png(tmp_path):
    data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (40, 50, 4), np.uint8))[1].tobytes()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    _raises(lambda: read_rgba(path), "half.png", "truncated")


def test_read_rgba_not_an_image(tmp_path):
    path = tmp_path / "text.png"
    path.write_text("hello")
    _raises(lambda: read_rgba(path), "text.png", "cannot decode")


def test_read_rgba_refuses_images_without_alpha(tmp_path):
    rgb = tmp_path / "rgb.png"
    rgb.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    _raises(lambda: read_rgba(rgb), "rgb.png", "without an alpha channel", "transparent background")
    gray = tmp_path / "gray.png"
    gray.write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    _raises(lambda: read_rgba(gray), "gray.png", "grayscale", "transparent background")


def test_read_rgba_refuses_opaque_and_empty(tmp_path):
    opaque = _sheet()
    opaque[..., 3] = 255
    atomic_write_png(tmp_path / "opaque.png", opaque)
    _raises(lambda: read_rgba(tmp_path / "opaque.png"), "opaque.png", "no transparent pixel", "transparent background")
    empty = np.zeros((8, 8, 4), np.uint8)
    atomic_write_png(tmp_path / "empty.png", empty)
    _raises(lambda: read_rgba(tmp_path / "empty.png"), "empty.png", "fully transparent")


# ---------------------------------------------------------------- UDP frames


def _udp(h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(1).random((h, w, 4), dtype=np.float32)


def test_read_udp_npz_round_trip(tmp_path):
    udp = _udp()
    np.savez(tmp_path / "p.npz", i=udp)
    got = read_udp(tmp_path / "p.npz")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, udp)
    np.savez_compressed(tmp_path / "h.npz", i=udp.astype(np.float16))
    np.testing.assert_array_equal(read_udp(tmp_path / "h.npz"), udp.astype(np.float16).astype(np.float32))


def test_read_udp_refuses_pickles(tmp_path):
    np.savez(tmp_path / "pickled.npz", i=np.array([{"a": 1}], dtype=object))
    _raises(lambda: read_udp(tmp_path / "pickled.npz"), "pickled.npz", "pickled python objects", "np.savez")


def test_read_udp_missing_key_lists_keys(tmp_path):
    np.savez(tmp_path / "keys.npz", udp=_udp(), mask=_udp())
    _raises(lambda: read_udp(tmp_path / "keys.npz"), "keys.npz", "no array 'i'", "'udp'", "'mask'")


def test_read_udp_corrupt_archives(tmp_path):
    np.savez(tmp_path / "full.npz", i=_udp(40, 40))
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    _raises(lambda: read_udp(tmp_path / "cut.npz"), "cut.npz", "corrupt")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    _raises(lambda: read_udp(tmp_path / "junk.npz"), "junk.npz", "not a .npz")


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((6, 5, 4), np.int32), ["int32", "floating"]),
        (np.zeros((6, 5, 3), np.float32), ["(6, 5, 3)", "(h, w, 4)"]),
        (np.zeros((6, 5), np.float32), ["(6, 5)", "(h, w, 4)"]),
        (np.zeros((1, 5, 4), np.float32), ["5x1", "at least 2x2"]),
        (np.zeros((MAX_IMAGE_SIDE + 1, 2, 4), np.float16), [f"2x{MAX_IMAGE_SIDE + 1}", "limit"]),
    ],
)
def test_read_udp_validates_arrays(tmp_path, array, words):
    np.savez(tmp_path / "bad.npz", i=array)
    _raises(lambda: read_udp(tmp_path / "bad.npz"), "bad.npz", *words)


def test_read_udp_counts_nan_and_inf(tmp_path):
    udp = _udp()
    udp[0, 0, 0] = np.nan
    udp[1, 2, 3] = np.inf
    udp[2, 2, 1] = -np.inf
    np.savez(tmp_path / "nan.npz", i=udp)
    _raises(lambda: read_udp(tmp_path / "nan.npz"), "nan.npz", "3 nan or infinite")


def test_read_udp_png16_is_value_over_65535(tmp_path):
    v = np.random.default_rng(2).integers(0, 65536, (7, 9, 4), dtype=np.uint16)
    v[0, 0] = (0, 65535, 1, 65534)
    atomic_write_png(tmp_path / "p16.png", v)
    got = read_udp(tmp_path / "p16.png")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, v.astype(np.float32) / np.float32(65535))
    np.testing.assert_array_equal(got[0, 0, :2], [0.0, 1.0])


def test_read_udp_refuses_8_bit_png(tmp_path):
    atomic_write_png(tmp_path / "p8.png", _sheet())
    _raises(lambda: read_udp(tmp_path / "p8.png"), "p8.png", "16-bit rgba")


def test_read_udp_unknown_extension(tmp_path):
    (tmp_path / "pose.jpg").write_bytes(b"x")
    _raises(lambda: read_udp(tmp_path / "pose.jpg"), "pose.jpg", ".jpg", ".npz", ".exr", ".png")


def test_read_udp_missing_file(tmp_path):
    _raises(lambda: read_udp(tmp_path / "gone.npz"), "gone.npz", "does not exist")


def _write_exr(path, rgba):
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {c: np.ascontiguousarray(rgba[..., i]) for i, c in enumerate("RGBA")}) as f:
        f.write(str(path))


def test_read_udp_exr_round_trip(tmp_path):
    udp = _udp()
    _write_exr(tmp_path / "p.exr", udp)
    np.testing.assert_array_equal(read_udp(tmp_path / "p.exr"), udp)


def test_read_udp_exr_errors(tmp_path):
    import OpenEXR

    udp = _udp()
    _write_exr(tmp_path / "p.exr", udp)
    (tmp_path / "cut.exr").write_bytes((tmp_path / "p.exr").read_bytes()[:60])
    _raises(lambda: read_udp(tmp_path / "cut.exr"), "cut.exr", "exr")
    with OpenEXR.File({"type": OpenEXR.scanlineimage}, {"R": np.ascontiguousarray(udp[..., 0])}) as f:
        f.write(str(tmp_path / "r.exr"))
    _raises(lambda: read_udp(tmp_path / "r.exr"), "r.exr", "g, b, a")
