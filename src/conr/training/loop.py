"""The training loop: one process on the CPU, or distributed data parallel under `torchrun`.

Distributed training is switched on by the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK):
every process takes its share of the same global batch (`--batch-size` is the global batch), so a
command trains the same model on one process or many.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader

from conr.errors import ConrError
from conr.models import CoNR, preset
from conr.training import checkpoint
from conr.training.augment import Photometric
from conr.training.data import (CropJitter, NativeWindow, SampleKey, SampleSet, StepSampler, check_files, read_data,
                                split_characters)
from conr.training.losses import LossWeights, training_loss
from conr.training.monitor import MetricsLog, write_grid
from conr.training.step import forward
from conr.render.weights import RUN_WEIGHTS, training_meta

RUN_FILE = "run.json"


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    preset: str = "small"
    size: int = 128
    steps: int = 20000
    batch_size: int = 4  # global: split over the processes
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    min_lr: float = 0.05  # the cosine ends at this fraction of lr
    clip: float = 1.0
    views: tuple[int, int] = (2, 4)  # sheet views per sample, drawn per step
    val_characters: int | None = None  # None: 4, or fewer when the data has under 20 characters
    seed: int = 0
    workers: int = 1
    log_every: int = 10
    sample_every: int = 500
    save_every: int = 500
    device: str = "auto"
    jitter: bool = True
    # The parser stage's random crops: their side over the figure's box. Rendering reads a view so that
    # its box fills LookupShaderConfig.parser_zoom (0.85) of the frame, the middle of these.
    crop_scale: tuple[float, float] = (0.85, 1.5)
    stage: str = "all"  # all, parser or shader: which parts learn (see conr.training.step)
    init: str | None = None  # weights to start from: every part of the same architecture is loaded
    photometric: bool = True  # the parser stage's image augmentation (conr.training.augment)
    losses: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["losses"] = LossWeights(**d.get("losses", {}))
        d["views"] = tuple(d["views"])
        if "crop_scale" in d:  # runs saved before it existed trained on the default
            d["crop_scale"] = tuple(d["crop_scale"])
        return TrainConfig(**d)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to min_lr * lr at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class _Objective(nn.Module):
    """The model and its loss as one module, so that DistributedDataParallel sees one forward."""

    def __init__(self, model: CoNR, weights: LossWeights, stage: str = "all"):
        super().__init__()
        self.model, self.weights, self.stage = model, weights, stage

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return training_loss(self.weights, forward(self.model, batch, stage=self.stage), batch)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           ("cpu" if device == "auto" else device))
        return Dist(), dev
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return d, torch.device("cuda", d.local_rank) if use_cuda else torch.device("cpu")


def _collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def _worker_init(_: int) -> None:
    # Each loader worker decodes one sample at a time: more threads would only fight the training step.
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    # Ctrl-C in a terminal and SIGTERM from systemd reach every process of the group: the main process
    # stops the run between steps and then ends its workers, so they must not die first.
    for sig in _StopBetweenSteps.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def trainable(model: CoNR, stage: str = "all") -> list[nn.Parameter]:
    """Parameters that take part in rendering and that the stage trains. The pose encoder's U-Net
    decoder never runs (it is kept for the released checkpoint's layout), so it is frozen: DDP needs
    every trainable parameter used."""
    frozen = ("target_pose_encoder.upsample_blocks.", "target_pose_encoder.final_conv.")
    params = []
    for name, p in model.named_parameters():
        parser = name.startswith("udpparsernet.")
        learns = not name.startswith(frozen) and (stage == "all" or (stage == "parser") == parser)
        if stage == "lines":
            learns = name.startswith("shader.lines.")
        p.requires_grad_(learns)
        if learns:
            params.append(p)
    return params


def learned_parts(meta: dict, parts: tuple[str, ...]) -> tuple[str, ...]:
    """The parts of a weights file that hold learned weights, from its training record (`meta`,
    conr.render.weights.training_meta): what its run trained and what it took from its --init. A
    file without the list (made before it was recorded) that trained the parser alone holds an
    untrained rest; any other file, a shipped model included, is learned throughout."""
    if "learned" in meta:
        return tuple(p for p in parts if p in meta["learned"])
    return ("udpparsernet",) if meta.get("stage") == "parser" else parts


def load_init(model: CoNR, path: str, log: Callable[[str], None]) -> tuple[str, ...]:
    """Start from the parts of `path` (any weights `--weights` takes) that fit this architecture and
    hold learned weights there; return the parts loaded."""
    from conr.render.weights import load_model

    source = load_model(path)
    learned = learned_parts(training_meta(path), source.parts)
    loaded, taken = [], []
    for part in model.parts:
        if part not in source.parts or part not in learned:
            continue
        mine, theirs = model.part(part).state_dict(), source.part(part).state_dict()
        # Whole modules this architecture lacks (e.g. the line head, going back to `lookup`) are left out.
        modules = {k.split(".")[0] for k in mine}
        dropped = sorted({k.split(".")[0] for k in theirs.keys() - mine.keys()})
        if any(m in modules for m in dropped):
            continue  # a module of another make, not one more or one less
        theirs = {k: v for k, v in theirs.items() if k in mine}
        if not theirs:
            continue
        same = all(mine[k].shape == theirs[k].shape for k in theirs)
        if not same and not all(_grows(theirs[k].shape, mine[k].shape) for k in theirs):
            continue
        model.part(part).load_state_dict(_widened(mine, theirs))
        notes = [] if same else ["widened: the new inputs and outputs start as the untrained model's"]
        # A part that gained a module (e.g. the lookup shader's line head) takes the rest.
        new = sorted({k.split(".")[0] for k in mine.keys() - theirs.keys()})
        notes += [f"new: {', '.join(new)} start untrained"] if new else []
        notes += [f"left out: {', '.join(dropped)}"] if dropped else []
        loaded.append(part + (f" ({'; '.join(notes)})" if notes else ""))
        taken.append(part)
    if not loaded:
        raise ConrError("no part of these weights fits the architecture being trained", Path(path),
                        "give --init weights of the same preset (or whose UDP parser is the same)")
    untrained = [p for p in model.parts if p in source.parts and p not in learned]
    log(f"init: {', '.join(loaded)} from {path}" +
        (f" (not taken, as that run never trained it: {', '.join(untrained)})" if untrained else ""))
    return tuple(taken)


def _grows(old: torch.Size, new: torch.Size) -> bool:
    return len(old) == len(new) and all(o <= n for o, n in zip(old, new))


def _widened(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An architecture that grew inputs, outputs or modules (e.g. the lookup shader's ink) keeps what
    the smaller one learned: every tensor's leading block is theirs, the rest stays this model's (the
    untrained model gives new inputs no say)."""
    out = {}
    for k, t in mine.items():
        t = t.clone()
        if k in theirs:
            t[tuple(slice(0, n) for n in theirs[k].shape)] = theirs[k]
        out[k] = t
    return out


# Each numeric option's allowed range (inclusive low, inclusive high; None: unbounded).
_MAX_STEPS = 100_000_000  # ~3 years at a step a second: past it a number is a typo, not a plan
_RANGES = {"steps": (1, _MAX_STEPS), "batch_size": (1, 65536), "lr": (1e-12, 10.0), "weight_decay": (0.0, 10.0),
           "warmup": (0, _MAX_STEPS), "min_lr": (0.0, 1.0), "clip": (1e-9, None), "seed": (0, 2**63 - 1),
           "workers": (0, 256), "log_every": (1, None), "sample_every": (1, None),
           "save_every": (1, None), "size": (32, 8192)}  # a large *_every: never


def check_config(cfg: TrainConfig) -> None:
    """Refuse option values out of range (and NaN) before anything is made, naming the option."""
    for name, (lo, hi) in _RANGES.items():
        value = getattr(cfg, name)
        bad = not math.isfinite(float(value)) or value < lo or (hi is not None and value > hi)
        if bad:
            def show(v: float) -> str:
                return f"{v:,}" if isinstance(v, int) else f"{v:g}"

            allowed = f"at least {show(lo)}" if hi is None else f"from {show(lo)} to {show(hi)}"
            raise ConrError(f"--{name.replace('_', '-')} {value}: must be {allowed}")
    for name, weight in dataclasses.asdict(cfg.losses).items():
        if not math.isfinite(weight) or weight < 0:
            raise ConrError(f"--loss-{name.replace('_', '-')} {weight}: must be a finite weight of 0 or more")


# What a run writes before its first checkpoint; a folder holding only these saved nothing.
_EARLY_FILES = {RUN_FILE, "metrics.csv", "samples", "tensorboard"}


def _saved_nothing(out: Path) -> bool:
    names = {p.name for p in out.iterdir()}
    if RUN_FILE not in names or not names <= _EARLY_FILES | {"checkpoints"}:
        return False
    ckpts = out / "checkpoints"
    # A kill -9 while saving leaves only a hidden temporary folder there.
    return not ckpts.exists() or (ckpts.is_dir() and all(p.name.startswith(".") for p in ckpts.iterdir()))


def prepare_run(cfg: TrainConfig, resume: bool, log: Callable[[str], None] = print, clear: bool = True) -> None:
    """Check the output folder: a new run needs an empty one (or one a run left before saving
    anything, which is cleared), a resumed run its run.json and a checkpoint."""
    out = Path(cfg.out)
    run_file = out / RUN_FILE
    if resume:
        if not run_file.is_file() or checkpoint.latest(out) is None:
            stopped = run_file.is_file() and out.is_dir() and _saved_nothing(out)
            raise ConrError("nothing to resume: " + ("the run here stopped before its first checkpoint" if stopped
                                                     else "no run.json or no checkpoint in this folder"), out,
                            "start the run again without --resume" + (" (it clears what that run left)" if stopped else ""))
        return
    if out.exists() and not out.is_dir():
        raise ConrError("--out is a file, not a folder", out, "choose a new --out folder")
    if out.exists() and any(out.iterdir()):
        if not _saved_nothing(out):
            raise ConrError("the run folder already holds a run", out,
                            "continue it with --resume, or choose a new --out folder")
        if not clear:  # another process of a distributed run clears it
            return
        for name in _EARLY_FILES | {"checkpoints"}:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        log(f"{out}: cleared what a run that stopped before its first checkpoint left")


class _StopBetweenSteps:
    """Ctrl-C, SIGTERM and SIGHUP during training take effect between steps: an interrupt raised
    anywhere (inside the metrics or TensorBoard writer, holding its lock) could hang the exit. A
    second signal stops at once. At the step's end the command's own handler runs, as it would have."""

    SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._note) for sig in self.SIGNALS}

    def _note(self, signum: int, frame) -> None:
        self.pending.append(signum)
        if len(self.pending) > 1:
            self._deliver()

    def _deliver(self) -> None:
        signum = self.pending[0]
        handler = self.previous.get(signum)
        if callable(handler):
            handler(signum, None)  # the CLI's (or Python's) handler: raises KeyboardInterrupt
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.pending:
            self._deliver()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print,
          progress: bool = True) -> Path:
    """Train; return the path of the newest weights (OUT/model.safetensors)."""
    check_config(cfg)
    ddp, device = _init_distributed(cfg.device)
    out = Path(cfg.out)
    prepare_run(cfg, resume, log, clear=ddp.main)
    if ddp.world_size > 1:
        dist.barrier()  # every process checks the folder before the main one writes into it
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        # Adam's second moments and small gradients underflow into subnormal floats, which x86 CPUs
        # handle up to 100x slower: flushing them made a step 6x faster (measured).
        torch.set_flush_denormal(True)
    from conr.models import PRESETS

    if cfg.preset not in PRESETS:
        raise ConrError(f"--preset {cfg.preset!r} is not one of {', '.join(PRESETS)}")
    if cfg.size % 128 and cfg.stage != "parser" and preset(cfg.preset).family != "lookup":
        # The CINN shader's coarsest level works at 1/32 of the size and downsamples by 4 more.
        raise ConrError(f"--size {cfg.size} is not a multiple of 128", hint="use 128 or 256")
    from conr.training.step import STAGES

    if cfg.stage not in STAGES:
        raise ConrError(f"--stage {cfg.stage!r} is not one of {', '.join(STAGES)}")

    lookup = preset(cfg.preset).lookup
    if cfg.stage == "lines" and not (lookup is not None and lookup.ink and lookup.line_width):
        raise ConrError(f"--stage lines trains the lookup shader's line head, which --preset {cfg.preset} has not",
                        hint="use --preset lookup-lines")
    if cfg.stage == "lines" and cfg.losses.lines <= 0:
        raise ConrError("--stage lines learns from --loss-lines alone, which is 0", hint="give --loss-lines 1")
    characters = read_data(cfg.data)
    held = cfg.val_characters if cfg.val_characters is not None else min(4, len(characters) // 5)
    train_chars, val_chars = split_characters(characters, held)
    if ddp.main:
        log(f"data: {len(characters)} characters ({len(train_chars)} to train on, {len(val_chars)} held out for "
            f"validation), {sum(len(c.frames) for c in train_chars)} training frames; checking the files")
        check_files(characters)
    views = (min(cfg.views[0], cfg.views[1]), cfg.views[1])
    parser_only = cfg.stage == "parser"
    renders = cfg.stage not in ("parser", "lines")
    jitter: CropJitter | NativeWindow | None = None
    if cfg.jitter:
        jitter = CropJitter(scale=cfg.crop_scale) if parser_only else CropJitter()
        if preset(cfg.preset).family == "lookup" and not parser_only:
            # Its shader draws at the frames' own size: train it at their pixel scale, not zoomed.
            jitter = NativeWindow(cfg.size)
    train_set = SampleSet(train_chars, cfg.size, jitter=jitter, flow=renders,
                          photometric=Photometric() if parser_only and cfg.photometric else None,
                          line_profiles=cfg.stage == "lines", mirror=parser_only and cfg.photometric)
    if train_set.max_views < views[1]:
        raise ConrError(f"--views asks for up to {views[1]} sheet views, but some characters have only "
                        f"{train_set.max_views}", hint=f"use --views {min(views[0], train_set.max_views)}:"
                        f"{train_set.max_views}")

    base = preset(cfg.preset)
    # The lookup family draws at the frames' own size whatever size it trained at: it keeps its cap.
    model_cfg = base if base.family == "lookup" else dataclasses.replace(base, image_size=cfg.size)
    model = CoNR(model_cfg).to(device)
    taken: tuple[str, ...] = ()
    if cfg.init is not None and not resume:
        taken = load_init(model, cfg.init, log if ddp.main else (lambda s: None))
    params = trainable(model, cfg.stage)
    # What the weights this run saves hold learned: what it trains and what its --init gave it
    # (so that a parser-stage run from a whole model passes the shader on to the next --init).
    learned = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad} | set(taken)
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    start = 0
    if resume:
        latest = checkpoint.latest(out)
        assert latest is not None
        start = checkpoint.load(latest, model, opt)
        learned |= set(learned_parts(training_meta(latest / "model.safetensors"), model.parts))
        if ddp.main:
            log(f"resuming from {latest} (step {start})")
    elif ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    if ddp.main:
        meta = {"config": cfg.to_dict(), "argv": sys.argv, "world_size": ddp.world_size, "device": str(device),
                "characters": {"train": len(train_chars), "validation": [c.name for c in val_chars]}}
        (out / RUN_FILE).write_text(json.dumps(meta, indent=1))

    objective: nn.Module = _Objective(model, cfg.losses, cfg.stage)
    if ddp.world_size > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = StepSampler(len(train_set), cfg.batch_size, cfg.seed, views, start, cfg.steps, ddp.rank,
                          ddp.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=_collate,
                        worker_init_fn=_worker_init, persistent_workers=False,
                        prefetch_factor=4 if cfg.workers else None, pin_memory=device.type == "cuda")
    # With no held-out characters (a single `conr poses` model, say) the grids show training characters.
    val_batch = (_validation_batch(val_chars or train_chars, cfg.size, views[1], renders, cfg.stage == "lines")
                 if ddp.main else None)
    val_tag = "val" if val_chars else "fixed_train"
    metrics = MetricsLog(out, start if resume else None) if ddp.main else None
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    bar = None
    if ddp.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    step = start
    last_saved = start
    meta_run = {"preset": cfg.preset, "size": cfg.size, "data": cfg.data, "seed": cfg.seed, "stage": cfg.stage,
                "learned": [p for p in model.parts if p in learned]}
    window: list[dict[str, float]] = []
    updating = False
    t0, samples_done = time.perf_counter(), 0
    model.train()
    stop = _StopBetweenSteps()
    try:
        for batch in loader:
            stop.check()

            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast:
                terms = objective(batch)
            loss = terms["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            # A finite loss can still have a non-finite gradient: either would poison the weights (and
            # the next checkpoint), so both stop the run before the optimiser step.
            finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).float()
            if ddp.world_size > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            if finite.item() < 1:
                raise ConrError(f"the loss became {loss.item():.4g} (gradient norm {float(grad_norm):.4g}) at step "
                                f"{step}; the last good checkpoint (step {last_saved}) is kept in "
                                f"{out / 'checkpoints'}", hint="resume with --resume after lowering --lr, or check the data")
            updating = True  # an interrupt from here to the end of the update leaves no consistent state
            opt.step()
            step += 1
            updating = False
            samples_done += cfg.batch_size
            window.append({**{f"loss/{k}": float(v.detach()) for k, v in terms.items()}, "grad_norm": float(grad_norm)})
            log_now = step % cfg.log_every == 0 or step == cfg.steps
            if log_now:
                values = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                if ddp.world_size > 1:  # the losses of the global batch, not of this process's share
                    mean = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
                    dist.all_reduce(mean)
                    values = dict(zip(values, (mean / ddp.world_size).tolist()))
                window = []
            if ddp.main and log_now:
                elapsed = time.perf_counter() - t0
                values.update({"lr": lr, "samples_per_s": samples_done / elapsed})
                assert metrics is not None
                metrics.write(step, values)
                t0, samples_done = time.perf_counter(), 0
                if bar is not None:
                    shown = "loss/rgba" if "loss/rgba" in values else "loss/parser"
                    bar.set_postfix(loss=f"{values['loss/total']:.4f}", **{shown[5:]: f"{values[shown]:.4f}"},
                                    samples_s=f"{values['samples_per_s']:.2f}")
            if bar is not None:
                bar.update(1)
            if ddp.main and val_batch is not None and (step % cfg.sample_every == 0 or step == cfg.steps):
                val = _validate(model, val_batch, cfg.losses, device, autocast, out / "samples" / f"step_{step:08d}.png",
                                cfg.stage)
                assert metrics is not None
                metrics.write(step, {f"{val_tag}/{k}": v for k, v in val.items()})
            if step % cfg.save_every == 0 or step == cfg.steps:
                if ddp.main:
                    checkpoint.save(out, model, opt, step, {**meta_run, "step": step})
                last_saved = step
            stop.check()
    except KeyboardInterrupt:
        if ddp.main and updating:
            log(f"\ninterrupted during an optimiser update: the last checkpoint (step {last_saved}) is kept; "
                "continue with --resume")
        elif ddp.main and step > last_saved:
            checkpoint.save(out, model, opt, step, {**meta_run, "step": step})
            log(f"\ninterrupted: saved step {step}; continue with --resume")
        raise
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
        if ddp.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return out / RUN_WEIGHTS


def _validation_batch(chars, size: int, views: int, flow: bool = True, line_profiles: bool = False,
                      count: int = 4) -> dict[str, Tensor]:
    """A few fixed held-out samples: the first frames of the first validation characters."""
    ds = SampleSet(chars, size, jitter=None, flow=flow, line_profiles=line_profiles)
    picks = [ds.items.index((c, 0)) for c in range(min(count, len(chars)))]
    picks += [i for i in range(len(ds)) if i not in picks][:count - len(picks)]
    return _collate([ds[SampleKey(i, min(views, ds.max_views), None)] for i in picks])


@torch.no_grad()
def _validate(model: CoNR, batch: dict[str, Tensor], weights: LossWeights, device: torch.device,
              autocast, grid: Path, stage: str = "all") -> dict[str, float]:
    model.eval()
    batch = _to(batch, device)
    with autocast:
        out = forward(model, batch, stage=stage)
    terms = training_loss(weights, out, batch)
    if "rgba" in out:
        shown = out["rgba"].float().cpu()  # type: ignore[union-attr]
    elif "target_udp" in out:  # the parser alone: its UDP of the target images, XYZ as colour
        udp = out["target_udp"].float().clamp(0, 1).cpu()  # type: ignore[union-attr]
        shown = torch.cat([udp[:, :3] * udp[:, 3:4], udp[:, 3:4]], 1)
    else:  # the line head alone draws nothing
        model.train()
        return {k: float(v) for k, v in terms.items()}
    write_grid(grid, {k: v.cpu() for k, v in batch.items()}, shown)
    model.train()
    return {k: float(v) for k, v in terms.items()}
