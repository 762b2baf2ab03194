"""The CINN shader (paper Sec. 3.3): Collaborative Inference in Neural Networks.

Each character sheet view proposes a warp of its own features towards the target pose, level by
level from coarse to fine; after every level the views exchange messages through a softmax over
the view dimension, so that each view sees what the others have found. The last level's fused
message is what the RGBA decoder turns into pixels.

Tensors: B frames, V views. Per-view tensors are folded to (B*V, C, H, W) so that every
convolution runs once for all views of all frames; fused (per-frame) tensors are (B, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conr.models import winograd
from conr.models.layers import derived_weight
from conr.models.warp import rescale_flow, warp, warp_groups


@dataclass(frozen=True)
class ShaderConfig:
    reference_channels: int = 4  # RGBA of a sheet view
    target_feature_channels: tuple[int, ...] = (512, 256, 128, 64, 64)
    reference_feature_channels: tuple[int, ...] = (2048, 1024, 512, 256, 64)
    message_channels: tuple[int, ...] = (2048, 1024, 512, 256, 64, 64)
    local_channels: tuple[int, ...] = (2048, 1024, 512, 256, 64, 0)
    residual_blocks: tuple[int, ...] = (1, 1, 1, 1, 1, 2)
    width: int = 224
    flow_groups: int = 16  # messages are warped in this many channel groups, each by its own flow

    @property
    def levels(self) -> int:
        return len(self.message_channels)

    def in_channels(self, level: int) -> int:
        """Input channels of a level: own flow + own warped RGBA + fused flow + fused RGBA
        (the 2 + 2 + 2 * RGBA of the paper), target and sheet features, incoming messages."""
        base = 2 + 2 + 2 * self.reference_channels
        prev_msg = self.message_channels[level - 1] if level > 0 else 0
        prev_local = self.local_channels[level - 1] if level > 0 else 0
        if level < len(self.reference_feature_channels):
            feats = self.target_feature_channels[level] + self.reference_feature_channels[level]
        else:
            feats = 0
        return base + feats + prev_msg + prev_local

    def mask_channels(self, level: int) -> int:
        # channel 0 weighs flow and RGBA, channel 1 the sheet features, the rest the messages.
        if level < len(self.reference_feature_channels):
            return 2 + self.local_channels[level]
        return 2 + self.message_channels[level]


class DecoderBlock(nn.Module):
    """One pyramid level: /4 strided convolutions, residual blocks, x4 transposed convolutions."""

    def __init__(self, in_channels: int, width: int, residual_blocks: int, messages: int,
                 locals_: int, masks: int, flow_groups: int):
        super().__init__()
        self.messages, self.locals, self.masks = messages, locals_, masks
        self.message_flows = 2 * flow_groups if messages > 0 else 0
        self.local_flows = 2 * flow_groups if locals_ > 0 else 0
        out = 2 + messages + self.message_flows + locals_ + self.local_flows + masks
        self.conv0 = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1), nn.PReLU(width),
            nn.Conv2d(width, width, 3, 2, 1), nn.PReLU(width),
        )
        self.convblocks = nn.ModuleList(
            nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(width, width, 3, 1, 1), nn.PReLU(width))])
            for _ in range(residual_blocks)
        )
        self.conv_last = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.PReLU(width),
            nn.ConvTranspose2d(width, out, 4, 2, 1),
        )

    def forward(self, parts: list[tuple[Tensor, bool]], views: int) -> dict[str, Tensor | None]:
        """parts: the inputs in channel order, each (tensor, shared). Per-view tensors are
        (B*V, C, h, w); shared ones (B, C, h, w) are the same for every view of a frame."""
        feat = self.conv0[1:](self._first_conv(parts, views))
        for block in self.convblocks:
            feat = winograd.apply(block, feat) + feat
        return self.split_outputs(winograd.apply(self.conv_last, feat))

    def split_outputs(self, out: Tensor) -> dict[str, Tensor | None]:
        """Name the output channels: residual flow, message and its group flows, local features
        and their group flows, and the fusion confidences (sigmoid)."""
        sizes = {"flow": 2, "message": self.messages, "message_flow": self.message_flows,
                 "local": self.locals, "local_flow": self.local_flows, "mask": self.masks}
        result: dict[str, Tensor | None] = {}
        start = 0
        for name, n in sizes.items():
            result[name] = out[:, start:start + n] if n > 0 else None
            start += n
        if result["mask"] is not None:
            result["mask"] = torch.sigmoid(result["mask"])
        return result

    def _first_conv(self, parts: list[tuple[Tensor, bool]], views: int) -> Tensor:
        """The first convolution is linear in its input channels: the shared channels are convolved
        once per frame instead of once per view, and added to every view's result."""
        conv = self.conv0[0]
        own = [t for t, shared in parts if not shared]
        common = [t for t, shared in parts if shared]
        if not common:
            return conv(torch.cat(own, dim=1))
        w_own, w_common = self._split_weight([(t.shape[1], shared) for t, shared in parts])
        y = F.conv2d(torch.cat(own, dim=1), w_own, conv.bias, conv.stride, conv.padding)
        y_common = F.conv2d(torch.cat(common, dim=1), w_common, None, conv.stride, conv.padding)
        b = y_common.shape[0]
        return (y.view(b, views, *y.shape[1:]) + y_common.unsqueeze(1)).view(y.shape)

    def _split_weight(self, layout: list[tuple[int, bool]]) -> tuple[Tensor, Tensor]:
        """The first convolution's weight split into the per-view and the shared input channels."""
        weight = self.conv0[0].weight

        def split() -> tuple[Tensor, Tensor]:
            groups: dict[bool, list[Tensor]] = {False: [], True: []}
            start = 0
            for n, shared in layout:
                groups[shared].append(weight[:, start:start + n])
                start += n
            return torch.cat(groups[False], dim=1), torch.cat(groups[True], dim=1)

        return derived_weight(self, "_split_cache", weight, split, key=tuple(layout))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x  # bilinear resampling to the same size is the identity
    if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] <= 32 * 32:
        # Small maps with many channels: PyTorch's CPU kernel is several times faster on channels-last
        # data, even counting both conversions (measured).
        x = x.contiguous(memory_format=torch.channels_last)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False).contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CINNShader(nn.Module):
    def __init__(self, cfg: ShaderConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(cfg.in_channels(i), cfg.width, cfg.residual_blocks[i], cfg.message_channels[i],
                         cfg.local_channels[i], cfg.mask_channels(i), cfg.flow_groups)
            for i in range(cfg.levels)
        )

    def forward(self, target_feats: list[Tensor], reference: Tensor, reference_feats: list[Tensor],
                trace: list[dict[str, Tensor]] | None = None) -> Tensor:
        """
        target_feats: target pose features, deepest first, each (B, C, h, w).
        reference: the sheet views' RGBA (RGB premultiplied), (B or 1, V, 4, H, W).
        reference_feats: the sheet views' parser features, deepest first, each (B or 1, V, C, h, w).
        trace: if a list is given, every level but the last appends its intermediate results to it:
        "flow" (B, V, 2, h, w) each view's accumulated flow in pixels of the next level's size,
        "warped" (B, V, 4, h, w) each view's RGBA warped by it, "fused" (B, 4, h, w) their fusion.
        Returns the fused final message (B, C, H, W).
        """
        b = target_feats[0].shape[0]
        v = reference.shape[1]

        def per_view(t: Tensor) -> Tensor:  # (1 or B, V, C, h, w) -> (B*V, C, h, w)
            return t.expand(b, *t.shape[1:]).reshape(b * v, *t.shape[2:])

        ref = per_view(reference)
        size = tuple(reference_feats[0].shape[-2:])
        flow = ref.new_zeros(b * v, 2, *size)
        wref = _resize(ref, size)
        wfeat: Tensor | None = per_view(reference_feats[0])
        local: Tensor | None = None
        # Fused (per-frame) state; at the first level each view sees itself as the fusion.
        fused_flow, fused_ref, fused_msg = flow, wref, None

        for level, block in enumerate(self.decoder_blocks):
            target = target_feats[level] if level < len(target_feats) else None
            first = level == 0
            # Channel order of the released weights; True marks inputs shared by all views.
            parts = [(flow, False), (target, True), (wref, False), (wfeat, False),
                     (fused_flow, not first), (fused_ref, not first), (fused_msg, True), (local, False)]
            out = block([(t, shared) for t, shared in parts if t is not None], v)

            nxt = per_view(reference_feats[level + 1]) if level + 1 < len(reference_feats) else None
            size = tuple((nxt if nxt is not None else ref).shape[-2:])
            mask = _resize(out["mask"], size)
            message = warp_groups(_resize(out["message"], size), rescale_flow(out["message_flow"], size))
            message = message.view(b, v, *message.shape[1:])  # (B, V, C, h, w)
            if level == len(self.decoder_blocks) - 1:
                # Only the fused message leaves the last level: its flow and warped RGBA would go unused.
                return _fuse(mask[:, 2:].reshape(b, v, -1, *size), message)
            flow = rescale_flow(flow + out["flow"], size)
            local = None
            if out["local"] is not None:
                local = warp_groups(_resize(out["local"], size), rescale_flow(out["local_flow"], size))
            wref = warp(_resize(ref, size), flow)
            wfeat = None if nxt is None else warp(nxt, flow)

            mask5 = mask.view(b, v, *mask.shape[1:])  # (B, V, M, h, w)
            fused_flow = _fuse(mask5[:, :, 0:1], flow.view(b, v, *flow.shape[1:]))
            fused_ref = _fuse(mask5[:, :, 0:1], wref.view(b, v, *wref.shape[1:]))
            fused_msg = _fuse(mask5[:, :, 2:], message)
            if trace is not None:
                trace.append({"flow": flow.view(b, v, *flow.shape[1:]), "warped": wref.view(b, v, *wref.shape[1:]),
                              "fused": fused_ref})
        raise AssertionError("unreachable: the last level returns")


def _fuse(confidence: Tensor, x: Tensor) -> Tensor:
    """Collaborative fusion over views (dim 1): each view's confidence times its softmax share."""
    weight = confidence * torch.softmax(confidence, dim=1)
    return (weight * x).sum(1)
