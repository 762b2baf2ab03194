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
