"""`conr train` end to end on a tiny synthetic data set: resuming is exact, two processes train the
same model as one, bad input stops the run by name before the first step, a non-finite loss keeps
the last good checkpoint, a run writes what it promises, and Ctrl-C leaves a checkpoint to resume.

Every run uses the tiny preset at 128 px with two sheet views, so that a step takes a fraction of a
second on two CPU cores (the first one builds the convolution kernels and takes a few seconds).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import conr.training.loop as loop
from conr.cli import main
from conr.errors import ConrError
from conr.models import CoNR, preset
from conr.models.conr import PARTS
from conr.training.loop import TrainConfig, train
from conr.render.weights import flatten, load_model

SIZE = 128
VIEWS = 2
# The options of every run here; a test adds --steps and friends.
ARGS = ["--preset", "tiny", "--size", str(SIZE), "--batch-size", "2", "--views", f"{VIEWS}:{VIEWS}",
        "--val-characters", "1", "--workers", "0", "--log-every", "1", "--device", "cpu", "--quiet"]
# The run every comparison is made against: 6 steps, a checkpoint and a validation grid every 3.
FULL = ["--steps", "6", "--save-every", "3", "--sample-every", "3"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads on two cores that another process keeps busy made a step 20x slower (each OpenMP
    barrier waits for a time slice); runs started here get OMP_NUM_THREADS=1 for the same reason."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3 characters (one held out for validation), 2 frames each, 4 sheet views, 128 px."""
    from conr.engine.synth import synthesize

    out = tmp_path_factory.mktemp("train") / "synth"
    synthesize(out, seed=0, count=3, frames=2, size=SIZE, views=4)
    return out


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), *ARGS, *extra])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _metadata(run: Path) -> dict[str, str]:
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        return f.metadata()


def _metric_rows(run: Path) -> list[dict[str, str]]:
    """The training rows of metrics.csv (validation rows have an empty loss/total)."""
    with open(run / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("loss/total")]


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step_*"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs by {(wa[k] - wb[k]).abs().max()}"


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("full") / "run"
    assert _train(data, run, *FULL) == 0
    return run


# ---------------------------------------------------------------- resume


def test_resume_after_a_finished_run_is_exact(data, full_run, tmp_path):
    """3 steps, then --resume to 6 with the same options: bit for bit the weights of 6 steps in one go
    (the learning rate is still in its warm-up, which does not depend on --steps)."""
    run = tmp_path / "run"
    assert _train(data, run, "--steps", "3", "--save-every", "3", "--sample-every", "3") == 0
    assert _metadata(run)["step"] == "3"
    assert _train(data, run, "--resume", *FULL) == 0
    assert _metadata(run)["step"] == "6"
    _assert_same_weights(run, full_run)
    assert [r["step"] for r in _metric_rows(run)] == [str(s) for s in range(1, 7)]


def test_interrupt_between_checkpoints_saves_and_resumes_exactly(data, full_run, tmp_path, monkeypatch):
    """Ctrl-C during step 5 (checkpoints every 3) saves step 4; --resume ends where the unbroken run
    did, bit for bit, and metrics.csv has each step once."""
    real, calls = loop.training_loss, []

    def interrupted(*args, **kwargs):
        if torch.is_grad_enabled():  # a training step, not validation
            calls.append(1)
            if len(calls) == 5:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    run = tmp_path / "run"
    monkeypatch.setattr(loop, "training_loss", interrupted)
    assert _train(data, run, *FULL) == 130
    monkeypatch.setattr(loop, "training_loss", real)
    assert _checkpoints(run) == ["step_00000003", "step_00000004"]
    assert _metadata(run)["step"] == "4"
    assert _train(data, run, "--resume", *FULL) == 0
    _assert_same_weights(run, full_run)
    assert [r["step"] for r in _metric_rows(run)] == [str(s) for s in range(1, 7)]


# ---------------------------------------------------------------- distributed


def test_two_processes_train_the_model_of_one(data, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 4 = one process with batch 4, up to float
    rounding: the same logged losses (the global batch's) and gradient norms, the same updates.

    The weights cannot agree to 1e-5: Adam divides each gradient by its own size, so parameters
    whose true gradient is zero (biases before an instance norm) or below Adam's eps move by their
    rounding noise, up to a whole step either way per step (seen: one element in 1,200). So the test
    bounds each element by that (2 steps of lr, each either way) and the whole update's difference
    by 1 % of its norm; dropping the gradient all-reduce breaks the latter."""
    lr = 1e-3
    opts = ["--batch-size", "4", "--steps", "2", "--save-every", "2", "--sample-every", "100",
            "--warmup", "1", "--lr", str(lr)]
    one = tmp_path / "one"
    assert _train(data, one, *opts) == 0

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "conr", "train", "--data", str(data), "--out", str(two), *ARGS, *opts]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((two / "run.json").read_text())["world_size"] == 2

    rows_one, rows_two = _metric_rows(one), _metric_rows(two)
    assert [r["step"] for r in rows_two] == ["1", "2"]
    for r1, r2 in zip(rows_one, rows_two):  # metrics.csv holds 6 significant digits
        for key in ("loss/total", "loss/rgba", "loss/alpha", "loss/parser", "loss/flow", "loss/warp"):
            # one unit of the 6th digit is up to 1e-5 of the value
            assert float(r2[key]) == pytest.approx(float(r1[key]), rel=1e-5), key
        # The losses agree to 1e-5; gradients have kinks (L1's sign, the parser's visibility loss stops at
        # its clamp), so a pixel that rounds across one in the other batch split moves the norm a step.
        assert float(r2["grad_norm"]) == pytest.approx(float(r1["grad_norm"]), rel=5e-3)

    # The initial weights, as train() makes them: the frozen pose decoder never moves, so it checks this.
    torch.manual_seed(0)
    init = CoNR(dataclasses.replace(preset("tiny"), image_size=SIZE))
    w0 = {k: v.detach() for k, v in flatten({p: init.part(p).state_dict() for p in PARTS}).items()}
    w1, w2 = _weights(one), _weights(two)
    assert w0.keys() == w1.keys() == w2.keys()
    frozen = [k for k in w0 if k.startswith("target_pose_encoder.final_conv.")]
    assert frozen and all(torch.equal(w0[k], w1[k]) and torch.equal(w0[k], w2[k]) for k in frozen)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=4 * lr, msg=lambda m, k=k: f"{k}: {m}")
    d1 = torch.cat([(w1[k] - w0[k]).flatten() for k in w0])
    d2 = torch.cat([(w2[k] - w0[k]).flatten() for k in w0])
    assert (d2 - d1).norm() <= 0.01 * d1.norm()


# ---------------------------------------------------------------- bad input


def _missing_target(d: Path) -> Path:
    (d / "char_0001" / "target" / "1.png").unlink()
    return d / "char_0001" / "target" / "1.png"


def _truncated_sheet(d: Path) -> Path:
    path = d / "char_0002" / "sheet" / "view_01.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _udp_without_visibility(d: Path) -> Path:
    path = d / "char_0000" / "udp" / "0.npz"
    np.savez(path, i=np.zeros((SIZE, SIZE, 3), np.float32))
    return path


@pytest.mark.parametrize("damage, says", [
    (_missing_target, r"missing|does not exist"),
    (_truncated_sheet, r"truncated"),
    (_udp_without_visibility, r"\(128, 128, 3\).*expected.*\(H, W, 4\)"),
])
def test_a_bad_file_stops_the_run_by_name_before_the_first_step(data, tmp_path, capsys, damage, says):
    broken = shutil.copytree(data, tmp_path / "data")
    path = damage(broken)
    run = tmp_path / "run"
    assert _train(broken, run, "--steps", "2") == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and re.search(says, err), err
    assert not run.exists()  # nothing was written: fix the file and run the same command again


def _random_pngs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (32, 32, 4), dtype=np.uint8))


@pytest.mark.parametrize("fill", [lambda f: None, _random_pngs], ids=["empty", "random_pngs"])
def test_a_folder_of_another_layout_is_refused_saying_what_was_expected(tmp_path, capsys, fill):
    folder = tmp_path / "not_data"
    folder.mkdir()
    fill(folder)
    assert _train(folder, tmp_path / "run", "--steps", "2") == 2
    err = capsys.readouterr().err
    assert f"{folder}: is not a training data folder" in err
    assert "conr synth" in err and "manifest.json" in err and "poses.json" in err


def test_an_existing_run_is_not_overwritten_without_resume(data, full_run, capsys):
    before = (full_run / "model.safetensors").read_bytes()
    assert _train(data, full_run, *FULL) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err
    assert (full_run / "model.safetensors").read_bytes() == before


def test_resume_of_an_empty_folder_is_refused(data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _train(data, empty, "--resume", "--steps", "2") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not any(empty.iterdir())


# ---------------------------------------------------------------- non-finite loss


def _nan_loss(terms, out):
    return {**terms, "total": terms["total"] * float("nan")}


def _nan_gradient(terms, out):
    # Finite (zero) in value, NaN in gradient: d sqrt(x)/dx is infinite at 0, times 0.
    return {**terms, "total": terms["total"] + 0 * torch.sqrt(out["rgba"].sum() * 0)}


@pytest.mark.parametrize("poison", [_nan_loss, _nan_gradient], ids=["loss", "gradient"])
def test_a_non_finite_step_stops_the_run_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, poison):
    """From the 4th step on (steps 0-2 done, checkpoints every 2) the objective goes non-finite: the
    run stops naming step 3, and the step-2 checkpoint is the newest and loads."""
    real, calls = loop.training_loss, []

    def failing(weights, out, batch):
        terms = real(weights, out, batch)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) >= 4:
                terms = poison(terms, out)
        return terms

    monkeypatch.setattr(loop, "training_loss", failing)
    run = tmp_path / "run"
    cfg = TrainConfig(data=[str(data)], out=str(run), preset="tiny", size=SIZE, steps=6, batch_size=2,
                      views=(VIEWS, VIEWS), val_characters=1, workers=0, log_every=1, sample_every=100,
                      save_every=2, device="cpu")
    with pytest.raises(ConrError, match=r"at step 3; the last good checkpoint \(step 2\)"):
        train(cfg, log=lambda s: None, progress=False)
    assert _checkpoints(run) == ["step_00000002"]
    assert _metadata(run)["step"] == "2"
    model = load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------- outputs


def test_a_run_writes_weights_metrics_events_grids_and_its_options(full_run):
    model = load_model(full_run)
    assert model.cfg.image_size == SIZE
    meta = _metadata(full_run)
    assert meta["step"] == "6"
    assert json.loads(meta["training"])["preset"] == "tiny"

    rows = _metric_rows(full_run)
    assert [r["step"] for r in rows] == [str(s) for s in range(1, 7)]
    for key in ("loss/total", "loss/rgba", "loss/alpha", "loss/parser", "loss/flow", "loss/warp", "grad_norm", "lr"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    with open(full_run / "metrics.csv", newline="") as f:
        val_steps = [r["step"] for r in csv.DictReader(f) if r.get("val/total")]
    assert val_steps == ["3", "6"]

    assert list((full_run / "tensorboard").glob("events.out.tfevents.*"))

    grids = sorted((full_run / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_00000003.png", "step_00000006.png"]
    grid = cv2.imread(str(grids[-1]), cv2.IMREAD_UNCHANGED)
    # One row per validation sample (the held-out character's 2 frames); columns: the sheet views,
    # the target UDP, the prediction, the ground truth.
    assert grid.shape == (2 * SIZE, (VIEWS + 3) * SIZE, 4)

    run = json.loads((full_run / "run.json").read_text())
    assert run["config"]["preset"] == "tiny" and run["config"]["steps"] == 6 and run["world_size"] == 1
    assert _checkpoints(full_run) == ["step_00000003", "step_00000006"]


def test_conr_render_uses_a_trained_run(data, full_run, tmp_path):
    out = tmp_path / "frames"
    char = data / "char_0000"
    assert main(["render", "--sheets", str(char / "sheet"), "--poses", str(char / "udp"), "--weights", str(full_run),
                 "--out", str(out), "--size", str(SIZE), "--device", "cpu", "--quiet"]) == 0
    frames = sorted(out.glob("*.png"))
    assert [f.name for f in frames] == ["0.png", "1.png"]
    assert cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED).shape == (SIZE, SIZE, 4)


# ---------------------------------------------------------------- Ctrl-C


def _wait_for_a_step(proc: subprocess.Popen, run: Path) -> None:
    """Until the run in `proc` has written its first metrics row (it must not exit first)."""
    deadline = time.monotonic() + 90
    while not ((run / "metrics.csv").is_file() and _metric_rows(run)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no training step within 90 s"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_stops_between_steps_with_loader_workers(data, tmp_path, sig):
    """Ctrl-C in a terminal (SIGINT) and systemd (SIGTERM) signal every process of the group, the
    loader's workers too: the run still stops cleanly between steps and saves the step reached."""
    run = tmp_path / "run"
    args = [a if a != "0" or ARGS[i - 1] != "--workers" else "1" for i, a in enumerate(ARGS)]
    cmd = [sys.executable, "-m", "conr", "train", "--data", str(data), "--out", str(run), *args,
           "--steps", "1000", "--save-every", "1000", "--sample-every", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        _wait_for_a_step(proc, run)
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err[-3000:]
    reached = int(_metadata(run)["step"])
    assert f"interrupted: saved step {reached}" in err and "Traceback" not in err
    assert _checkpoints(run) == [f"step_{reached:08d}"]


def test_ctrl_c_saves_the_step_reached_and_resume_continues(data, tmp_path):
    """SIGINT to `conr train` after its first metrics row: exit code 130, a checkpoint of the step it
    had reached (no regular checkpoint is due before step 1000), and --resume trains on from there."""
    run = tmp_path / "run"
    opts = ["--steps", "1000", "--save-every", "1000", "--sample-every", "1000"]
    cmd = [sys.executable, "-m", "conr", "train", "--data", str(data), "--out", str(run), *ARGS, *opts]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        _wait_for_a_step(proc, run)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    reached = int(_metadata(run)["step"])
    assert reached >= 1
    assert f"interrupted: saved step {reached}" in err
    assert _checkpoints(run) == [f"step_{reached:08d}"]

    assert _train(data, run, "--resume", "--steps", str(reached + 1), "--save-every", "1000",
                  "--sample-every", "1000") == 0
    assert _metadata(run)["step"] == str(reached + 1)
    assert [r["step"] for r in _metric_rows(run)] == [str(s) for s in range(1, reached + 2)]


def test_few_characters_train_on_all_and_grids_show_training_characters(data, tmp_path):
    """Under 20 characters nothing is held out by default (a single `conr poses` model must train):
    the grids and their metrics rows then show training characters, and say so."""
    run = tmp_path / "few"
    i = ARGS.index("--val-characters")
    args = ARGS[:i] + ARGS[i + 2:]
    assert main(["train", "--data", str(data), "--out", str(run), *args, "--steps", "2", "--sample-every", "2"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["characters"] == {"train": 3, "validation": []}
    assert (run / "samples" / "step_00000002.png").is_file()
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("fixed_train/total") for r in rows) and not any(r.get("val/total") for r in rows)
