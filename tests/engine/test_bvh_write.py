"""`save_bvh` and `matrix_to_euler`: what the writer saves, `load_bvh` and `conr poses` read back exactly."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from conr.cli import main
from conr.engine.formats.bvh import load_bvh, save_bvh
from conr.engine.procedural import HUMANOID_BONES, humanoid_skeleton
from conr.engine.retarget import match_humanoid
from conr.engine.skeleton import Skeleton
from conr.engine.transforms import axis_angle_to_matrix, compose, euler_to_matrix, matrix_to_euler

from .test_formats import BVH_NAMES
from .writers import mesh_to_glb

ORDERS = ["".join(p) for p in itertools.permutations("XYZ")]


def random_rotations(shape: tuple[int, ...], max_angle: float, seed: int) -> torch.Tensor:
    """(*shape, 3, 3) rotations about random axes by up to `max_angle` radians."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(*shape, 3, generator=g, dtype=torch.float64), dim=-1)
    return axis_angle_to_matrix(axis * torch.rand(*shape, 1, generator=g, dtype=torch.float64) * max_angle)


@pytest.mark.parametrize("order", ORDERS)
def test_matrix_to_euler_inverts_euler_to_matrix(order: str) -> None:
    rot = random_rotations((500,), math.pi, seed=1)
    angles = matrix_to_euler(rot, order)
    assert torch.allclose(euler_to_matrix(angles, order), rot, atol=1e-12)
    assert angles[:, 1].abs().max() <= math.pi / 2 + 1e-12  # the middle angle in [-90, 90] degrees
    # Angles inside that range come back as given.
    g = torch.Generator().manual_seed(2)
    given = (torch.rand(200, 3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor([3.0, 1.5, 3.0], dtype=torch.float64)
    assert torch.allclose(matrix_to_euler(euler_to_matrix(given, order), order), given, atol=1e-9)


@pytest.mark.parametrize("order", ORDERS)
def test_matrix_to_euler_at_and_near_gimbal_lock(order: str) -> None:
    g = torch.Generator().manual_seed(3)
    angles = torch.rand(200, 3, generator=g, dtype=torch.float64) * 6 - 3
    for middle in (math.pi / 2, -math.pi / 2, math.pi / 2 - 1e-7, -math.pi / 2 + 1e-9):
        angles[:, 1] = middle
        rot = euler_to_matrix(angles, order)
        back = matrix_to_euler(rot, order)
        assert torch.isfinite(back).all()
        assert torch.allclose(euler_to_matrix(back, order), rot, atol=1e-12)
        f32 = rot.float()
        assert torch.allclose(euler_to_matrix(matrix_to_euler(f32, order), order), f32, atol=1e-6)
    # Exactly locked: one solution, with the last angle zero.
    angles[:, 1] = math.pi / 2
    assert matrix_to_euler(euler_to_matrix(angles, order), order)[:, 2].abs().max() < 1e-12


def test_matrix_to_euler_rejects_bad_order() -> None:
    with pytest.raises(ValueError, match="permutation"):
        matrix_to_euler(torch.eye(3), "XXY")


def bvh_positions(path: Path) -> torch.Tensor:
    return load_bvh(path).global_transforms()[..., :3, 3]


def test_humanoid_round_trip_in_centimetres(tmp_path) -> None:
    skel, _ = humanoid_skeleton(1.0)
    rot = random_rotations((5, skel.num_joints), 1.2, seed=4)
    root = torch.tensor([[0.1 * t, -0.02 * t, 0.3 - 0.05 * t] for t in range(5)], dtype=torch.float64)
    # BVH_NAMES lists the same joints in HUMANOID_BONES order (Spine1 = chest, LeftArm = leftUpperArm, ...).
    path = tmp_path / "motion.bvh"
    save_bvh(path, skel, rot, root, fps=24, names=BVH_NAMES, scale=100)
    bvh = load_bvh(path)
    assert abs(bvh.fps - 24) < 1e-4 and bvh.num_frames == 5
    assert bvh.skeleton.names == BVH_NAMES  # HUMANOID_BONES is already depth-first
    assert bvh.channels[0][:3] == ["xposition", "yposition", "zposition"]
    assert bvh.channels[1] == ["zrotation", "xrotation", "yrotation"]
    expected = skel.forward(rot.float(), root.float())[..., :3, 3].double() * 100
    assert (bvh.global_transforms()[..., :3, 3] - expected).abs().max() < 1e-3
    bones = match_humanoid(bvh.skeleton.names)
    assert bones == {b: i for i, b in enumerate(HUMANOID_BONES)}


@pytest.mark.parametrize("order", ORDERS)
def test_every_channel_order_round_trips(tmp_path, order: str) -> None:
    skel, _ = humanoid_skeleton(1.0)
    rot = random_rotations((3, skel.num_joints), 3.0, seed=5)  # large angles: wraps and near-locks
    root = torch.zeros(3, 3, dtype=torch.float64)
    path = tmp_path / f"{order}.bvh"
    save_bvh(path, skel, rot, root, fps=30, order=order)
    assert load_bvh(path).channels[0][3:] == [f"{a.lower()}rotation" for a in order]
    expected = skel.forward(rot, root)[..., :3, 3]
    assert (bvh_positions(path) - expected).abs().max() < 1e-5


def rotated_rest_skeleton() -> Skeleton:
    """A chain with a branch whose rest transforms carry rotations, as glTF skeletons do."""
    names = ["root", "a", "b", "c", "d"]
    parents = [-1, 0, 1, 2, 1]
    rest_rot = random_rotations((5,), 2.0, seed=6)
    offsets = torch.tensor([[0.1, 0.9, -0.2], [0.0, 0.3, 0.0], [0.2, 0.1, 0.0], [0.0, 0.0, 0.25], [-0.1, 0.2, 0.05]],
                           dtype=torch.float64)
    return Skeleton(names, parents, compose(rest_rot, offsets).float())


def test_rest_rotations_are_baked_into_the_channels(tmp_path) -> None:
    skel = rotated_rest_skeleton()
    rot = random_rotations((4, 5), 1.0, seed=7)
    root = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, 0.2, 0.0], [0.0, -0.1, 0.3]], dtype=torch.float64)
    path = tmp_path / "rotated.bvh"
    save_bvh(path, skel, rot, root, fps=60, scale=2.0)
    expected = skel.forward(rot.float(), root.float())[..., :3, 3].double() * 2
    assert (bvh_positions(path) - expected).abs().max() < 1e-5
    # The identity pose comes back too: BVH's zero channels would not be it here.
    save_bvh(path, skel, skel.identity_pose(1), torch.zeros(1, 3), fps=60)
    assert (bvh_positions(path)[0] - skel.rest_positions().double()).abs().max() < 1e-5


def test_parents_first_but_not_depth_first_is_nested_correctly(tmp_path) -> None:
    names = ["root", "A", "B", "A1", "B1"]
    parents = [-1, 0, 0, 1, 2]
    offsets = torch.tensor([[0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32)
    skel = Skeleton.from_offsets(names, parents, offsets)
    rot = random_rotations((2, 5), 1.0, seed=8).float()
    root = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    path = tmp_path / "branches.bvh"
    save_bvh(path, skel, rot, root, fps=30, end_sites={"A1": [0, 0, 0.5]})
    text = path.read_text()
    assert [ln.split()[-1] for ln in text.splitlines() if ln.strip().startswith(("ROOT", "JOINT"))] == \
        ["root", "A", "A1", "B", "B1"]
    assert "OFFSET 0.000000 0.000000 0.500000" in text  # A1's given end site
    assert "OFFSET 0.000000 0.000000 -0.100000" in text  # B1's default: its bone continued by a tenth
    bvh = load_bvh(path)
    assert bvh.skeleton.parents == [-1, 0, 1, 0, 3]
    back = bvh.global_transforms()[..., :3, 3]
    expected = skel.forward(rot, root)[..., :3, 3].double()
    file_order = [names.index(n) for n in bvh.skeleton.names]
    assert (back - expected[:, file_order]).abs().max() < 1e-5


def test_bad_arguments_are_value_errors(tmp_path) -> None:
    skel, _ = humanoid_skeleton(1.0)
    rot, root = skel.identity_pose(2), torch.zeros(2, 3)
    path = tmp_path / "bad.bvh"
    with pytest.raises(ValueError, match="rotations"):
        save_bvh(path, skel, rot[:, :5], root, fps=30)
    with pytest.raises(ValueError, match="root_translation"):
        save_bvh(path, skel, rot, torch.zeros(3), fps=30)
    with pytest.raises(ValueError, match="fps"):
        save_bvh(path, skel, rot, root, fps=0)
    with pytest.raises(ValueError, match="names"):
        save_bvh(path, skel, rot, root, fps=30, names=BVH_NAMES[:-1])
    with pytest.raises(ValueError, match="whitespace"):
        save_bvh(path, skel, rot, root, fps=30, names=["Left Arm"] + BVH_NAMES[1:])
    with pytest.raises(ValueError, match="order"):
        save_bvh(path, skel, rot, root, fps=30, order="XYX")
    two_roots = Skeleton.from_offsets(["a", "b"], [-1, -1], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="ROOT"):
        save_bvh(path, two_roots, two_roots.identity_pose(1), torch.zeros(1, 3), fps=30)
    assert not path.exists()


def test_poses_reads_the_written_file(girl, tmp_path) -> None:
    glb = tmp_path / "girl.glb"
    mesh_to_glb(girl, glb)
    skel, _ = humanoid_skeleton(1.0)
    rot = random_rotations((4, skel.num_joints), 0.5, seed=9)
    root = torch.zeros(4, 3)
    motion = tmp_path / "motion.bvh"
    save_bvh(motion, skel, rot, root, fps=30, names=BVH_NAMES, scale=100)
    out = tmp_path / "poses"
    assert main(["poses", str(glb), str(motion), "-o", str(out), "--size", "32", "--frames", "0:2"]) == 0
    assert len(list(out.glob("*.npz"))) == 2
