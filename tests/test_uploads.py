"""Uploads from strangers: natural order under our own names, every limit, zip slip, links, lies."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from conr.errors import ConrError
from conr.files.uploads import Upload, UploadLimits, _copy_counted, _Planned, take_uploads

POSES = {".npz", ".exr", ".png", ".zip"}
TINY = UploadLimits(max_files=5, max_file_mb=1000 / 2**20, max_total_mb=2500 / 2**20, max_members=8)


def _file(folder: Path, name: str, data: bytes = b"data") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _refused(files, dest: Path, *words: str, exts=POSES, limits=TINY, names=None) -> str:
    with pytest.raises(ConrError) as info:
        take_uploads(files, dest, exts, "pose frames", limits, names=names)
    msg = str(info.value)
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    assert not dest.exists() or not any(dest.iterdir()), "a refused upload leaves nothing behind"
    return msg


@pytest.fixture
def up(tmp_path) -> Path:
    return tmp_path / "uploaded"


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "request"


# ---------------------------------------------------------------- order and names


def test_natural_order_under_our_names(up, dest):
    files = [_file(up, n, n.encode()) for n in ["frame10.png", "Frame2.png", "frame1.png"]]
    got = take_uploads(files, dest, {".png"}, "pose frames", UploadLimits())
    assert [u.name for u in got] == ["frame1.png", "Frame2.png", "frame10.png"]
    assert [u.path for u in got] == [dest / "00000.png", dest / "00001.png", dest / "00002.png"]
    assert [u.path.read_bytes() for u in got] == [b"frame1.png", b"Frame2.png", b"frame10.png"]
    assert sorted(p.name for p in dest.iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_zips_expand_in_place_in_member_order(up, dest):
    b = _zip(up / "b.zip", {
        "walk/10.npz": b"w10", "walk/2.npz": b"w2", "run/1.exr": b"r1",
        "walk/": b"", "__MACOSX/walk/._2.npz": b"junk", "walk/._3.npz": b"junk", "walk/.DS_Store": b"junk",
        "notes.txt": b"skipped", "inner.zip": b"nested zips are not opened",
    })
    files = [_file(up, "c.npz", b"c"), b, _file(up, "a.png", b"a")]
    got = take_uploads(files, dest, POSES, "pose frames", UploadLimits())
    assert [u.name for u in got] == ["a.png", "b.zip: run/1.exr", "b.zip: walk/2.npz", "b.zip: walk/10.npz", "c.npz"]
    assert [u.path.name for u in got] == ["00000.png", "00001.exr", "00002.npz", "00003.npz", "00004.npz"]
    assert [u.path.read_bytes() for u in got] == [b"a", b"r1", b"w2", b"w10", b"c"]
    assert all(u.path.parent == dest for u in got)


def test_display_names_choose_order_and_extension(up, dest):
    # web frameworks store uploads under their own names; the visitor's names come separately
    files = [_file(up, "tmp_a1b2", b"ten"), _file(up, "tmp_c3d4", b"two")]
    got = take_uploads(files, dest, {".png"}, "pose frames", UploadLimits(), names=["10.PNG", "2.png"])
    assert got == [Upload(dest / "00000.png", "2.png"), Upload(dest / "00001.png", "10.PNG")]
    assert got[0].path.read_bytes() == b"two"


def test_visitor_names_never_reach_a_path(up, dest):
    evil = _file(up, "x.png")
    got = take_uploads([evil], dest, {".png"}, "pose frames", UploadLimits(), names=["../../etc/x.png"])
    assert got[0].path == dest / "00000.png" and got[0].name == "../../etc/x.png"
    assert [p.name for p in dest.iterdir()] == ["00000.png"]
    assert not (dest.parent.parent / "etc").exists()


def test_files_are_copied_not_moved_or_linked(up, dest):
    src = _file(up, "1.png", b"pixels")
    zsrc = _zip(up / "z.zip", {"2.png": b"more"})
    got = take_uploads([src, zsrc], dest, {".png", ".zip"}, "pose frames", UploadLimits())
    assert src.read_bytes() == b"pixels" and zsrc.is_file()
    for u in got:
        st = u.path.lstat()
        assert stat.S_ISREG(st.st_mode) and not u.path.is_symlink()
        assert st.st_nlink == 1 and st.st_ino != src.stat().st_ino


def test_control_characters_in_names_are_not_shown(up, dest):
    msg = _refused([_file(up, "a.gif")], dest, "a.gif?  fix: nothing", names=["a.gif\n  fix: nothing"])
    assert "\n  fix: nothing" not in msg


# ---------------------------------------------------------------- refusals


def test_no_files(dest):
    _refused([], dest, "nothing uploaded for pose frames", ".npz")


def test_extension_not_accepted_lists_accepted(up, dest):
    _refused([_file(up, "walk.gif")], dest, "walk.gif", "'.gif'", ".exr, .npz, .png, .zip")
    _refused([_file(up, "noext")], dest, "noext", "(none)")
    # zips are opened only where the input accepts them
    _refused([_zip(up / "f.zip", {"1.png": b"x"})], dest, "f.zip has extension '.zip'; accepted for pose frames: .png",
             exts={".png"})


def test_too_many_files_counts_zip_members(up, dest):
    _refused([_file(up, f"{i}.png") for i in range(6)], dest, "more than 5 files for pose frames", "5.png")
    z = _zip(up / "many.zip", {f"{i}.npz": b"x" for i in range(6)})
    _refused([z], dest, "more than 5 files", "many.zip: 5.npz")


def test_file_over_size_limit(up, dest):
    _refused([_file(up, "big.png", b"x" * 1001)], dest, "big.png", "1001 bytes", "over the limit", "one file")


def test_zip_member_over_size_limit_is_refused_before_extracting(up, dest):
    # 1 MB of zeros deflates to about 1 KB: the declared size is what counts
    bomb = _zip(up / "bomb.zip", {"0.npz": b"ok", "1.npz": bytes(2**20)})
    assert bomb.stat().st_size < 5000
    _refused([bomb], dest, "bomb.zip: 1.npz", "1.0 MB", "over the limit")
    assert not dest.exists(), "nothing is extracted, not even the good member"


def test_total_over_limit(up, dest):
    files = [_file(up, f"{i}.png", b"x" * 900) for i in range(3)]
    _refused(files, dest, "add up to more than", "2.png")
    z = _zip(up / "t.zip", {f"{i}.npz": b"x" * 900 for i in range(3)})
    _refused([z], dest, "add up to more than", "t.zip: 2.npz")
    assert not dest.exists()


def test_not_a_zip(up, dest):
    _refused([_file(up, "fake.zip", b"PK\x03\x04 but nothing else")], dest, "fake.zip", "not a zip archive")
    good = _zip(up / "cut.zip", {"1.npz": b"x" * 500}).read_bytes()
    _refused([_file(up, "cut.zip", good[:-30])], dest, "cut.zip", "corrupt")


def test_too_many_zip_entries(up, dest):
    # counted over all entries, junk and folders included, before anything else
    z = _zip(up / "wide.zip", {f"__MACOSX/{i}": b"" for i in range(9)})
    _refused([z], dest, "wide.zip", "9 entries", "limit of 8")


@pytest.mark.parametrize("member", ["../evil.npz", "/abs.npz", "walk/../../evil.npz", "..\\evil.npz",
                                    "\\abs.npz", "C:/evil.npz", "c:evil.npz"])
def test_zip_slip_names_are_refused(up, dest, member):
    z = _zip(up / "slip.zip", {"0.npz": b"ok", member: b"x"})
    _refused([z], dest, "slip.zip", "outside the archive", "refused for safety")
    assert not (up.parent / "evil.npz").exists()


def test_symlink_member_is_refused(up, dest):
    z = up / "link.zip"
    up.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("0.npz", b"ok")
        info = zipfile.ZipInfo("1.npz")
        info.create_system = 3  # unix
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _refused([z], dest, "link.zip: 1.npz", "symbolic link")


def test_zip_without_usable_member(up, dest):
    z = _zip(up / "docs.zip", {"readme.txt": b"x", "inner.zip": b"x", "__MACOSX/._1.npz": b"x", "d/": b""})
    _refused([z], dest, "docs.zip", "nothing usable for pose frames", "looked for .exr, .npz, .png")


def test_empty_files_are_refused(up, dest):
    _refused([_file(up, "0.png", b"")], dest, "0.png", "empty (0 bytes)")
    _refused([_zip(up / "e.zip", {"1.npz": b"x", "2.npz": b""})], dest, "e.zip: 2.npz", "empty")


def test_encrypted_member_is_refused(up, dest):
    z = _zip(up / "locked.zip", {"1.npz": b"x"}, zipfile.ZIP_STORED)
    data = bytearray(z.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the 'encrypted' flag bit
        i = data.index(sig) + flag_at
        data[i] |= 1
    z.write_bytes(bytes(data))
    _refused([z], dest, "locked.zip: 1.npz", "password")


# ---------------------------------------------------------------- headers that lie, cleanup


def _lying_zip(path: Path, members: dict[str, bytes], liar: str, declared: int) -> Path:
    """A stored zip whose entry `liar` declares `declared` bytes (and a matching CRC) but holds more."""
    _zip(path, members, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    name = liar.encode()
    crc = struct.pack("<I", zlib.crc32(members[liar][:declared]))
    for sig, crc_at, size_at, name_at in ((b"PK\x03\x04", 14, 22, 30), (b"PK\x01\x02", 16, 24, 46)):
        i = data.index(sig)
        while data[i + name_at : i + name_at + len(name)] != name:
            i = data.index(sig, i + 1)
        data[i + crc_at : i + crc_at + 4] = crc
        data[i + size_at : i + size_at + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(data))
    return path


def test_member_longer_than_declared_yields_only_declared_bytes(up, dest):
    # zipfile stops at the declared size; the CRC then decides whether the archive is whole
    z = _lying_zip(up / "lie.zip", {"1.npz": b"a" * 10, "2.npz": b"b" * 800}, "2.npz", 10)
    got = take_uploads([z], dest, POSES, "pose frames", TINY)
    assert got[1].path.read_bytes() == b"b" * 10


def test_corrupt_member_cleans_up_what_was_written(up, dest):
    z = _lying_zip(up / "bad.zip", {"1.npz": b"a" * 10, "2.npz": b"b" * 800}, "2.npz", 10)
    data = bytearray(z.read_bytes())
    i = data.index(b"b" * 10)
    data[i] = ord("c")  # now the CRC no longer matches
    z.write_bytes(bytes(data))
    dest.mkdir()
    (dest / "keep.txt").write_text("the caller's")
    with pytest.raises(ConrError, match=r"bad\.zip: 2\.npz cannot be extracted: the archive is corrupt"):
        take_uploads([z], dest, POSES, "pose frames", TINY)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"], "00000.npz was written, then removed"


def test_byte_counter_stops_a_source_longer_than_declared(tmp_path):
    item = _Planned("z.zip: 1.npz", ".npz", 10, lambda: io.BytesIO(b"x" * 10**6))
    out = io.BytesIO()
    with pytest.raises(ConrError, match="more data than the 10 bytes its header declares"):
        with item.open() as src:
            _copy_counted(src, out, item)
    assert len(out.getvalue()) <= 10
