"""A straightforward CoNR renderer to measure against: one frame at a time, one sheet view at a
time, every fused quantity computed as the paper describes it. It shares the weights (modules) of
our model, so both compute the same function and their outputs can be compared directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conr.models import CharacterSheet, CoNR
from conr.models.warp import rescale_flow, warp, warp_groups


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _plain_block(block: nn.Module, x: Tensor) -> dict[str, Tensor | None]:
    """A shader level with PyTorch's own layers, none of our fast paths."""
    feat = block.conv0(x)
    for res in block.convblocks:
        feat = res(feat) + feat
    return block.split_outputs(block.conv_last(feat))


def shade_one_frame(model: CoNR, target_feats: list[Tensor], reference: Tensor, ref_feats: list[Tensor]) -> Tensor:
    """target_feats: each (1, C, h, w); reference (1, V, 4, H, W); ref_feats: each (1, V, C, h, w)."""
    shader = model.shader
    views = reference.shape[1]
    flows: list[Tensor] = []
    wrefs: list[Tensor] = []
    wfeats: list[Tensor | None] = []
    locals_: list[Tensor | None] = [None] * views
    fused_flow = fused_ref = fused_msg = None
    for level, block in enumerate(shader.decoder_blocks):
        new_flows, new_wrefs, new_wfeats, new_locals, masks, messages = [], [], [], [], [], []
        for v in range(views):
            ref_v = reference[:, v]
            if level == 0:
                feat = ref_feats[0][:, v]
                flow = torch.zeros_like(feat[:, :2])
                wref = _resize(ref_v, feat.shape[-2:])
                wfeat = feat
                v_fused_flow, v_fused_ref = flow, wref
            else:
                flow, wref, wfeat = flows[v], wrefs[v], wfeats[v]
                v_fused_flow, v_fused_ref = fused_flow, fused_ref
            target = target_feats[level] if level < len(target_feats) else None
            parts = [flow, target, wref, wfeat, v_fused_flow, v_fused_ref, fused_msg, locals_[v]]
            out = _plain_block(block, torch.cat([p for p in parts if p is not None], dim=1))
            flow = flow + out["flow"]
            nxt = ref_feats[level + 1][:, v] if level + 1 < len(ref_feats) else None
            size = tuple((nxt if nxt is not None else ref_v).shape[-2:])
            flow = rescale_flow(flow, size)
            masks.append(_resize(out["mask"], size))
            messages.append(warp_groups(_resize(out["message"], size), rescale_flow(out["message_flow"], size)))
            new_locals.append(None if out["local"] is None else
                              warp_groups(_resize(out["local"], size), rescale_flow(out["local_flow"], size)))
            new_wrefs.append(warp(_resize(ref_v, size), flow))
            new_wfeats.append(None if nxt is None else warp(nxt, flow))
            new_flows.append(flow)
        flows, wrefs, wfeats, locals_ = new_flows, new_wrefs, new_wfeats, new_locals
        mask = torch.stack(masks, 1)
        weight = mask * torch.softmax(mask, dim=1)
        fused_flow = (weight[:, :, 0:1] * torch.stack(flows, 1)).sum(1)
        fused_ref = (weight[:, :, 0:1] * torch.stack(wrefs, 1)).sum(1)
        fused_msg = (weight[:, :, 2:] * torch.stack(messages, 1)).sum(1)
    assert fused_msg is not None
    return fused_msg


@torch.inference_mode()
def render_frame(model: CoNR, sheet: CharacterSheet, target: Tensor) -> Tensor:
    """target (1, 4, H, W) -> RGBA (1, 4, H, W)."""
    feats = model.target_pose_encoder(target)
    return model.rgbadecodernet(shade_one_frame(model, feats, sheet.reference, sheet.features))
