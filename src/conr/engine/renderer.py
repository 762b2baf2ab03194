"""Render a posed skinned mesh to a UDP frame and/or a cel-shaded RGBA image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from conr.engine.camera import Camera
from conr.engine.rasterizer import AlphaTest, Fragments, interpolate, rasterize
from conr.engine.skinning import SkinnedMesh
from conr.engine.udp import UDPNormalizer, udp_from_fragments


@dataclass
class CelStyle:
    """Anime shading: by default two tones (lit or shadowed) with an ink outline.

    `softness` widens the step from shadow to light into a gradient, `tones` quantises that gradient
    (3: a mid tone), `rim` brightens the lit silhouette, and the palette can be desaturated or darkened.
    """

    shadow: float = 0.72  # colour multiplier in shadow
    threshold: float = 0.0  # n.l below this is shadow
    outline_px: float = 1.0  # outline width at 512 px image height; 0 disables it
    outline_colour: tuple[float, float, float] = (0.18, 0.13, 0.16)
    crease: float = 0.04  # depth jump, as a fraction of the figure size, that draws an inner line
    softness: float = 0.0  # half-width in n.l of the shadow-to-light ramp; 0 is a hard step
    tones: int = 0  # levels the ramp is quantised to (0: not quantised)
    rim: float = 0.0  # strength of a rim light on the silhouette's lit side
    light: tuple[float, float] = (35.0, -30.0)  # key light elevation and azimuth (degrees, relative to the view)
    saturation: float = 1.0  # palette saturation factor
    value: float = 1.0  # palette brightness factor


def make_style(shading: str = "cel", outline: bool = True) -> CelStyle:
    """'cel' (two tones) or 'flat' (base colours only), with or without the ink outline."""
    if shading not in ("cel", "flat"):
        raise ValueError(f"shading must be 'cel' or 'flat', got {shading!r}")
    return CelStyle(shadow=1.0 if shading == "flat" else CelStyle.shadow, outline_px=1.0 if outline else 0.0)


def rasterize_mesh(vertices: Tensor, faces: Tensor, camera: Camera, cull_backfaces: bool = False,
                   alpha: AlphaTest | None = None) -> Fragments:
    proj = camera.project(vertices)
    return rasterize(proj.xy, proj.depth, proj.w, faces, camera.height, camera.width, cull_backfaces, alpha=alpha)


def alpha_test(mesh: SkinnedMesh, device: torch.device | str) -> AlphaTest | None:
    """The mesh's cut-out materials as an alpha test, or None when every face is opaque."""
    if mesh.face_alpha_cutoff is None or not bool((mesh.face_alpha_cutoff > 0).any()):
        return None
    return AlphaTest(mesh.uv.to(device), mesh.face_alpha_cutoff.to(device), mesh.face_texture.to(device),
                     [t[..., 3].to(device) for t in mesh.textures])


def render_udp(mesh: SkinnedMesh, posed: Tensor, camera: Camera, normalizer: UDPNormalizer) -> Tensor:
    """(H, W, 4) float32 UDP frame of the mesh posed at (V, 3) `posed`."""
    faces = mesh.faces.to(posed.device)
    frags = rasterize_mesh(posed, faces, camera, alpha=alpha_test(mesh, posed.device))
    return udp_from_fragments(frags, faces, mesh.rest_vertices().to(posed.device), normalizer)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted (V, 3) unit normals."""
    v = vertices[faces]  # (F, 3, 3)
    fn = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    n = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def render_rgba(
    mesh: SkinnedMesh,
    posed: Tensor,
    camera: Camera,
    style: CelStyle | None = None,
    light: Tensor | None = None,
    ssaa: int = 2,
) -> Tensor:
    """(H, W, 4) float32 straight-alpha RGBA in [0, 1], cel shaded, supersampled `ssaa` x `ssaa`."""
    style = style or CelStyle()
    big = Camera(**{**camera.__dict__, "width": camera.width * ssaa, "height": camera.height * ssaa})
    device = posed.device
    faces = mesh.faces.to(device)
    proj = big.project(posed)
    full = rasterize(proj.xy, proj.depth, proj.w, faces, big.height, big.width, alpha=alpha_test(mesh, device))
    result = torch.zeros(camera.height, camera.width, 4, device=device)
    if not bool(full.mask.any()):
        return result
    # Shade only the figure's box (plus room for the outline), aligned to whole output pixels.
    width_px = max(1, round(style.outline_px * big.height / 512)) if style.outline_px > 0 else 0
    rows = torch.nonzero(full.mask.any(1)).squeeze(1)
    cols = torch.nonzero(full.mask.any(0)).squeeze(1)
    pad = width_px + 1
    r0 = max(0, int(rows[0]) - pad) // ssaa * ssaa
    c0 = max(0, int(cols[0]) - pad) // ssaa * ssaa
    r1 = min(big.height, -(-(int(rows[-1]) + 1 + pad) // ssaa) * ssaa)
    c1 = min(big.width, -(-(int(cols[-1]) + 1 + pad) // ssaa) * ssaa)
    frags = Fragments(full.face[r0:r1, c0:c1], full.bary[r0:r1, c0:c1], full.depth[r0:r1, c0:c1])
    m = frags.mask
    light = (light if light is not None else camera.light_direction(*style.light)).to(device)
    normals = vertex_normals(posed, faces)
    n = interpolate(frags, faces, normals)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # Inside faces of open shells (skirt, sleeves) face away from the camera: light their other side.
    view_fwd = -big.view_matrix(posed.dtype, device)[2, :3]
    n = torch.where(((n * view_fwd).sum(-1, keepdim=True) > 0), -n, n)
    ndotl = (n * light).sum(-1)
    if style.softness > 0:
        lit = ((ndotl - style.threshold) / (2 * style.softness) + 0.5).clamp(0, 1)
        lit = lit * lit * (3 - 2 * lit)  # smoothstep
        if style.tones > 1:
            lit = torch.round(lit * (style.tones - 1)) / (style.tones - 1)
    else:
        lit = (ndotl > style.threshold).float()
    if mesh.outward_winding:
        # Seeing a face from behind means looking inside a shell: keep it in shadow.
        tri = posed[faces]
        fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        inside = (fn @ view_fwd > 0)[frags.face.clamp_min(0)]
        lit = torch.where(inside, 0.0, lit)
    face_idx = frags.face.clamp_min(0)
    base = mesh.face_colors.to(device)[face_idx]  # (H, W, 3)
    if mesh.textures and mesh.uv is not None and mesh.face_texture is not None:
        base = _textured(mesh, frags, faces, base)
    if style.saturation != 1.0 or style.value != 1.0:
        grey = base.mean(-1, keepdim=True)
        base = ((grey + (base - grey) * style.saturation) * style.value).clamp(0, 1)
    unlit = mesh.face_unlit.to(device)[face_idx]
    shade = torch.where(unlit | (lit >= 1), 1.0, style.shadow + (1 - style.shadow) * lit)[..., None]
    rgb = base * shade
    if style.rim > 0:
        # Fresnel-like: strongest where the surface turns away from the viewer, on the lit side.
        facing = (n * view_fwd).sum(-1).abs()
        rim = style.rim * (1 - facing).clamp(0, 1) ** 3 * (ndotl > -0.2).float() * (~unlit).float()
        rgb = rgb + (1 - rgb) * rim[..., None]
    alpha = m.float()

    if style.outline_px > 0:
        dist = interpolate(frags, faces, proj.w[:, None])[..., 0]
        size = float((posed.max(0).values - posed.min(0).values).max())
        ink = _outline_mask(m, dist, style.crease * size, width_px)
        ink_col = torch.tensor(style.outline_colour, device=device)
        rgb = torch.where(ink[..., None], ink_col, rgb)
        alpha = torch.maximum(alpha, ink.float())

    rgb = rgb * alpha[..., None]
    out = torch.cat([rgb, alpha[..., None]], dim=-1).permute(2, 0, 1)[None]  # (1, 4, H, W) premultiplied
    if ssaa > 1:
        out = F.avg_pool2d(out, ssaa)
    out = out[0].permute(1, 2, 0)
    a = out[..., 3:4]
    result[r0 // ssaa:r1 // ssaa, c0 // ssaa:c1 // ssaa] = torch.cat(
        [torch.where(a > 0, out[..., :3] / a.clamp_min(1e-6), 0.0), a], dim=-1).clamp(0, 1)
    return result


def _textured(mesh: SkinnedMesh, frags: Fragments, faces: Tensor, base: Tensor) -> Tensor:
    """Replace the flat colour of textured faces by their texture (nearest texel, wrapping) times the tint."""
    device = base.device
    uv = interpolate(frags, faces, mesh.uv.to(device).float())  # (H, W, 2)
    tex_id = torch.where(frags.mask, mesh.face_texture.to(device)[frags.face.clamp_min(0)], -1)
    base = base.clone()
    for k in torch.unique(tex_id[tex_id >= 0]).tolist():
        sel = tex_id == k
        img = mesh.textures[k].to(device)
        h, w = img.shape[:2]
        u = uv[sel] % 1.0
        x = (u[:, 0] * w).long().clamp(0, w - 1)
        y = (u[:, 1] * h).long().clamp(0, h - 1)
        tint = mesh.face_tint.to(device)[frags.face[sel]]
        base[sel] = img[y, x, :3].float() / 255.0 * tint
    return base


def _outline_mask(mask: Tensor, dist: Tensor, crease: float, width: int) -> Tensor:
    """Ink pixels: just outside the silhouette, and on the far side of depth jumps inside it."""
    k = 2 * width + 1
    m = mask.float()[None, None]
    grown = F.max_pool2d(m, k, stride=1, padding=width)[0, 0] > 0
    silhouette = grown & ~mask
    # A pixel is on a crease if some neighbour is nearer by more than `crease`.
    d = torch.where(mask, dist, torch.full_like(dist, float("inf")))
    nearest = -F.max_pool2d(-d[None, None], k, stride=1, padding=width)[0, 0]
    creases = mask & (d - nearest > crease)
    return silhouette | creases


def to_uint8(rgba: Tensor) -> np.ndarray:
    return (rgba.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
