"""Losses: exact hand-computed values for the interval cost, the pitch losses, CE and MSE with pressure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lstmidi.losses import (
    INTERVAL_COST_TABLE,
    OCTAVE_COST,
    combine_fields,
    expected_interval_cost,
    interval_cost,
    squared_error_with_pressure,
    token_ce,
    token_nll,
    weighted_mean,
)


def cost(d: float) -> float:
    return interval_cost(torch.tensor([float(d)], dtype=torch.float64)).item()


def octave_term(d: float) -> float:
    return OCTAVE_COST * abs(d) / 12


def test_interval_cost_table_values():
    assert cost(0) == 0.0
    assert cost(12) == pytest.approx(0.05)
    assert cost(12) < cost(7)
    assert cost(7) == pytest.approx(0.2 + 0.05 * 7 / 12)
    assert cost(5) == pytest.approx(0.2 + 0.05 * 5 / 12)
    assert max(cost(7), cost(5)) < cost(4) < cost(1)
    assert cost(3) == pytest.approx(0.5 + 0.05 * 3 / 12)
    for d in (1, 2, 6, 10, 11):  # the expensive class
        assert cost(d) == pytest.approx(1.0 + octave_term(d))
    for d in range(12):
        assert cost(d) == pytest.approx(INTERVAL_COST_TABLE[d] + octave_term(d))
    assert max(INTERVAL_COST_TABLE) == INTERVAL_COST_TABLE[1] == INTERVAL_COST_TABLE[6] == INTERVAL_COST_TABLE[11]


def test_interval_cost_periodic_with_octave_term():
    for d in [x / 4 for x in range(0, 48)]:  # integers and fractions in [0, 12)
        assert cost(d + 12) - cost(d) == pytest.approx(OCTAVE_COST)
    assert cost(-5) == pytest.approx(cost(7) - octave_term(7) + octave_term(-5))  # a fourth down = a fifth up
    assert cost(-5) == pytest.approx(0.2 + 0.05 * 5 / 12)
    assert cost(-12) == pytest.approx(cost(12))
    assert cost(-1) == pytest.approx(1.0 + 0.05 / 12)


def test_interval_cost_interpolates_and_is_continuous():
    assert cost(6.5) == pytest.approx((1.0 + 0.2) / 2 + 0.05 * 6.5 / 12)
    assert cost(11.5) == pytest.approx(0.5 + 0.05 * 11.5 / 12)  # wraps 11 -> 12 ≡ 0
    assert cost(12 - 1e-9) == pytest.approx(cost(12), abs=1e-6)
    assert cost(-1e-9) == pytest.approx(0.0, abs=1e-6)
    assert interval_cost(torch.tensor([-1e-8, 12.0])).tolist() == pytest.approx([0.0, 0.05], abs=1e-6)  # float32 wrap
    ints = interval_cost(torch.arange(-30, 31))  # int input is accepted
    assert ints.dtype == torch.float32 and ints.shape == (61,)


def test_interval_cost_gradient():
    d = torch.tensor([6.5, 3.25, -2.5], requires_grad=True)
    interval_cost(d).sum().backward()
    # slopes: 6..7: 0.2 - 1.0; 3..4: 0.5 - 0.5; -2.5 ≡ 9.5, 9..10: 1.0 - 0.5, and |d| slope -1/12 * 0.05
    expected = torch.tensor([-0.8 + 0.05 / 12, 0.05 / 12, 0.5 - 0.05 / 12])
    assert torch.allclose(d.grad, expected, atol=1e-6)


def test_weighted_mean_of_the_interval_cost_of_a_regressed_pitch():
    target = torch.tensor([[60.0, 60.0, 60.0, 60.0]])
    pred = torch.tensor([[60.0, 67.0, 66.5, 40.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, weight = weighted_mean(interval_cost(pred - target), mask, None)
    assert weight.item() == 3
    assert loss.item() == pytest.approx((0 + cost(7) + cost(6.5)) / 3, rel=1e-6)
    weights = torch.tensor([0.0, 1.0, 2.0, 1.0])
    loss, weight = weighted_mean(interval_cost(pred - target), mask, weights)
    assert weight.item() == 3
    assert loss.item() == pytest.approx((cost(7) + 2 * cost(6.5)) / 3, rel=1e-6)


def test_weighted_mean_of_stacked_losses_is_each_ones_mean_and_ignores_nan_at_padding():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 5, generator=g), torch.rand(2, 5, generator=g)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    a[0, 4] = float("nan")  # at a padded step
    b[0, 3] = float("inf")
    weights = torch.tensor([0.5, 1.0, 1.0, 1.0, 2.0])
    means, weight = weighted_mean(torch.stack([a, b]), mask, weights)
    assert means.shape == (2,) and weight.item() == pytest.approx(0.5 + 1 + 1 + 0.5 + 1 + 1 + 1 + 2)
    for mean, one in zip(means, (a, b)):
        real = torch.where(mask > 0, one, 0.0)
        assert mean.item() == pytest.approx(float((real * mask * weights).sum() / weight), rel=1e-6)
        assert mean.item() == pytest.approx(weighted_mean(one, mask, weights)[0].item(), rel=1e-6)


def test_music_pitch_loss_expected_two_hot():
    logits = torch.full((1, 2, 128), -1e9)
    logits[0, 0, 60] = logits[0, 0, 67] = 0.0  # p = 0.5 on the truth, 0.5 on the fifth above
    logits[0, 1, 50] = logits[0, 1, 45] = 0.0  # p = 0.5 on the truth, 0.5 on the fifth below
    target = torch.tensor([[60, 50]])
    mask = torch.tensor([[1.0, 0.0]])
    loss, weight = weighted_mean(expected_interval_cost(logits, target, mask), mask, None)
    assert weight.item() == 1
    assert loss.item() == pytest.approx(0.5 * cost(7), rel=1e-6)
    per_step = expected_interval_cost(logits, target, torch.ones(1, 2))
    assert per_step[0].tolist() == pytest.approx([0.5 * cost(7), 0.5 * cost(-5)], rel=1e-6)


def test_music_pitch_loss_expected_gradient_and_padding():
    logits = torch.randn(2, 3, 128, requires_grad=True)
    target = torch.tensor([[60, 62, -100], [0, 127, 64]])  # -100: padding at a masked step
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, _ = weighted_mean(expected_interval_cost(logits, target, mask), mask, None)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, :2].abs().sum() > 0
    assert logits.grad[0, 2].abs().sum() == 0  # masked step contributes nothing


def test_token_nll_matches_cross_entropy_and_ignores_masked():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    target = torch.randint(7, (2, 5))
    loss, weight = token_nll(logits, target, torch.ones(2, 5))
    assert weight.item() == 10
    assert loss.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 7), target.reshape(-1)).item(), rel=1e-6)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    changed_logits, changed_target = logits.clone(), target.clone()
    changed_logits[1, 3:] = 100 * torch.randn(2, 7)
    changed_target[1, 3:] = -100
    a, wa = token_nll(logits, target, mask)
    b, wb = token_nll(changed_logits, changed_target, mask)
    assert wa.item() == wb.item() == 8 and a.item() == pytest.approx(b.item())
    keep = mask.bool()
    assert a.item() == pytest.approx(F.cross_entropy(logits[keep], target[keep]).item(), rel=1e-6)
    per_step = token_ce(changed_logits, changed_target, mask)  # per step: the masked steps score class 0
    assert torch.allclose(per_step[keep], F.cross_entropy(logits[keep], target[keep], reduction="none"))
    assert torch.isfinite(per_step).all()


def test_token_nll_gradient_flows():
    logits = torch.randn(1, 3, 4, requires_grad=True)
    loss, _ = token_nll(logits, torch.tensor([[0, 1, 2]]), torch.ones(1, 3), torch.tensor([1.0, 0.5, 0.0]))
    loss.backward()
    assert logits.grad[0, :2].abs().sum() > 0 and logits.grad[0, 2].abs().sum() == 0


def test_squared_error_with_pressure_hand_values():
    pred = torch.tensor([[0.5, -0.25, 1.0]])
    target = torch.tensor([[0.25, 0.25, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # step 0: 0.0625; step 1: 0.25 + 10 * 0.25 = 2.75; step 2: 64
    assert squared_error_with_pressure(pred, target).tolist() == [[0.0625, 2.75, 64.0]]
    assert squared_error_with_pressure(pred, target, pressure=0.0).tolist() == [[0.0625, 0.25, 64.0]]
    p = pred.clone().requires_grad_()
    weighted_mean(squared_error_with_pressure(p, target), mask, None)[0].backward()
    # d/dp of step 1: (2 * (-0.5) - 10) / 2
    assert p.grad[0, 1].item() == pytest.approx(-5.5)


def test_combine_fields():
    losses = torch.tensor([1.0, 2.0, 4.0])
    fields = ["pitch", "velocity", "time"]
    assert combine_fields(fields, losses, {}).item() == pytest.approx(7.0)
    assert combine_fields(fields, losses, {"velocity": 0.2, "time": 0.2}).item() == pytest.approx(1.0 + 0.4 + 0.8)
    with pytest.raises(ValueError, match="unknown fields.*duration"):
        combine_fields(fields, losses, {"duration": 0.2})
    with pytest.raises(ValueError, match="no losses"):
        combine_fields([], torch.zeros(0), {})
