"""Exact-answer tests of the camera, rasteriser, FK, skinning and UDP frames."""

from __future__ import annotations

import math

import pytest
import torch

from conr.engine.camera import Camera, fit_camera
from conr.engine.rasterizer import interpolate, rasterize
from conr.engine.renderer import rasterize_mesh, render_udp
from conr.engine.skeleton import Skeleton
from conr.engine.skinning import SkinnedMesh
from conr.engine.transforms import axis_rotation, euler_to_matrix, matrix_to_quat, quat_to_matrix
from conr.engine.udp import UDPNormalizer


def ortho_front(size: int = 8, height: float = 2.0) -> Camera:
    # World x in [-1, 1] maps to pixels [0, size]; world y = 1 is the top row.
    return Camera((0.0, 0.0, 5.0), (0.0, 0.0, 0.0), size, size, "orthographic", ortho_height=height, near=1.0, far=10.0)


def cube(half: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    # Counter-clockwise seen from outside.
    f = torch.tensor([
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # -x, +x
        [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # -y, +y
        [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],  # -z, +z
    ])
    return v, f


def rigid_mesh(vertices: torch.Tensor, faces: torch.Tensor) -> SkinnedMesh:
    skel = Skeleton.from_offsets(["root"], [-1], torch.zeros(1, 3))
    n = vertices.shape[0]
    return SkinnedMesh(vertices, faces, torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1), skel,
                       torch.ones(faces.shape[0], 3))


def test_single_triangle_covers_known_pixels_with_known_coordinates() -> None:
    cam = ortho_front()
    tri = torch.tensor([[-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]])
    faces = torch.tensor([[0, 1, 2]])
    frags = rasterize_mesh(tri, faces, cam)
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    # Pixel centres strictly above the diagonal x + y = 8; the diagonal itself is a right edge.
    assert torch.equal(frags.mask, rows + cols < 7)
    pos = interpolate(frags, faces, tri)
    expect = torch.stack([-1 + (cols + 0.5) / 4, 1 - (rows + 0.5) / 4, torch.zeros(8, 8)], -1)
    m = frags.mask
    assert torch.allclose(pos[m], expect[m], atol=1e-6)


def test_shared_edge_pixels_belong_to_exactly_one_triangle() -> None:
    # A quad split along its diagonal, which passes through pixel centres.
    xy = torch.tensor([[1.0, 1.0], [7.0, 1.0], [7.0, 7.0], [1.0, 7.0]])
    ones = torch.ones(4)
    a = rasterize(xy, ones * 0.5, ones, torch.tensor([[0, 1, 2]]), 8, 8).mask
    b = rasterize(xy, ones * 0.5, ones, torch.tensor([[0, 2, 3]]), 8, 8).mask
    assert not (a & b).any()
    assert int((a | b).sum()) == 36


def test_cube_front_face_hides_back_face_orthographic() -> None:
    v, f = cube()
    cam = ortho_front()
    frags = rasterize_mesh(v, f, cam)
    # The cube spans x, y in [-0.5, 0.5]: pixel columns and rows 2..5.
    expect = torch.zeros(8, 8, dtype=torch.bool)
    expect[2:6, 2:6] = True
    assert torch.equal(frags.mask, expect)
    pos = interpolate(frags, f, v)
    assert torch.allclose(pos[frags.mask][:, 2], torch.full((16,), 0.5))


@pytest.mark.parametrize("reverse", [False, True])
def test_nearer_triangle_wins_whatever_the_order(reverse: bool) -> None:
    quad = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    near = torch.cat([quad, torch.full((4, 1), 0.5)], 1)
    far = torch.cat([quad * 0.5, torch.full((4, 1), -0.5)], 1)
    v = torch.cat([near, far])
    f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    if reverse:
        f = f.flip(0)
    frags = rasterize_mesh(v, f, ortho_front(16, 3.0))
    z = interpolate(frags, f, v)[..., 2]
    assert torch.allclose(z[frags.mask], torch.tensor(0.5), atol=1e-6)


def test_rotated_cube_shows_only_faces_turned_to_the_camera() -> None:
    v, f = cube()
    rot = axis_rotation("Y", torch.tensor(0.6)) @ axis_rotation("X", torch.tensor(0.4))
    v = v @ rot.T
    cam = Camera((0.0, 0.0, 4.0), (0.0, 0.0, 0.0), 64, 64, fov_y=40.0, near=0.5, far=20.0)
    frags = rasterize_mesh(v, f, cam)
    assert frags.mask.sum() > 300
    tri = v[f[frags.face[frags.mask]]]  # (M, 3, 3)
    normal = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    pos = interpolate(frags, f, v)[frags.mask]
    to_eye = torch.tensor(cam.eye) - pos
    assert torch.all((normal * to_eye).sum(-1) > 0)


def test_perspective_interpolation_puts_each_point_on_its_pixel_ray() -> None:
    # A plane strongly tilted in depth: affine interpolation would be visibly wrong here.
    v = torch.tensor([[-1.0, -1.0, 1.5], [1.0, -1.0, -3.0], [1.0, 1.0, -3.0], [-1.0, 1.0, 1.5]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cam = Camera((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), 48, 32, fov_y=60.0, near=0.1, far=20.0)
    frags = rasterize_mesh(v, f, cam)
    pos = interpolate(frags, f, v)
    rows, cols = torch.nonzero(frags.mask, as_tuple=True)
    xy = cam.project(pos[rows, cols]).xy
    centres = torch.stack([cols + 0.5, rows + 0.5], -1).float()
    assert rows.numel() > 200
    assert torch.allclose(xy, centres, atol=2e-3)


def test_projection_of_known_points() -> None:
    cam = Camera((0.0, 0.0, 10.0), (0.0, 0.0, 0.0), 100, 50, fov_y=90.0, near=1.0, far=20.0)
    # fov 90: at distance d the image spans y in [-d, d] and x in [-2d, 2d] (aspect 2).
    p = cam.project(torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 9.0], [0.0, 0.0, 9.0]]))
    assert torch.allclose(p.xy, torch.tensor([[50.0, 25.0], [100.0, 0.0], [50.0, 25.0]]), atol=1e-4)
    assert p.depth[2] < p.depth[0]


def test_chunked_rasterisation_matches_one_pass() -> None:
    v, f = cube()
    v = v @ axis_rotation("Y", torch.tensor(0.3)).T
    cam = Camera((0.0, 0.5, 3.0), (0.0, 0.0, 0.0), 40, 40, fov_y=45.0, near=0.5, far=10.0)
    p = cam.project(v)
    one = rasterize(p.xy, p.depth, p.w, f, 40, 40)
    many = rasterize(p.xy, p.depth, p.w, f, 40, 40, max_candidates=50)
    assert torch.equal(one.face, many.face)


def test_rest_pose_udp_unprojects_to_mesh_vertices() -> None:
    # A grid whose vertices sit exactly on pixel centres of an orthographic view.
    n = 5
    xs = (torch.arange(n) + 2.5) / 8 - 1  # pixel columns 2..6 of a 16-px image spanning [-1, 1]
    gx, gy = torch.meshgrid(xs, -xs, indexing="xy")
    v = torch.stack([gx, gy, 0.1 * gx * gy], -1).reshape(-1, 3)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            faces += [[i, i + n, i + 1], [i + 1, i + n, i + n + 1]]
    f = torch.tensor(faces)
    mesh = rigid_mesh(v, f)
    norm = UDPNormalizer.from_vertices(v)
    cam = ortho_front(16)
    udp = render_udp(mesh, v, cam, norm)
    # Every vertex lands on a pixel centre; decoding that pixel's UDP returns the vertex.
    xy = cam.project(v).xy
    cols, rows = (xy[:, 0] - 0.5).round().long(), (xy[:, 1] - 0.5).round().long()
    got = norm.decode(udp[rows, cols, :3].double()).float()
    vis = udp[rows, cols, 3] == 1
    assert vis.sum() >= 16  # interior vertices are covered whatever the fill rule says about edges
    assert torch.allclose(got[vis], v[vis], atol=1e-5)
    # Off-surface pixels are zero in all four channels; covered ones stay in [0, 1].
    assert torch.all(udp[udp[..., 3] == 0] == 0)
    assert udp.min() >= 0 and udp.max() <= 1


def test_normaliser_rule() -> None:
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    norm = UDPNormalizer.from_vertices(v)
    assert norm.extent == 2.0
    assert torch.allclose(norm.encode(v), torch.tensor([[0.25, 0.0, 0.375], [0.75, 1.0, 0.625]]))
    assert torch.allclose(norm.decode(norm.encode(v)), v)


def two_bone_arm() -> Skeleton:
    return Skeleton.from_offsets(["shoulder", "elbow"], [-1, 0], torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_fk_and_skinning_rotate_child_vertices_by_ninety_degrees() -> None:
    skel = two_bone_arm()
    v = torch.tensor([[0.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.5, 1.0, 0.0]])
    mesh = SkinnedMesh(v, torch.tensor([[0, 1, 2]]), torch.tensor([[0], [1], [1]]), torch.ones(3, 1), skel,
                       torch.ones(1, 3))
    rot = skel.identity_pose()
    rot[1] = axis_rotation("Z", torch.tensor(math.pi / 2))
    posed = mesh.pose(skel.forward(rot))
    # The elbow stays at (0, 1, 0); points above it swing to -x, points beside it swing up.
    expect = torch.tensor([[0.0, 0.5, 0.0], [-1.0, 1.0, 0.0], [0.0, 1.5, 0.0]])
    assert torch.allclose(posed, expect, atol=1e-6)


def test_half_weights_blend_linearly() -> None:
    skel = two_bone_arm()
    v = torch.tensor([[0.0, 2.0, 0.0]])
    rot = skel.identity_pose()
    rot[1] = axis_rotation("Z", torch.tensor(math.pi / 2))
    posed = SkinnedMesh(v, torch.zeros(0, 3, dtype=torch.long), torch.tensor([[0, 1]]), torch.tensor([[0.5, 0.5]]),
                        skel, torch.zeros(0, 3)).pose(skel.forward(rot))
    assert torch.allclose(posed, torch.tensor([[-0.5, 1.5, 0.0]]), atol=1e-6)


def test_rotated_bone_moves_rendered_pixels_where_expected() -> None:
    skel = two_bone_arm()
    # A small triangle around (0, 2) bound to the elbow.
    v = torch.tensor([[-0.1, 1.9, 0.0], [0.1, 1.9, 0.0], [0.0, 2.1, 0.0]])
    mesh = SkinnedMesh(v, torch.tensor([[0, 1, 2]]), torch.ones(3, 1, dtype=torch.long), torch.ones(3, 1), skel,
                       torch.ones(1, 3))
    cam = Camera((0.0, 1.0, 5.0), (0.0, 1.0, 0.0), 32, 32, "orthographic", ortho_height=4.0, near=1.0, far=10.0)
    norm = UDPNormalizer.from_vertices(v)
    rot = skel.identity_pose()
    rot[1] = axis_rotation("Z", torch.tensor(math.pi / 2))
    udp = render_udp(mesh, mesh.pose(skel.forward(rot)), cam, norm)
    # The triangle now sits around world (-1, 1): pixel column 8, row 16.
    rows, cols = torch.nonzero(udp[..., 3] > 0, as_tuple=True)
    assert abs(cols.float().mean().item() - 8) < 1.0 and abs(rows.float().mean().item() - 16) < 1.0
    # Its pixels still carry rest-pose coordinates (y near 2 in the rest pose).
    rest = norm.decode(udp[rows, cols, :3])
    assert torch.all((rest[:, 1] - 2.0).abs() < 0.11)


def test_rotation_conversions_round_trip() -> None:
    angles = torch.tensor([[0.3, -1.2, 2.0], [3.0, 0.1, -0.4]])
    m = euler_to_matrix(angles, "ZXY")
    assert torch.allclose(m, axis_rotation("Z", angles[:, 0]) @ axis_rotation("X", angles[:, 1]) @ axis_rotation("Y", angles[:, 2]))
    assert torch.allclose(quat_to_matrix(matrix_to_quat(m)), m, atol=1e-5)


def test_fit_camera_keeps_points_inside_the_frame() -> None:
    v, _ = cube()
    pts = v * torch.tensor([0.5, 2.0, 0.3]) + torch.tensor([3.0, 1.0, -2.0])
    for proj in ("perspective", "orthographic"):
        cam = fit_camera(pts, 64, 48, direction=(0.3, 0.2, 1.0), projection=proj)
        xy = cam.project(pts).xy
        assert xy.min() > 0 and xy[:, 0].max() < 64 and xy[:, 1].max() < 48


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    v, f = cube()
    v = v @ axis_rotation("Y", torch.tensor(0.5)).T
    cam = Camera((0.0, 0.3, 3.0), (0.0, 0.0, 0.0), 64, 64, fov_y=45.0, near=0.5, far=10.0)
    a = rasterize_mesh(v, f, cam)
    b = rasterize_mesh(v.cuda(), f.cuda(), cam)
    assert torch.equal(a.face, b.face.cpu())


def test_backface_culling_keeps_closed_meshes_and_drops_faces_seen_from_behind() -> None:
    v, f = cube()
    cam = ortho_front()
    assert torch.equal(rasterize_mesh(v, f, cam, cull_backfaces=True).face, rasterize_mesh(v, f, cam).face)
    tri = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]])  # counter-clockwise from +z
    assert rasterize_mesh(tri, torch.tensor([[0, 1, 2]]), cam, cull_backfaces=True).mask.any()
    assert not rasterize_mesh(tri, torch.tensor([[0, 2, 1]]), cam, cull_backfaces=True).mask.any()
