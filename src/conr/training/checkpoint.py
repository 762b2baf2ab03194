"""Training checkpoints: safetensors only, written atomically, nothing ever unpickled.

    OUT/checkpoints/step_00001000/model.safetensors   the weights and config (`conr render --weights`)
    OUT/checkpoints/step_00001000/state.safetensors   optimiser moments, step, RNG states
    OUT/model.safetensors                             a copy of the newest weights

A checkpoint folder is built under a temporary name and renamed when complete, so the newest folder
is always whole; older ones are removed only after a newer one exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from conr.errors import ConrError
from conr.files.io import atomic_dir, atomic_write_bytes
from conr.models import CoNR
from conr.render.weights import read_safetensors, save_safetensors

KEEP = 2  # checkpoint folders kept


def _folder(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:08d}"


def latest(out: str | Path) -> Path | None:
    folders = sorted((Path(out) / "checkpoints").glob("step_*"))
    return folders[-1] if folders else None


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {f"optimizer.{i}.{k}": v.detach().cpu().contiguous()
               for i, state in sd["state"].items() for k, v in state.items()}
    return tensors, sd["param_groups"]


def save(out: str | Path, model: CoNR, opt: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> Path:
    """Write the checkpoint of `step` and the top-level model copy; return the checkpoint folder."""
    out = Path(out)
    folder = _folder(out, step)
    tensors, groups = _optimizer_tensors(opt)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    state_meta = {"step": str(step), "param_groups": json.dumps(groups), "run": json.dumps(meta)}
    extra = {"step": str(step), "training": json.dumps(meta)}
    with atomic_dir(folder) as tmp:
        atomic_write_bytes(tmp / "state.safetensors", st_save(tensors, metadata=state_meta))
        save_safetensors(model, tmp / "model.safetensors", extra)
    shutil.copyfile(folder / "model.safetensors", out / ".model.safetensors.tmp")
    (out / ".model.safetensors.tmp").replace(out / "model.safetensors")
    for old in sorted((out / "checkpoints").glob("step_*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load(folder: Path, model: CoNR, opt: torch.optim.Optimizer) -> int:
    """Restore weights, optimiser and RNG states in place; return the step to continue from."""
    cfg, sds = read_safetensors(folder / "model.safetensors")
    if cfg != model.cfg:
        raise ConrError("the checkpoint's architecture differs from this run's", folder,
                        "resume with the options the run started with (they are in run.json)")
    for part, sd in sds.items():
        model.part(part).load_state_dict(sd, strict=True)
    path = folder / "state.safetensors"
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ConrError(f"cannot read the training state ({err})", path, "delete this checkpoint folder to "
                        "resume from the one before it") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(meta["step"])
