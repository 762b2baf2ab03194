"""The lookup shader: correspondence-first rendering, the CINN shader's job started from a good guess.

Explicit matching through UDP (conr.models.matching) gives every target pixel, in every sheet view,
the pixel that shows the same body point: an initial flow per view and how far the match is. The
network here only corrects what that guess gets wrong (the parser's UDP is never exact):

- per view, from the view's pixels warped by its initial flow, the UDP mismatch left after the warp
  and the match distance, it predicts a flow correction (up to `max_correction`; the `lookup`
  preset moves no match, see conr.models.config) and a confidence; the views exchange messages (a
  mean over the view dimension) at every scale, as the CINN's views do;
- the colour is *copied from the sheet's own pixels* through the corrected flows, the views blended
  by a softmax of their confidences, so detail survives at any resolution;
- a full-resolution head adds what no view can give: colour where no view shows the surface, a
  shading gain, and the ink outline just outside the silhouette. Alpha is the target's, plus that
  outline. With `ink`, the outline and the lines inside the figure (where one body part passes in
  front of another) are drawn in the sheet's own line colour (`sheet_ink`), which the head is told:
  copying cannot draw them, as the sheet's lines lie where the sheet's pose put them.

Tensors: B frames, V views, S the image size; per-view tensors are folded to (B*V, C, h, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conr.models.matching import erode
from conr.models.tilt import TILT_FEATURES, tilt
from conr.models.warp import sample

_EPS = 1e-6


@dataclass(frozen=True)
class LookupShaderConfig:
    parser_size: int = 128  # the UDP parser reads images at this size (its UDP is upsampled to S)
    work_size: int = 128  # the refinement network runs at this size; its flows are upsampled to S
    widths: tuple[int, ...] = (24, 48, 96, 128)  # refinement U-Net channels, one per scale (/1, /2, /4, /8)
    head_width: int = 16  # channels of the full-resolution head
    max_distance: float = 0.1  # match distances are read as a fraction of this (UDP units)
    max_correction: float = 0.15  # largest flow correction, as a fraction of the image size (0: none)
    prior: float = 300.0  # views start weighted by exp(-prior * match distance): the nearest match wins
    # A band along each sheet view's silhouette, as a share of its side, that matching skips: there the
    # parser is least sure and the pixels are outline ink, so copying them speckles the frame (the head
    # draws the outline). 0.016 is 3 px of a 190 px view (a figure filling a 256 px image): the best of
    # 0 to 0.027 on validation characters (seed 700000; right pixels at 256 px 0.48 without, 0.52 with).
    edge_margin: float = 0.016
    # Draw the outline and inner lines in the sheet's line colour (sheet_ink). Off in files saved
    # before it existed, which have no such head inputs.
    ink: bool = False
    # With `ink`: draw the outline as wide as the sheet draws it, in a colour picked from the sheet's
    # edge (`LineHead`), instead of the head's guess of a width it cannot see. Off in files saved before.
    line_width: bool = False
    # Read each sheet view, and each pose given as an image, as an ensemble (`CoNR.parse_sheet`):
    # shifted by half a parser pixel and mirrored. Rendering only, so files saved before it existed
    # read their sheets and pose images so too.
    parser_ensemble: bool = True
    # The share of the parser's frame that a sheet view's (or pose image's) box fills when read
    # (`CoNR.parse_sheet` adds the margin): the parser stage trains on crops 0.85-1.5 times the box by
    # default (`conr train --crop-scale`; v10's last steps 1.05-1.3), while rendering crops views to their
    # box. Rendering only, so files saved before it
    # existed read so too. Measured with the bundled weights through `conr render`'s defaults
    # (validation characters, seed 710000 / the same in the styles never trained on / seed 700000 with
    # posed sheets): 1 (no margin) 0.611 / 0.664 / 0.552, 0.85 0.623 / 0.682 / 0.562; 0.9 and 0.75 on
    # the first 0.621 and 0.619.
    parser_zoom: float = 0.85
    # Surface tilt (conr.models.tilt) of the target and of each view's warped pixels, read by the
    # refinement network and the head: where a copied pixel's shading cannot be the target's. Off in
    # files saved before it existed.
    tilt: bool = False
    # Matching counts distances along each sheet view's depth axis this much (SurfaceIndex): the parser
    # reads depth worst. 1 (plain distances) in every preset and in files saved before it existed: the
    # bundled weights with 0.6 gained on validation characters and not on held-out ones (docs/training.md).
    depth_squeeze: float = 1.0


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.PReLU(c_out),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.PReLU(c_out))


class ViewExchange(nn.Module):
    """Collaborative inference: every view hears the mean and the maximum of all views' features."""

    def __init__(self, c: int):
        super().__init__()
        self.mix = nn.Conv2d(3 * c, c, 1)

    def forward(self, x: Tensor, views: int) -> Tensor:
        bv, c, h, w = x.shape
        x5 = x.view(bv // views, views, c, h, w)
        mean = x5.mean(1, keepdim=True).expand_as(x5)
        top = x5.max(1, keepdim=True).values.expand_as(x5)
        return x + self.mix(torch.cat([x5, mean, top], 2).view(bv, 3 * c, h, w))


# Per-view input channels: warped RGBA (4), UDP mismatch after the warp (3), match distance and
# matched flag (2), the view's own warped UDP visibility (1), the target's XYZ * A and A (4).
VIEW_INPUTS = 14
# Full-resolution head outputs: residual RGB (3), its gate (1), shading gain (1), outline alpha (1),
# with `ink` also the inner lines' coverage (1).
HEAD_OUTPUTS = 6
# With `ink`, the head also reads the sheet's line colour and the colour just inside its lines (6).
INK_INPUTS = 6
# Sheet-side widths of sheet_ink's bands, in pixels of a 256 px view (scaled with the view's side).
_INK_BAND, _INNER_FROM, _INNER_TO = 1, 3, 6
# With `line_width`: the sheet's edge profile, 1-px bands inward from its silhouette (median straight
# colour and mean alpha of each), and the outline widths to choose from, 0 to 4 px in half pixels.
LINE_BANDS = 6
LINE_WIDTHS = 9


def sheet_ink(reference: Tensor, bands: int = 0) -> Tensor:
    """The sheet's line colour and the colour just inside it: (N, V, 4, s, s) premultiplied RGBA ->
    (N, 6). The line colour is the median straight colour of each view's outermost touched pixels
    (a line pixel's straight colour is the ink's whatever its coverage); the inner colour is the
    median a few pixels further in. Where a drawing has no lines the two are alike, which is how the
    head tells whether to draw any. With `bands`, then the edge profile (`LINE_BANDS`): (N, 6 + 4 bands),
    the median straight colour and mean alpha of each 1-px band inward from the silhouette, in the
    sheet's own pixels (a line 2 px wide there is drawn 2 px wide in the frames)."""
    n, v, _, s, _ = reference.shape
    rgba = reference.flatten(0, 1).float()  # (N*V, 4, s, s)
    a = rgba[:, 3:4]
    straight = (rgba[:, :3] / a.clamp_min(_EPS)).clamp(0, 1)
    unit = max(1, round(s / 256))
    touched = (a > 0.3).float()  # fainter pixels: 8-bit premultiplied colour leaves their hue to rounding
    band = (touched - erode(touched, _INK_BAND * unit)) > 0.5
    solid = (a > 0.5).float()
    inner = (erode(solid, _INNER_FROM * unit) - erode(solid, _INNER_TO * unit)) > 0.5
    masks = [band, inner]
    if bands:
        # Not only the pixels over 0.3: a halo or a soft edge shows in the outer bands' alpha.
        seen = (a > 0.02).float()
        masks += [(erode(seen, d) - erode(seen, d + 1)) > 0.5 for d in range(bands)]
    out = reference.new_zeros(n, INK_INPUTS + 4 * bands).float()
    for k in range(n):
        views = slice(k * v, (k + 1) * v)
        for j, mask in enumerate(masks):
            sel = mask[views, 0]
            cols = straight[views].permute(1, 0, 2, 3)[:, sel]  # (3, P)
            at = 3 * j if j < 2 else INK_INPUTS + 4 * (j - 2)
            if cols.shape[1] > 0:
                out[k, at:at + 3] = cols.median(1).values
                if j >= 2:
                    out[k, at + 3] = a[views, 0][sel].mean()
    return out.to(reference.dtype)


def ring_coverage(alpha: Tensor, widths: int = LINE_WIDTHS) -> Tensor:
    """How much of each pixel an outline 0, 1/2, 1, ... px wide around the figure covers: (B, 1, H, W)
    alpha -> (B, widths, H, W). The figure's edge is placed at twice the resolution from a smoothed
    alpha, so an outline half a pixel wide covers half of the pixels beside a straight edge, as a
    supersampled drawing's does; each width is the figure grown by that many half pixels (square
    steps, as ink drawn by dilation), taken at the frame's resolution."""
    g = torch.tensor([0.1, 0.8, 0.1], device=alpha.device, dtype=alpha.dtype)
    k = (g[:, None] * g[None])[None, None]
    smooth = F.conv2d(F.pad(alpha.float(), (1, 1, 1, 1), mode="replicate"), k.float())
    body = (F.interpolate(smooth, scale_factor=2, mode="bilinear", align_corners=False) > 0.5).float()
    covs, grown = [torch.zeros_like(alpha, dtype=torch.float32)], body
    for _ in range(1, widths):
        grown = F.max_pool2d(grown, 3, 1, 1)
        covs.append(F.avg_pool2d(grown, 2))
    return torch.cat(covs, 1).to(alpha.dtype)


class LineHead(nn.Module):
    """From the sheet's edge profile, the outline's width (a softmax over `LINE_WIDTHS`) and its colour
    (a softmax over the profile's bands): a halo or a soft cut-out puts the ink a band or two in."""

    # Its outputs are scaled up: one choice per sheet learns from few pixels a step, and its logits
    # must move by several units within a few hundred steps.
    gain = 10.0

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 * LINE_BANDS, hidden), nn.PReLU(hidden),
                                 nn.Linear(hidden, LINE_WIDTHS + LINE_BANDS))
        nn.init.zeros_(self.net[-1].weight)
        # Untrained: mostly a line 1 px wide, in the outermost band's colour. A head sure of one width
        # (no line) would take thousands of steps to learn the others: its softmax is saturated.
        with torch.no_grad():
            bias = torch.zeros(LINE_WIDTHS + LINE_BANDS)
            bias[2], bias[LINE_WIDTHS] = 2.0, 4.0
            self.net[-1].bias.copy_(bias / self.gain)

    def forward(self, profile: Tensor) -> tuple[Tensor, Tensor]:
        """profile (B, 4 LINE_BANDS) -> width weights (B, LINE_WIDTHS), ink colour (B, 3)."""
        out = self.net(profile) * self.gain
        width = torch.softmax(out[:, :LINE_WIDTHS], 1)
        pick = torch.softmax(out[:, LINE_WIDTHS:], 1)
        colour = (pick[:, :, None] * profile.view(-1, LINE_BANDS, 4)[:, :, :3]).sum(1)
        return width, colour


class LookupShader(nn.Module):
    def __init__(self, cfg: LookupShaderConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        tilts = 2 * TILT_FEATURES if cfg.tilt else 0  # the target's and the view's (or the blend's)
        self.down = nn.ModuleList([_block(VIEW_INPUTS + tilts, w[0])] +
                                  [_block(w[i - 1], w[i], stride=2) for i in range(1, len(w))])
        self.exchange = nn.ModuleList(ViewExchange(c) for c in w)
        self.up = nn.ModuleList(_block(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.view_head = nn.Conv2d(w[0], 3, 3, 1, 1)  # flow correction (2), confidence (1)
        self.feature_head = nn.Conv2d(w[0], cfg.head_width, 1)
        hw = cfg.head_width
        extra = INK_INPUTS if cfg.ink else 0
        plain = hw + 3 + 1 + 4  # the head's own inputs: features, straight colour, any match, target
        self.head = nn.Sequential(nn.Conv2d(plain + extra + tilts, hw, 3, 1, 1), nn.PReLU(hw),
                                  nn.Conv2d(hw, hw, 3, 1, 1), nn.PReLU(hw),
                                  nn.Conv2d(hw, HEAD_OUTPUTS + int(cfg.ink), 3, 1, 1))
        # Untrained, the shader is the plain lookup: no correction, the nearest match's view, no
        # residual colour, no shading change, no lines, and no outline but the line head's.
        head_bias = (0.0, 0.0, 0.0, -6.0, 0.0, -6.0) + ((-6.0,) if cfg.ink else ())
        for conv, bias in ((self.view_head, (0.0, 0.0, 0.0)), (self.head[-1], head_bias)):
            nn.init.zeros_(conv.weight)
            with torch.no_grad():
                conv.bias.copy_(torch.tensor(bias))
        with torch.no_grad():  # the line colour and the tilt have no say until trained (inputs last)
            self.head[0].weight[:, plain:].zero_()
            self.down[0][0].weight[:, VIEW_INPUTS:].zero_()
        self.lines = LineHead() if cfg.ink and cfg.line_width else None

    def forward(self, target: Tensor, reference: Tensor, sheet_udp: Tensor, coords: Tensor, distance: Tensor,
                trace: dict[str, Tensor] | None = None, ink: Tensor | None = None) -> Tensor:
        """
        target: (B, 4, H, W) the pose: surface XYZ * A and A.
        reference: (1 or B, V, 4, s, s) the sheet views' RGBA, RGB premultiplied, at the sheet's own size.
        sheet_udp: (1 or B, V, 4, s, s) the parser's UDP of the sheet views.
        coords, distance: (B, V, 2, H, W) and (B, V, 1, H, W), the matches (conr.models.matching):
        the sheet pixel (x, y) of each view that shows each target pixel's surface point, and how far.
        trace: if a dict is given, it receives "coords" (B, V, 2, H, W) the corrected matches and
        "weight" (B, V, 1, H, W) the views' blend weights; with the line head also "line_width"
        (B, LINE_WIDTHS) and "line_colour" (B, 3), what it read from the sheet.
        ink: (1 or B, 6) sheet_ink(reference), with `line_width` (1 or B, 6 + 4 LINE_BANDS), if already
        known (it is read once per sheet).
        Returns RGBA (B, 4, H, W), RGB premultiplied.
        """
        cfg = self.cfg
        b, v = coords.shape[:2]
        h, w = target.shape[-2:]
        side = reference.shape[-1]

        def per_view(t: Tensor) -> Tensor:  # (1 or B, V, C, h, w) -> (B*V, C, h, w)
            return t.expand(b, *t.shape[1:]).reshape(b * v, *t.shape[2:])

        ref, udp = per_view(reference), per_view(sheet_udp)
        coords, distance = coords.flatten(0, 1), distance.flatten(0, 1)
        matched = torch.isfinite(distance).float()
        near = torch.where(matched > 0, distance, 0.0)

        # The initial guess: each view's pixels and UDP (and tilt) brought to the target.
        sources = [ref, udp]
        if cfg.tilt:  # of the V sheet views, before they are repeated for each frame
            sources.append(per_view(tilt(sheet_udp.flatten(0, 1)).view(*sheet_udp.shape[:2], TILT_FEATURES,
                                                                        *sheet_udp.shape[-2:])))
        warped = sample(torch.cat(sources, 1), coords)  # (B*V, 8 [+ 3], H, W)
        tgt = target.repeat_interleave(v, 0)  # (B*V, 4, H, W)
        mismatch = (warped[:, 4:7] - tgt[:, 0:3]) * tgt[:, 3:4] * matched
        x = [warped[:, 0:4], mismatch, (near / cfg.max_distance).clamp(max=4.0) * matched, matched,
             warped[:, 7:8], tgt]
        if cfg.tilt:
            target_tilt, view_tilt = tilt(target), warped[:, 8:] * matched
            x += [target_tilt.repeat_interleave(v, 0), view_tilt]
        x = torch.cat(x, 1)
        x = _resize(x, (cfg.work_size, cfg.work_size))

        skips = []
        for down, exchange in zip(self.down, self.exchange):
            x = exchange(down(x), v)
            skips.append(x)
        for i, up in enumerate(self.up):
            skip = skips[-2 - i]
            x = up(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        out = self.view_head(x)  # (B*V, 3, w, w)
        # Views start weighted by how near their match is; unmatched views count for almost nothing.
        logit = _resize(out[:, 2:3], (h, w)) - cfg.prior * near - 30.0 * (1 - matched)

        if cfg.max_correction > 0:  # with none (the lookup preset), no full-size resize per view for zeros
            coords = coords + _resize(torch.tanh(out[:, 0:2]) * cfg.max_correction * side, (h, w))
        colour = sample(ref, coords)  # (B*V, 4, H, W): the sheet's own pixels
        weight = torch.softmax(logit.view(b, v, 1, h, w), dim=1)  # (B, V, 1, H, W)
        fused = (weight * colour.view(b, v, 4, h, w)).sum(1)  # (B, 4, H, W), premultiplied
        # Straight colour: matched pixels on a view's anti-aliased edge are part transparent.
        straight = (fused[:, :3] / fused[:, 3:4].clamp_min(_EPS)).clamp(0, 1)
        any_match = matched.view(b, v, 1, h, w).amax(1)  # (B, 1, H, W)

        feats = (weight * _resize(self.feature_head(x), (h, w)).view(b, v, -1, h, w)).sum(1)
        head_in = [feats, straight, any_match, target]
        if cfg.ink:
            bands = LINE_BANDS if self.lines is not None else 0
            ink = (sheet_ink(reference, bands) if ink is None else ink)
            ink = ink.expand(b, ink.shape[1])  # (B, 6 [+ 4 LINE_BANDS])
            head_in.append(ink[:, :INK_INPUTS, None, None].expand(b, INK_INPUTS, h, w))
        if cfg.tilt:  # the target's tilt beside that of the pixels the blend copies
            head_in += [target_tilt, (weight * view_tilt.view(b, v, -1, h, w)).sum(1)]
        head = self.head(torch.cat(head_in, 1))
        residual = torch.sigmoid(head[:, 0:3])
        gate = torch.maximum(torch.sigmoid(head[:, 3:4]), 1 - any_match)
        gain = 2 * torch.sigmoid(head[:, 4:5])
        outline = torch.sigmoid(head[:, 5:6])
        rgb = gate * residual + (1 - gate) * (straight * gain).clamp(0, 1)
        a = target[:, 3:4]
        alpha = a + (1 - a) * outline
        if trace is not None:
            trace["coords"] = coords.view(b, v, 2, h, w)
            trace["weight"] = weight
        if not cfg.ink:
            return torch.cat([rgb * alpha, alpha], 1)
        # The outline covers what the figure leaves of a pixel, the inner lines part of the figure.
        lines = torch.sigmoid(head[:, 6:7])
        ink_rgb = ink[:, :3, None, None]
        if self.lines is not None:  # the sheet's width and colour, not the head's outline
            width, colour = self.lines(ink[:, INK_INPUTS:])
            if trace is not None:
                trace["line_width"], trace["line_colour"] = width, colour
            # Rendering grows the figure only as far as a width with any weight: a 1/2-px line, once.
            upto = LINE_WIDTHS if width.requires_grad else int((width.amax(0) > 1e-4).nonzero().max()) + 1
            width = width[:, :upto]
            outline = (width[:, :, None, None] * ring_coverage(a, upto)).sum(1, keepdim=True)
            alpha = a + (1 - a) * outline
            ink_rgb = colour[:, :, None, None]
        premultiplied = rgb * a * (1 - lines) + ink_rgb * (a * lines + (1 - a) * outline)
        return torch.cat([premultiplied, alpha], 1)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-1] > size[1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
