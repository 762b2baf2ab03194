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
    (["train", "--data", "d", "--out", "o", "--steps", "0"], "--steps 0: must be at least 1"),
    (["train", "--data", "d", "--out", "o", "--lr", "nan"], "--lr nan"),
    (["ui", "--port", "70000"], "argument --port: 70000 is out of range"),
    (["ui", "--max-file-mb", "0"], "argument --max-file-mb: 0 is out of range"),
    (["ui", "--concurrency", "0"], "argument --concurrency: 0 is out of range"),
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
