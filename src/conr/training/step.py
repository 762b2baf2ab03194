"""One forward pass of the networks on a batch, as rendering runs them, plus what the losses need.

Stages (`conr train --stage`): "all" trains every part together; "parser" the UDP parser alone (on
sheet views and target images); "shader" everything but the parser, which then runs as rendering
runs it (the lookup family's refinement learns to correct the parser's real mistakes); "lines" the
lookup shader's line head alone, on the outlines the data's manifest gives (nothing is rendered:
a step is cheap, and a head learning one choice per sheet needs many).
"""

from __future__ import annotations

import torch
from torch import Tensor

from conr.models import CharacterSheet, CoNR
from conr.models.layers import ResUNet, normalize_input
from conr.models.warp import pixel_grid

STAGES = ("all", "parser", "shader", "lines")


def parse(model: CoNR, rgb: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The UDP parser's unclamped output (N, 4, H, W) and its features: rendering clamps the UDP to
    [0, 1], which would stop the gradient of every pixel predicted outside it."""
    raw, feats = ResUNet.forward(model.udpparsernet, normalize_input(rgb), decode=True)
    assert raw is not None
    return raw, feats


def forward(model: CoNR, batch: dict[str, Tensor], parse_targets: bool = True,
            stage: str = "all") -> dict[str, Tensor | list[Tensor]]:
    """batch: tensors of `conr.training.data.SampleSet`, stacked (B, ...). Returns what the stage
    trains: the rendered RGBA (B, 4, S, S), the parser's UDP of the sheet views (B*V, 4, S, S) and of
    the target images (B, 4, S, S), the shader's per-view flows, and (CINN) the fused warped RGBA."""
    if stage == "lines":
        return _forward_lines(model, batch)
    if stage == "parser":
        # The parser is trained at its own size: the data set's.
        rgb = batch["sheet_rgb"].flatten(0, 1)
        return {"sheet_udp": parse(model, rgb)[0], "target_udp": parse(model, batch["target_rgba"][:, :3])[0]}
    if model.cfg.lookup is not None:
        return _forward_lookup(model, batch, stage)
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
    if parse_targets and stage == "all":
        # Pose images (the original's image mode) go through the parser: it learns their UDP too.
        out["target_udp"] = parse(model, batch["target_rgba"][:, :3])[0]
    return out


def _forward_lines(model: CoNR, batch: dict[str, Tensor]) -> dict[str, Tensor | list[Tensor]]:
    """The line head's reading of every sample's sheet profile (sheet_ink, as CoNR.encode_sheet reads it)."""
    head = model.shader.lines if model.cfg.lookup is not None else None
    assert head is not None, "checked by conr.training.loop"
    width, colour = head(batch["sheet_profile"])  # SampleSet(line_profiles=True) read the sheets
    return {"line_width": width, "line_colour": colour}


def _forward_lookup(model: CoNR, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor | list[Tensor]]:
    """Every sample's sheet encoded and matched exactly as `conr render` does (CoNR.encode_sheet,
    CoNR.render), one sample at a time: each has a sheet of its own."""
    target = CoNR.target_input(batch["target_udp"], batch["target_alpha"])
    rgba, flows, lines = [], [], []
    for k in range(target.shape[0]):
        with torch.set_grad_enabled(stage == "all" and torch.is_grad_enabled()):
            sheet = model.encode_sheet(batch["sheet_rgb"][k], batch["sheet_alpha"][k])
        trace: list[dict[str, Tensor]] = []
        rgba.append(model.render(sheet, target[k:k + 1], trace))
        if "line_width" in trace[0]:  # what the line head read, as it drew the outline
            lines.append((trace[0]["line_width"], trace[0]["line_colour"]))
        coords = trace[0]["coords"]  # the sheet has the target's size here: coords - position = flow
        flows.append(coords - pixel_grid(*coords.shape[-2:], device=coords.device))
    lookup = model.cfg.lookup
    out: dict[str, Tensor | list[Tensor] | float] = {
        "rgba": torch.cat(rgba), "flows": [torch.cat(flows)],
        "flow_cap": lookup.max_correction * target.shape[-1]}
    if lines:  # what the line head read from each sheet: the outline's width weights and colour
        out["line_width"] = torch.cat([w for w, _ in lines])
        out["line_colour"] = torch.cat([c for _, c in lines])
    if stage == "all":
        out["sheet_udp"] = parse(model, batch["sheet_rgb"].flatten(0, 1))[0]
    return out
