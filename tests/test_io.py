"""Validated readers: every user-facing error names the file and the problem."""

from __future__ import annotations

import io
import os
import stat
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conr.errors import ConrError
from conr.files.io import (
    MAX_IMAGE_SIDE,
    atomic_dir,
    atomic_write_png,
    list_inputs,
    natural_key,
    natural_sorted,
    read_image_size,
    read_rgba,
)
from conr.files.udp import read_udp


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


# ---------------------------------------------------------------- .npy headers that lie


def _npy_header(shape: tuple, descr: object = "<f4", version: int = 1) -> bytes:
    """An NPY header as numpy writes it; version 3 is version 2 with another version byte."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == 1:
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    data = bytearray(buf.getvalue())
    data[6] = version
    return bytes(data)


def _npz_member(path: Path, npy: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("i.npy", npy)
    return path


def _raises_small(fn, *words: str) -> ConrError:
    """ConrError raised without allocating what the file announces (numpy allocations are traced)."""
    tracemalloc.start()
    try:
        err = _raises(fn, *words)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak} bytes allocated"
    return err


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_udp_npz_refuses_huge_announced_shape(tmp_path, version):
    path = _npz_member(tmp_path / "huge.npz", _npy_header((100000, 100000, 4), version=version) + b"\0" * 64)
    _raises_small(lambda: read_udp(path), "huge.npz", "(100000, 100000, 4)", "float32", "8192 pixels a side")


def test_read_udp_npz_refuses_announced_bytes_over_cap(tmp_path):
    # sides within the limit, but 8192 * 8192 * 4 complex128 is 4 GiB: twice a float64 frame
    path = _npz_member(tmp_path / "wide.npz", _npy_header((8192, 8192, 4), "<c16") + b"\0" * 64)
    _raises_small(lambda: read_udp(path), "wide.npz", "(8192, 8192, 4)", "4.0 gib")
    flat = _npz_member(tmp_path / "flat.npz", _npy_header((10**12,)) + b"\0" * 64)
    _raises_small(lambda: read_udp(flat), "flat.npz", "(1000000000000,)", "gib")


def test_read_udp_npz_header_checks_dtype(tmp_path):
    pickled = _npz_member(tmp_path / "obj.npz", _npy_header((6, 5, 4), "|O") + b"\0" * 64)
    _raises(lambda: read_udp(pickled), "obj.npz", "pickled python objects")
    fields = _npz_member(tmp_path / "rec.npz", _npy_header((6, 5), [("x", "<f4"), ("y", "<f4")]) + b"\0" * 64)
    _raises(lambda: read_udp(fields), "rec.npz", "structured dtype")


def test_read_udp_npz_unreadable_headers(tmp_path):
    bad_magic = _npz_member(tmp_path / "magic.npz", b"NOTNUMPY" + b"\0" * 64)
    _raises(lambda: read_udp(bad_magic), "magic.npz", "corrupt", "unreadable header")
    garbage = _npz_member(tmp_path / "garbage.npz", b"\x93NUMPY\x01\x00" + struct.pack("<H", 16) + b"{not python}   \n")
    _raises(lambda: read_udp(garbage), "garbage.npz", "corrupt", "unreadable header")
    future = _npz_member(tmp_path / "v9.npz", b"\x93NUMPY\x09\x00" + b"\0" * 64)
    _raises(lambda: read_udp(future), "v9.npz", "unreadable header", "version 9.0")
    # a version-2 header may state its length in 4 bytes: 4 GiB is never read in
    long = _npz_member(tmp_path / "long.npz", b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b" " * 20000)
    _raises_small(lambda: read_udp(long), "long.npz", "corrupt", "unreadable header")


def test_read_udp_npz_version_3_still_loads(tmp_path):
    udp = _udp()
    path = _npz_member(tmp_path / "v3.npz", _npy_header(udp.shape, version=3) + udp.tobytes())
    np.testing.assert_array_equal(read_udp(path), udp)


def test_read_udp_npz_short_data_is_corrupt(tmp_path):
    path = _npz_member(tmp_path / "short.npz", _npy_header((64, 64, 4)) + b"\0" * 64)
    _raises(lambda: read_udp(path), "short.npz", "corrupt")


def test_render_cli_refuses_huge_announced_pose(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    from conr.cli import main

    _npz_member(udp_poses / "1.npz", _npy_header((100000, 100000, 4)) + b"\0" * 64)
    out = tmp_path / "o"
    code = main(["render", "--sheets", str(sheets), "--poses", str(udp_poses), "--weights", str(tiny_weights),
                 "--out", str(out), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "1.npz" in err and "(100000, 100000, 4)" in err and "8192" in err, err
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- output permissions


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_outputs_get_normal_permissions(tmp_path, umask_022):
    atomic_write_png(tmp_path / "f.png", _sheet())
    assert stat.S_IMODE((tmp_path / "f.png").stat().st_mode) == 0o644
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert os.umask(0o022) == 0o022, "the umask is restored after reading it"
    from conr.files.video import VideoWriter

    with VideoWriter(tmp_path / "v.webm", fps=10) as writer:
        writer.write(np.zeros((16, 16, 4), np.uint8))
    assert stat.S_IMODE((tmp_path / "v.webm").stat().st_mode) == 0o644


def test_atomic_outputs_follow_the_current_umask(tmp_path, umask_022):
    os.umask(0o027)  # changed after import: read at write time, not cached
    atomic_write_png(tmp_path / "f.png", _sheet())
    assert stat.S_IMODE((tmp_path / "f.png").stat().st_mode) == 0o640
    with atomic_dir(tmp_path / "out"):
        pass
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750


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
