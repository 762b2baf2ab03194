"""Loss terms with exact answers."""

from __future__ import annotations

import math

import torch

from conr.training.losses import _visibility_loss, flow_loss, line_loss, right_loss


def test_visibility_loss_is_bce_inside_and_stops_pushing_past_the_clamp():
    p = torch.tensor([0.25, 1.3, -0.2, 1.3, -0.2], requires_grad=True)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    loss = _visibility_loss(p, target)
    loss.sum().backward()
    assert math.isclose(loss[0].item(), -math.log(0.25), rel_tol=1e-6)
    assert math.isclose(float(p.grad[0]), -1 / 0.25, rel_tol=1e-5)
    # Past the clamp on the right side: nothing more to learn (the old straight-through BCE pushed on).
    assert float(p.grad[1]) == 0.0 and float(p.grad[2]) == 0.0
    # Past it on the wrong side: pulled back.
    assert float(p.grad[3]) > 0 and float(p.grad[4]) < 0


def test_flow_loss_cap_bounds_each_pixels_error():
    truth = torch.zeros(1, 1, 3, 4, 4)
    truth[:, :, 2] = 1  # valid everywhere, true flow 0
    flow = torch.full((1, 1, 2, 4, 4), 50.0)  # 100 px of L1 error per pixel
    assert math.isclose(float(flow_loss([flow], truth)), 100.0, rel_tol=1e-5)  # over (count + eps)
    assert math.isclose(float(flow_loss([flow], truth, cap=10.0)), 10.0, rel_tol=1e-5)


def _flat(rgb: tuple[float, float, float], alpha: float = 1.0) -> torch.Tensor:
    """(1, 4, 8, 8) premultiplied RGBA of one colour; the left half transparent."""
    out = torch.zeros(1, 4, 8, 8)
    out[:, :3, :, 4:] = torch.tensor(rgb).view(1, 3, 1, 1) * alpha
    out[:, 3, :, 4:] = alpha
    return out


def test_right_loss_counts_wrong_pixels_of_the_silhouette_and_refuses_a_blend():
    truth = _flat((0.8, 0.2, 0.2))
    assert float(right_loss(truth, truth)) == 0.0
    # Far off: every silhouette pixel counts as one wrong pixel; the transparent half counts for nothing.
    assert math.isclose(float(right_loss(_flat((0.0, 1.0, 1.0)), truth)), 1.0, abs_tol=1e-6)
    # A lit and a shadowed view's colour: L1 cannot tell picking one (right half the time) from their
    # blend (never right); this loss prefers picking.
    lit, shadow = _flat((0.8, 0.2, 0.2)), _flat((0.5, 0.1, 0.1))
    blend = (lit + shadow) / 2
    pick = float(right_loss(lit, truth) + right_loss(lit, shadow)) / 2
    mixed = float(right_loss(blend, truth) + right_loss(blend, shadow)) / 2
    l1_pick = float((lit - truth).abs().mean() + (lit - shadow).abs().mean()) / 2
    l1_mixed = float((blend - truth).abs().mean() + (blend - shadow).abs().mean()) / 2
    assert math.isclose(l1_pick, l1_mixed, rel_tol=1e-5)
    assert pick < 0.6 * mixed


def test_line_loss_wants_the_manifests_outline_and_says_nothing_where_the_data_does_not():
    width = torch.full((1, 9), 1e-6)
    width[0, 3] = 1.0  # 1.5 px
    colour = torch.tensor([[0.1, 0.1, 0.2]])
    right = line_loss(width, colour, torch.tensor([[1.45, 0.1, 0.1, 0.2]]))  # rounds to 1.5 px
    assert float(right) < 1e-4
    assert float(line_loss(width, colour, torch.tensor([[0.5, 0.1, 0.1, 0.2]]))) > 10  # another width
    assert float(line_loss(width, colour, torch.tensor([[1.5, 0.9, 0.1, 0.2]]))) > 0.25  # another colour
    none = torch.full((1, 9), 1e-6)
    none[0, 0] = 1.0
    assert float(line_loss(none, colour, torch.tensor([[0.0, 0.0, 0.0, 0.0]]))) < 1e-4  # no line: no colour
    assert float(line_loss(none, colour, torch.tensor([[0.1, 0.0, 0.0, 0.0]]))) > 10  # a thin line is a line
    assert float(line_loss(width, colour, torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))) == 0.0  # not known


def test_every_loss_term_has_its_conr_train_option(capsys):
    """The CLI keeps its own list of loss names (it does not import torch to print help): none is missing."""
    from conr.cli import main
    from conr.training.losses import LossWeights

    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    for name in LossWeights.names():
        assert f"--loss-{name.replace('_', '-')}" in help_text, name
