"""Pinhole (perspective) and orthographic cameras, and framing a character in the image.

World: right-handed, Y up, characters face +Z. The camera looks down its own -Z axis.
Pixel (row i, column j) has its centre at x = j + 0.5, y = i + 0.5; y grows downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Projected:
    xy: Tensor  # (..., N, 2) pixel coordinates
    depth: Tensor  # (..., N) in [0, 1] between near and far, linear in screen space; smaller is nearer
    w: Tensor  # (..., N) view-space distance for perspective-correct interpolation (1 for orthographic)


@dataclass
class Camera:
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    width: int
    height: int
    projection: str = "perspective"  # or "orthographic"
    fov_y: float = 30.0  # degrees, perspective only
    ortho_height: float = 2.0  # world units seen from top to bottom, orthographic only
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    near: float = 0.01
    far: float = 100.0

    def __post_init__(self) -> None:
        if self.projection not in ("perspective", "orthographic"):
            raise ValueError(f"projection must be 'perspective' or 'orthographic', got {self.projection!r}")

    def view_matrix(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
        """(4, 4) world-to-camera transform."""
        eye = torch.tensor(self.eye, dtype=torch.float64)
        fwd = torch.tensor(self.target, dtype=torch.float64) - eye
        fwd = fwd / fwd.norm()
        right = torch.linalg.cross(fwd, torch.tensor(self.up, dtype=torch.float64))
        if right.norm() < 1e-9:  # looking straight up or down: pick any right vector
            right = torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        right = right / right.norm()
        up = torch.linalg.cross(right, fwd)
        m = torch.eye(4, dtype=torch.float64)
        m[0, :3], m[1, :3], m[2, :3] = right, up, -fwd
        m[:3, 3] = -(m[:3, :3] @ eye)
        return m.to(dtype=dtype, device=device)

    def project(self, points: Tensor) -> Projected:
        """World (..., N, 3) points to pixels, screen-linear depth and w."""
        view = self.view_matrix(points.dtype, points.device)
        cam = points @ view[:3, :3].T + view[:3, 3]
        dist = -cam[..., 2]  # positive in front of the camera
        aspect = self.width / self.height
        if self.projection == "perspective":
            f = 1.0 / math.tan(math.radians(self.fov_y) / 2)
            inv = 1.0 / dist.clamp_min(1e-9)
            ndc_x, ndc_y = f / aspect * cam[..., 0] * inv, f * cam[..., 1] * inv
            # 1/dist is what varies linearly across a projected triangle.
            depth = (1 / self.near - inv) / (1 / self.near - 1 / self.far)
            depth = torch.where(dist > 0, depth, torch.full_like(depth, -1.0))
            w = dist
        else:
            half = self.ortho_height / 2
            ndc_x, ndc_y = cam[..., 0] / (half * aspect), cam[..., 1] / half
            depth = (dist - self.near) / (self.far - self.near)
            w = torch.ones_like(dist)
        xy = torch.stack([(ndc_x + 1) * 0.5 * self.width, (1 - ndc_y) * 0.5 * self.height], dim=-1)
        return Projected(xy, depth, w)

    def light_direction(self, elevation: float = 35.0, azimuth: float = -30.0) -> Tensor:
        """World direction towards a key light placed relative to the view (degrees up and to the left)."""
        view = self.view_matrix(torch.float64)
        el, az = math.radians(elevation), math.radians(azimuth)
        d_cam = torch.tensor([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)], dtype=torch.float64)
        return (view[:3, :3].T @ d_cam).float()


def view_direction(yaw_deg: float, pitch_deg: float = 0.0) -> tuple[float, float, float]:
    """Unit vector from the character towards the camera; yaw 0 is the front, 90 its left side."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    return (math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch))


def fit_camera(
    points: Tensor,
    width: int,
    height: int,
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0),
    projection: str = "perspective",
    fov_y: float = 25.0,
    margin: float = 0.08,
) -> Camera:
    """A camera looking along -direction that fits all (..., 3) points with `margin` on each side."""
    pts = points.detach().reshape(-1, 3).double().cpu()  # framing is a few scalars: do it on the CPU
    lo, hi = pts.min(0).values, pts.max(0).values
    centre = (lo + hi) / 2
    radius = float((pts - centre).norm(dim=-1).max().clamp_min(1e-6))
    d = torch.tensor(direction, dtype=torch.float64)
    d = d / d.norm()
    probe = Camera(tuple((centre + d * radius * 4).tolist()), tuple(centre.tolist()), width, height, "orthographic")
    view = probe.view_matrix(torch.float64)
    cam = pts @ view[:3, :3].T + view[:3, 3]
    cx = (cam[:, 0].min() + cam[:, 0].max()) / 2
    cy = (cam[:, 1].min() + cam[:, 1].max()) / 2
    # Re-centre on the projected box so the figure sits in the middle of the frame.
    shift = view[:3, :3].T @ torch.stack([cx, cy, torch.zeros((), dtype=torch.float64)])
    target = centre + shift
    half_w = float((cam[:, 0] - cx).abs().max())
    half_h = float((cam[:, 1] - cy).abs().max())
    aspect = width / height
    half = max(half_h, half_w / aspect) / (1 - 2 * margin)
    if projection == "orthographic":
        eye = target + d * (radius * 4)
        return Camera(tuple(eye.tolist()), tuple(target.tolist()), width, height, "orthographic",
                      ortho_height=2 * half, near=radius * 0.5, far=radius * 8)
    t = math.tan(math.radians(fov_y) / 2)
    # Distance such that the nearest points still fit (they are up to `radius` closer than the centre).
    dist = half / t + radius
    eye = target + d * dist
    return Camera(tuple(eye.tolist()), tuple(target.tolist()), width, height, "perspective",
                  fov_y=fov_y, near=max(dist - radius * 2, 1e-3), far=dist + radius * 2)
