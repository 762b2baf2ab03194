"""Choosing the torch device for rendering, with a clear error when it is not there."""

from __future__ import annotations

import torch

from conr.errors import ConrError


def torch_device(name: str | torch.device, auto: bool = True) -> torch.device:
    """--device as a torch device: auto (CUDA when there is one), cpu, cuda or cuda:N, checked."""
    if auto and str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConrError(f"--device {name!r} is not a device", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConrError(f"--device {name!r}: conr runs on the CPU or on CUDA GPUs", hint="use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConrError("CUDA was asked for but no CUDA device is available", hint="use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConrError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                            hint=f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def resolve_device(name: str) -> str:
    return str(torch_device(name, auto=False))


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads in torch (None keeps torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise ConrError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
