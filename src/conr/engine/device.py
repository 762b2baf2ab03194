"""Choosing the torch device for rendering, with a clear error when it is not there."""

from __future__ import annotations

import torch

from conr.errors import ConrError


def resolve_device(name: str) -> str:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConrError(f"unknown device {name!r} ({err})", hint="use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConrError("CUDA was asked for but no CUDA device is available", hint="use --device cpu")
    return str(device)


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads in torch (None keeps torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise ConrError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
