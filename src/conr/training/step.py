"""One forward pass of all four networks on a batch, as rendering runs them, plus what the losses need."""

from __future__ import annotations

import torch
from torch import Tensor

from conr.models import CharacterSheet, CoNR
from conr.models.layers import ResUNet, normalize_input


def parse(model: CoNR, rgb: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The UDP parser's unclamped output (N, 4, H, W) and its features: rendering clamps the UDP to
    [0, 1], which would stop the gradient of every pixel predicted outside it."""
    raw, feats = ResUNet.forward(model.udpparsernet, normalize_input(rgb), decode=True)
    assert raw is not None
    return raw, feats


def forward(model: CoNR, batch: dict[str, Tensor], parse_targets: bool = True) -> dict[str, Tensor | list[Tensor]]:
    """batch: tensors of `conr.training.data.SampleSet`, stacked (B, ...). Returns the rendered RGBA
    (B, 4, S, S), the parser's UDP of the sheet views (B*V, 4, S, S) and of the target images
    (B, 4, S, S), each level's per-view flows and the fused warped RGBA of the last warp."""
    b, v = batch["sheet_rgb"].shape[:2]
    rgb, alpha = batch["sheet_rgb"].flatten(0, 1), batch["sheet_alpha"].flatten(0, 1)  # (B*V, C, S, S)
    sheet_udp, feats = parse(model, rgb)
    # The same sheet encoding as CoNR.encode_sheet, with a batch dimension in front of the views.
    reference = torch.cat([alpha * rgb, alpha], dim=1).view(b, v, 4, *rgb.shape[-2:])
    sheet = CharacterSheet(reference, [f.view(b, v, *f.shape[1:]) for f in feats], None)
    trace: list[dict[str, Tensor]] = []
    target = CoNR.target_input(batch["target_udp"], batch["target_alpha"])
    rgba = model.render(sheet, target, trace)
    out: dict[str, Tensor | list[Tensor]] = {
        "rgba": rgba, "sheet_udp": sheet_udp,
        "flows": [t["flow"] for t in trace], "warped": trace[-1]["fused"],
    }
    if parse_targets:
        # Pose images (the original's image mode) go through the parser: it learns their UDP too.
        out["target_udp"] = parse(model, batch["target_rgba"][:, :3])[0]
    return out
