"""What conr promises when things go wrong: a message that names the option or file and says what to
do, exit status 2, no traceback, and nothing half-written or left behind, across every command."""

from __future__ import annotations

import json
import os
import struct
import zlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conr.cli import main
from conr.files.io import atomic_dir, atomic_save_npz, remove_stale_partials


def _fails(argv: list[str], capsys, needle: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err, err
    assert "Traceback" not in err
    return err


def _png_grey_alpha_16(img: np.ndarray) -> bytes:
    """A 16-bit grey + alpha PNG (colour type 4), which OpenCV cannot write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w = img.shape[:2]
    rows = b"".join(b"\x00" + img[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def pose_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "poses"
    udp = np.zeros((32, 32, 4), np.float32)
    udp[8:24, 12:20] = [0.5, 0.5, 0.5, 1.0]
    atomic_save_npz(folder / "0.npz", i=udp)
    return folder


# Option values out of range, NaN, the wrong type or form: refused when parsed, naming the option.
BAD_OPTIONS = [
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--fps", "0"], "argument --fps: 0 is out of range"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--fps", "nan"], "argument --fps: 'nan' is not a finite"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--fps", "1e9"], "argument --fps: 1e9 is out of range"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--size", "0"], "argument --size: 0 is out of range"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--size", "x"], "argument --size: 'x' is not a whole"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--batch-size", "0"], "argument --batch-size: 0"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--batch-size", "-3"], "argument --batch-size: -3"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--fps", "100000"], "argument --fps: 100000 is out of range"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--yaw", "nan"], "argument --yaw: 'nan' is not a finite"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--size", "100000"], "argument --size: 100000 is out of"),
    (["poses", "--procedural", "-1", "walk", "-o", "o"], "argument --procedural: -1 is out of range"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--sheet", "9"], "argument --sheet: 9 is out of range"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--threads", "0"], "argument --threads: 0 is out of range"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--frames", "5:2"], "--frames '5:2' ends before it starts"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--frames", "a:b"], "--frames 'a:b' is not a range"),
    (["motion", "v.mp4", "--fps", "100000"], "argument --fps: 100000 is out of range"),
    (["motion", "v.mp4", "--beta", "nan"], "argument --beta: 'nan' is not a finite"),
    (["motion", "v.mp4", "--min-cutoff", "0"], "argument --min-cutoff: 0 is out of range"),
    (["synth", "--out", "o", "--detail", "1000"], "argument --detail: 1000 is out of range (0.1 to 4)"),
    (["synth", "--out", "o", "--size", "8"], "argument --size: 8 is out of range"),
    (["synth", "--out", "o", "--characters", "1000000"], "argument --characters/--count: 1000000 is out of range"),
    (["synth", "--out", "o", "--style-seed", "-5"], "argument --style-seed: -5 is out of range"),
    (["synth", "--out", "o", "--styles", "oil"], "--styles: unknown style 'oil'"),
    (["synth", "--out", "o", "--yaw", "inf"], "argument --yaw: 'inf' is not a finite"),
    (["demo", "--fps", "0"], "argument --fps: 0 is out of range"),
    (["demo", "--frames", "0"], "argument --frames: 0 is out of range"),
    (["demo", "--seed", "-1"], "argument --seed: -1 is out of range"),
    (["eval", "--data", "d", "--views", "0"], "argument --views: 0 is out of range"),
    (["eval", "--data", "d", "--max-frames", "0"], "argument --max-frames: 0 is out of range"),
    (["parse", "x.png", "--out", "o", "--size", "-1"], "argument --size: -1 is out of range"),
    (["train", "--data", "d", "--out", "o", "--loss-rgba", "nan"], "argument --loss-rgba: 'nan' is not a finite"),
    (["train", "--data", "d", "--out", "o", "--loss-flow", "-1"], "argument --loss-flow: -1 is out of range"),
    (["train", "--data", "d", "--out", "o", "--steps", "0"], "--steps 0: must be from 1 to 100,000,000"),
    (["train", "--data", "d", "--out", "o", "--lr", "nan"], "--lr nan"),
    (["train", "--data", "d", "--out", "o", "--crop-scale", "2:1"], "--crop-scale '2:1': need 0.5 <= MIN <= MAX <= 3"),
    (["train", "--data", "d", "--out", "o", "--crop-scale", "big"], "--crop-scale 'big' is not MIN:MAX"),
    (["ui", "--port", "70000"], "argument --port: 70000 is out of range"),
    (["ui", "--max-file-mb", "0"], "argument --max-file-mb: 0 is out of range"),
    (["ui", "--concurrency", "0"], "argument --concurrency: 0 is out of range"),
    (["ui", "--port", "0"], "argument --port: 0 is out of range (1 to 65535)"),  # Gradio cannot pick one
    # A frame range past any motion, or a built-in motion made up to an end that would take gigabytes.
    (["poses", "--procedural", "1", "walk", "-o", "o", "--frames", "0:99999999999999999999"], "goes past frame 1,000,000"),
    (["poses", "--procedural", "1", "walk", "-o", "o", "--frames", "199999:200000"], "at most 100,000 frames are made"),
    # An empty value (an unset shell variable) would be the current folder, read or filled.
    (["render", "--sheets", "", "--poses", "p", "--out", "o"], "argument --sheets: an empty value"),
    (["render", "--sheets", "s", "--poses", "p", "--out", "o", "--weights", ""], "argument --weights: an empty value"),
    (["synth", "--out", " "], "argument --out/-o: an empty value"),
    (["eval", "--data", "d", "--json", ""], "argument --json: an empty value"),
    (["poses", "--procedural", "1", "", "-o", "o"], "argument MODEL MOTION: an empty value"),
]


@pytest.mark.parametrize("argv, needle", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_refused_before_anything_is_made(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails(argv, capsys, needle)
    assert not (tmp_path / "o").exists()


def test_bad_devices_are_named(capsys, tmp_path, pose_dir, sheets):
    for device in ("tpu:7", "nonsense", "cuda:99"):
        _fails(["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--out", str(tmp_path / "o"),
                "--device", device], capsys, "--device")
        _fails(["synth", "--out", str(tmp_path / "s"), "--device", device], capsys, "--device")
    assert not (tmp_path / "o").exists() and not (tmp_path / "s").exists()


def test_bad_files_are_named(capsys, tmp_path, pose_dir, sheets):
    empty = tmp_path / "empty_sheet"
    empty.mkdir()
    (empty / "front.png").write_bytes(b"")
    _fails(["render", "--sheets", str(empty), "--poses", str(pose_dir), "--out", str(tmp_path / "o")], capsys,
           "front.png: character sheet file is empty (0 bytes)")
    # A UDP frame whose values are not normalised rest-pose coordinates.
    wild = tmp_path / "wild"
    atomic_save_npz(wild / "0.npz", i=np.full((16, 16, 4), 7.0, np.float32))
    sheet = sheets
    _fails(["render", "--sheets", str(sheet), "--poses", str(wild), "--out", str(tmp_path / "o")], capsys,
           "values outside [0, 1]")
    # A 16-bit grey + alpha PNG is not a UDP frame (OpenCV would widen it to four channels).
    grey = tmp_path / "grey"
    grey.mkdir()
    (grey / "0.png").write_bytes(_png_grey_alpha_16(np.full((16, 16, 2), 30000, np.uint16)))
    _fails(["render", "--sheets", str(sheet), "--poses", str(grey), "--out", str(tmp_path / "o"),
            "--pose-kind", "udp"], capsys, "this one is greyscale + alpha")
    # --out naming a file; a run folder that saved no weights given as --weights.
    a_file = next(sheet.glob("*.png"))
    _fails(["render", "--sheets", str(sheet), "--poses", str(pose_dir), "--out", str(a_file)], capsys, "not a folder")
    _fails(["synth", "--out", str(a_file), "--overwrite"], capsys, "the output path is a file")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    _fails(["render", "--sheets", str(sheet), "--poses", str(pose_dir), "--out", str(tmp_path / "o"),
            "--weights", str(run)], capsys, "has no model.safetensors yet")
    assert not (tmp_path / "o").exists()


def test_a_model_without_a_skin_is_refused_for_a_motion(capsys, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from engine.writers import mesh_to_glb

    from conr.engine.procedural import character

    mesh = character(114, detail=0.3)[1]
    mesh_to_glb(mesh, tmp_path / "skinned.glb")
    mesh_to_glb(mesh, tmp_path / "rigid.glb", skin=False)
    assert main(["poses", str(tmp_path / "skinned.glb"), "walk", "-o", str(tmp_path / "a"), "--size", "32",
                 "--frames", "0:2"]) == 0
    _fails(["poses", str(tmp_path / "rigid.glb"), "walk", "-o", str(tmp_path / "b"), "--size", "32"], capsys,
           "rigid.glb: no vertex of the model is bound to its humanoid bones")
    assert not (tmp_path / "b").exists()


def test_a_run_that_saved_nothing_does_not_lock_its_folder(capsys, tmp_path):
    from conr.training.loop import TrainConfig, prepare_run

    out = tmp_path / "run"
    (out / "samples").mkdir(parents=True)
    config = TrainConfig(data=[str(tmp_path)], out=str(out))
    (out / "run.json").write_text(json.dumps({"config": config.to_dict()}))  # what a run writes first
    (out / "metrics.csv").write_text("step\n")
    _fails(["train", "--data", str(tmp_path), "--out", str(out), "--resume"], capsys,
           "the run here stopped before its first checkpoint")
    prepare_run(TrainConfig(data=[str(tmp_path)], out=str(out)), resume=False, log=lambda s: None)
    assert out.is_dir() and not any(out.iterdir())
    # A folder with anything else in it is a run (or the user's files): still refused.
    (out / "model.safetensors").write_bytes(b"x")
    (out / "run.json").write_text("{}")
    from conr.errors import ConrError

    with pytest.raises(ConrError, match="already holds a run"):
        prepare_run(TrainConfig(data=[str(tmp_path)], out=str(out)), resume=False, log=lambda s: None)


def test_stale_partials_of_dead_processes_are_removed(tmp_path):
    # A pid that is not running: a child that has exited.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".data.{dead.pid}-abc.partial"
    (stale / "char_0000").mkdir(parents=True)
    live = tmp_path / f".data.{os.getpid()}-xyz.partial"
    live.mkdir()
    other = tmp_path / ".data.notes"
    other.write_text("mine")
    with atomic_dir(tmp_path / "data") as tmp:
        (tmp / "x").write_text("1")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "data" / "x").read_text() == "1"
    assert remove_stale_partials(tmp_path / "data") == []
    # Files follow the same rule, by their whole name (a video's temporary file, say).
    video_tmp = tmp_path / f".clip.mp4.{dead.pid}-q.tmp.mp4"
    video_tmp.write_bytes(b"half")
    assert remove_stale_partials(tmp_path / "clip.mp4") == [video_tmp] and not video_tmp.exists()


def _wait_for(predicate, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, sig):
    out = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "conr", "synth", "--out", str(out), "--characters", "50",
                             "--size", "64", "--sheet-views", "2", "--poses-per-character", "2", "--threads", "1"],
                            stderr=subprocess.PIPE, text=True)
    # Wait until it is writing into its temporary folder.
    assert _wait_for(lambda: any(p.suffix == ".partial" and any(p.rglob("*.png")) for p in tmp_path.iterdir()))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f"interrupted ({signal.Signals(sig).name})" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder


def test_overwrite_replaces_the_folders_frames_with_this_renders(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    out = tmp_path / "out"
    for k in range(5):
        (out / f"old_{k}.png").parent.mkdir(exist_ok=True)
        shutil.copy(next(sheets.glob("*.png")), out / f"old_{k}.png")
    (out / "notes.txt").write_text("mine")
    code = main(["render", "--sheets", str(sheets), "--poses", str(udp_poses), "--weights", str(tiny_weights),
                 "--out", str(out), "--overwrite", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{p.stem}.png" for p in udp_poses.glob("*.npz"))
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _can_mount_tmpfs(target: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def test_a_full_disk_is_a_message_and_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("needs root and a tmpfs mount to make a small full disk")
    try:
        out = disk / "data"
        proc = subprocess.run([sys.executable, "-m", "conr", "synth", "--out", str(out), "--characters", "3",
                               "--size", "512", "--sheet-views", "4", "--poses-per-character", "4", "--threads", "1"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, proc.stderr
        assert "no space left on the device while writing" in proc.stderr and "Traceback" not in proc.stderr
        assert "nothing half-written was left" in proc.stderr
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_the_cli_reports_environment_errors_without_a_traceback(tmp_path, capsys, monkeypatch):
    from conr.engine import synth

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "data" / "x.png"))

    monkeypatch.setattr(synth, "_build", full)
    err = _fails(["synth", "--out", str(tmp_path / "data")], capsys, "no space left on the device while writing")
    assert "x.png" in err
    assert not (tmp_path / "data").exists() and not list(tmp_path.glob(".*partial"))


def test_manifest_of_an_interrupted_synth_is_never_written(tmp_path, monkeypatch):
    from conr.engine import synth

    calls = []

    def stop(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_build", stop)
    assert main(["synth", "--out", str(tmp_path / "data")]) == 130
    assert calls and list(tmp_path.iterdir()) == []


def test_a_camera_with_nan_is_refused_with_its_file_named(capsys, tmp_path):
    cams = tmp_path / "cams.json"
    cams.write_text('{"eye": [0, 1, NaN], "target": [0, 1, 0]}')
    _fails(["poses", "--procedural", "3", "walk", "-o", str(tmp_path / "o"), "--size", "32", "--frames", "0:2",
            "--camera", str(cams)], capsys, "cams.json: camera 0 in the camera file is malformed (eye, target, up and "
                                            "fov_y must be finite")
    assert not (tmp_path / "o").exists()


def test_an_output_path_through_a_file_is_refused_before_any_work(capsys, tmp_path, sheets, pose_dir):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    through = a_file / "sub"
    for argv in (["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--out", str(tmp_path / "o"),
                  "--video", str(through / "v.mp4")],
                 ["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--out", str(through)],
                 ["synth", "--out", str(through)],
                 ["parse", str(sheets), "--out", str(tmp_path / "o"), "--ply", str(through / "c.ply")],
                 ["eval", "--no-model", "--data", str(tmp_path / "d"), "--json", str(through / "m.json")],
                 ["motion", str(tmp_path / "v.mp4"), "--out", str(through / "m.bvh")],
                 ["convert-weights", str(tmp_path), str(through / "w.safetensors")]):
        _fails(argv, capsys, f"{a_file}: is a file, where a folder of the output path was expected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "poses", "sheets"]
    # Below the commands' checks the writers say the same, naming the file in the way (mkdir's
    # EEXIST), and a folder where a file goes is named itself, not the temporary file beside it.
    from conr.errors import ConrError
    from conr.files.io import atomic_write_bytes

    with pytest.raises(ConrError, match="notes.txt: is a file, where a folder was expected"):
        atomic_write_bytes(a_file / "x.json", b"{}")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConrError, match="taken: is a folder, where a file is written"):
        atomic_write_bytes(tmp_path / "taken", b"{}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sheet_folders_too_many_views_and_dangling_links_are_named(capsys, tmp_path, sheets, pose_dir):
    many = tmp_path / "many"
    many.mkdir()
    view = next(sheets.glob("*.png"))
    for k in range(17):
        shutil.copy(view, many / f"{k}.png")
    _fails(["render", "--sheets", str(many), "--poses", str(pose_dir), "--out", str(tmp_path / "o")], capsys,
           f"{many}: the character sheet has 17 images; at most 16 views are read")
    # A link to a file that is gone is a missing view, not one to skip; a loop is named as a link too.
    (sheets / "back.png").symlink_to(tmp_path / "gone.png")
    _fails(["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--out", str(tmp_path / "o")], capsys,
           "back.png: character sheet path is a symbolic link to nothing")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    _fails(["render", "--sheets", str(tmp_path / "loop_a"), "--poses", str(pose_dir), "--out", str(tmp_path / "o")],
           capsys, "loop_a: character sheet path is a symbolic link to nothing")
    assert not (tmp_path / "o").exists()


_BVH_HEAD = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 10 0
    }
  }
}
MOTION
"""
_BVH_ROW = "0 0 0 0 0 0 0 0 0\n"


def _deep_bvh(levels: int) -> str:
    joints = "".join(f"JOINT j{i}\n{{\nOFFSET 0 1 0\n" for i in range(levels))
    return ("HIERARCHY\nROOT Hips\n{\nOFFSET 0 0 0\n" + joints + "End Site\n{\nOFFSET 0 1 0\n}\n"
            + "}\n" * (levels + 1) + "MOTION\nFrames: 1\nFrame Time: 0.0333\n0\n")


# Numbers a BVH header or frame holds that no exporter writes: each once made a traceback (int(nan),
# a recursion past Python's limit, billions of frames resampled) or blank frames with exit status 0.
BAD_BVH = [
    (_BVH_HEAD + "Frames: nan\nFrame Time: 0.0333\n" + _BVH_ROW, "the number of frames the header announces must "
                                                                  "be a whole number from 0, found 'nan'"),
    (_BVH_HEAD + "Frames: -3\nFrame Time: 0.0333\n" + _BVH_ROW, "found '-3' (line 17)"),
    (_BVH_HEAD.replace("CHANNELS 3", "CHANNELS inf") + "Frames: 1\nFrame Time: 0.0333\n" + _BVH_ROW,
     "a joint's CHANNELS count must be a whole number from 0, found 'inf' (line 9)"),
    (_BVH_HEAD + "Frames: 2\nFrame Time: 1e300\n" + _BVH_ROW * 2, "the number '1e300' is not finite or not plausible"),
    (_BVH_HEAD + "Frames: 2\nFrame Time: 1e-9\n" + _BVH_ROW * 2, "frame time 1e-09 s is outside 0.0001 to 10 s"),
    (_BVH_HEAD.replace("OFFSET 0 10 0\n    CHANNELS", "OFFSET nan 10 0\n    CHANNELS") + "Frames: 1\nFrame Time: 0.0333\n"
     + _BVH_ROW, "the number 'nan' is not finite or not plausible (beyond 1e+07) (line 8)"),
    (_BVH_HEAD + "Frames: 1\nFrame Time: 0.0333\n1e308 0 0 0 0 0 0 0 0\n", "frame 0 holds a value beyond 1e+07"),
    (_deep_bvh(300), "joints nest more than 256 levels deep"),
]


@pytest.mark.parametrize("text, needle", BAD_BVH, ids=[n.split(",")[0][:30] for _, n in BAD_BVH])
def test_implausible_numbers_in_a_bvh_are_refused(text, needle, capsys, tmp_path):
    bvh = tmp_path / "clip.bvh"
    bvh.write_text(text)
    err = _fails(["poses", "--procedural", "3", str(bvh), "-o", str(tmp_path / "o"), "--size", "32", "--fps", "30"],
                 capsys, needle)
    assert "clip.bvh: malformed BVH" in err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def glb_model(tmp_path_factory) -> Path:
    """A small skinned character as a GLB file."""
    sys.path.insert(0, str(Path(__file__).parent))
    from engine.writers import mesh_to_glb

    from conr.engine.procedural import character

    path = tmp_path_factory.mktemp("model") / "girl.glb"
    mesh_to_glb(character(3, detail=0.3)[1], path)
    return path


def _edit_glb(src: Path, dst: Path, edit) -> Path:
    """`src` with its JSON chunk changed by `edit(doc)` (its binary chunk kept)."""
    data = src.read_bytes()
    (json_len,) = struct.unpack_from("<I", data, 12)
    doc = json.loads(data[20:20 + json_len])
    start = 20 + json_len + (-json_len % 4)
    (bin_len,) = struct.unpack_from("<I", data, start)
    blob = data[start + 8:start + 8 + bin_len]
    edit(doc)
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    dst.write_bytes(struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
                    + struct.pack("<II", len(blob), 0x004E4942) + blob)
    return dst


def _set(path: list, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _drop_view(doc):
    del doc["accessors"][0]["bufferView"]
    doc["accessors"][0]["count"] = 400_000_000


# A glTF document that breaks the format's rules: a reference past a list, a count that is no count,
# a transform that is no transform, an animation of a billion seconds. Each was a traceback, gigabytes,
# or blank frames with exit status 0.
BAD_GLTF = [
    (_set(["nodes", -1, "mesh"], 99), "malformed glTF document: a reference to something the file lacks (IndexError"),
    (_set(["accessors", 0, "count"], "many"), "accessor 0 has count 'many'; a count is a whole number from 0"),
    (_drop_view, "accessor 0 has count 400000000"),
    (_set(["nodes", 0, "translation"], [float("nan"), 0, 0]),
     "malformed glTF document: node 'hips' has a translation that is not 3 finite numbers"),
    (_set(["nodes", 0, "matrix"], [1, 2, 3]), "malformed glTF document: node 'hips' has a matrix that is not 16 finite"),
    (_set(["nodes", 0, "scale"], [0, 0, 0]), "the model in its rest pose has no size"),
    (_set(["asset"], "2.0"), "only glTF 2.0 is supported"),
]


@pytest.mark.parametrize("edit, needle", BAD_GLTF, ids=[n[:40] for _, n in BAD_GLTF])
def test_a_malformed_gltf_is_named_not_a_traceback(edit, needle, capsys, tmp_path, glb_model):
    bad = _edit_glb(glb_model, tmp_path / "bad.glb", edit)
    _fails(["poses", str(bad), "walk", "-o", str(tmp_path / "o"), "--size", "32", "--frames", "0:1"], capsys,
           f"bad.glb: {needle}")
    assert not (tmp_path / "o").exists()


def test_animations_past_their_bounds_are_refused(capsys, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from engine.writers import mesh_to_glb, mesh_to_pmx, write_vmd

    from conr.engine.procedural import character

    mesh = character(3, detail=0.3)[1]
    clip = tmp_path / "clip.glb"
    mesh_to_glb(mesh, clip, animation={mesh.skeleton.names[1]: np.tile([0, 0, 0, 1.0], (2, 1))})
    data = bytearray(clip.read_bytes())
    at = bytes(data).find(np.array([0, 1 / 30], np.float32).tobytes())  # the keyframe times
    for name, times, needle in (("long.glb", [0, 1e9], "lasts 1e+09 s over"),
                                ("nan.glb", [0, float("nan")], "has keyframe times or values that are not finite")):
        data[at:at + 8] = np.array(times, np.float32).tobytes()
        (tmp_path / name).write_bytes(bytes(data))
        _fails(["poses", str(clip), str(tmp_path / name), "-o", str(tmp_path / "o"), "--size", "32"], capsys,
               f"{name}: animation clip {needle}")
    pmx = tmp_path / "girl.pmx"
    mesh_to_pmx(mesh, pmx)
    for name, keys, needle in (("far.vmd", [("左腕", 0, (0, 0, 0), (0, 0, 0, 1)), ("左腕", 2 ** 32 - 1, (0, 0, 0), (0, 0, 0, 1))],
                                "has a key at frame 4,294,967,295, past the limit of 1,000,000 frames"),
                               ("nan.vmd", [("左腕", 0, (0, 0, 0), (float("nan"), 0, 0, 1))],
                                "has a key whose position or rotation is not finite")):
        write_vmd(tmp_path / name, keys)
        _fails(["poses", str(pmx), str(tmp_path / name), "-o", str(tmp_path / "o"), "--size", "32"], capsys,
               f"{name}: bone '左腕' {needle}")
    assert not (tmp_path / "o").exists()


def test_resume_draws_a_broken_frame_again(capsys, sheets, udp_poses, tiny_weights, tmp_path):
    out = tmp_path / "out"
    argv = ["render", "--sheets", str(sheets), "--poses", str(udp_poses), "--weights", str(tiny_weights),
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    frames = sorted(out.glob("*.png"))
    frames[0].write_bytes(b"")  # a copy that failed
    frames[1].write_bytes(frames[1].read_bytes()[:100])  # one cut short
    kept = frames[2].stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"frame file is empty (0 bytes) ({frames[0]}); drawing it again" in err
    assert "truncated" in err and "rendered 2 frame(s)" in err and "kept 1 existing" in err
    from conr.files.io import read_frame

    assert all(read_frame(f).shape[2] == 4 for f in frames) and frames[2].stat().st_mtime_ns == kept


def test_weights_of_the_wrong_kind_or_broken_are_named(capsys, tmp_path, sheets, pose_dir):
    """Integer or NaN tensors in a weights file are refused by name, not a torch traceback or an
    empty frame blamed on the sheet; a run folder holding only checkpoints points at them."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from conr.render.weights import BUNDLED

    tensors = load_file(BUNDLED)
    with safe_open(BUNDLED, "pt") as f:
        meta = f.metadata()
    key = sorted(k for k in tensors if k.startswith("shader."))[0]
    for name, value, needle in (("int", tensors[key].to(torch.int32), "not floating point"),
                                ("nan", torch.full_like(tensors[key], float("nan")), "NaN or infinite")):
        bad = tmp_path / f"{name}.safetensors"
        save_file({**tensors, key: value}, bad, metadata=meta)
        err = _fails(["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--weights", str(bad),
                      "--out", str(tmp_path / name)], capsys, needle)
        assert key.split(".", 1)[1] in err and not (tmp_path / name).exists()
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000010").mkdir(parents=True)
    shutil.copy(BUNDLED, run / "checkpoints" / "step_00000010" / "model.safetensors")
    err = _fails(["render", "--sheets", str(sheets), "--poses", str(pose_dir), "--weights", str(run),
                  "--out", str(tmp_path / "o")], capsys, "step_00000010")
    assert ".pth" not in err


@pytest.mark.parametrize("manifest", [{"characters": 5}, {"characters": [{"sheet": []}]},
                                      {"characters": [{"id": 7, "target": ["t.png"]}]}])
def test_a_malformed_training_manifest_is_named(manifest, capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps(manifest))
    _fails(["eval", "--data", str(data), "--no-model"], capsys, "malformed manifest.json")
    _fails(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1"], capsys,
           "malformed manifest.json")
    assert not (tmp_path / "run").exists()


def test_a_typo_sized_step_count_is_refused(capsys, tmp_path, sheets):
    _fails(["train", "--data", str(sheets), "--out", str(tmp_path / "run"), "--steps", "99999999999999999999999"],
           capsys, "--steps")
    assert not (tmp_path / "run").exists()


def test_an_animation_asked_of_a_motion_that_has_none_is_refused(capsys, tmp_path, glb_model):
    _fails(["poses", str(glb_model), "walk", "--animation", "7", "-o", str(tmp_path / "p")], capsys,
           "--animation '7' picks an animation of a glTF motion file")
    assert not (tmp_path / "p").exists()


def test_a_ui_that_cannot_listen_leaves_no_workdir_behind(capsys, tmp_path):
    _fails(["ui", "--host", "not a host!", "--port", "7999", "--workdir", str(tmp_path / "ui")], capsys,
           "cannot serve on not a host!:7999")
    assert not (tmp_path / "ui").exists()
