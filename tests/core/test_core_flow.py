"""Flow matching path and Euler solver (arfm.flow) on analytic cases."""

import pytest
import torch

from arfm import flow


def test_interpolate_and_target_match_eq1():
    x1 = torch.tensor([[3.0, -1.0]])
    eps = torch.tensor([[1.0, 1.0]])
    t = torch.tensor([0.25])
    # x_t = t x1 + (1 - t) eps = 0.25 * (3, -1) + 0.75 * (1, 1) = (1.5, 0.5)
    assert torch.allclose(flow.interpolate(x1, eps, t), torch.tensor([[1.5, 0.5]]))
    assert torch.allclose(flow.target_velocity(x1, eps), torch.tensor([[2.0, -2.0]]))


@pytest.mark.parametrize("steps", [1, 4, 16])
def test_euler_lands_exactly_on_target_of_conditional_field(steps):
    # The conditional OT field towards a fixed x1 is (x1 - x) / (1 - t); Euler on it is exact.
    target = torch.tensor([[2.0, -3.0], [0.5, 7.0]])
    x0 = torch.randn(2, 2)
    out = flow.euler_sample(lambda x, t: (target - x) / (1 - t[:, None]), x0, steps)
    assert torch.allclose(out, target, atol=1e-5)


def test_euler_runs_exactly_k_steps_and_ends_at_one():
    seen = []

    def velocity(x, t):
        seen.append(float(t[0]))
        return torch.ones_like(x)

    out = flow.euler_sample(velocity, torch.zeros(1, 2), 16)
    assert len(seen) == 16
    assert seen == pytest.approx([i / 16 for i in range(16)])
    # a constant unit velocity integrated over [0, 1] moves by exactly 1: the last step reaches t = 1
    assert torch.allclose(out, torch.ones(1, 2))


def test_euler_from_intermediate_time_covers_the_rest():
    seen = []

    def velocity(x, t):
        seen.append(float(t[0]))
        return torch.ones_like(x)

    out = flow.euler_sample(velocity, torch.zeros(1, 2), 4, t_start=0.8)
    assert seen == pytest.approx([0.8, 0.85, 0.9, 0.95])
    assert torch.allclose(out, torch.full((1, 2), 0.2))


def test_renoise_at_one_keeps_estimate():
    x = torch.randn(3, 2)
    assert torch.equal(flow.renoise(x, 1.0), x)


def test_euler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        flow.euler_sample(lambda x, t: x, torch.zeros(1, 2), 0)
    with pytest.raises(ValueError, match="t_start"):
        flow.euler_sample(lambda x, t: x, torch.zeros(1, 2), 2, t_start=1.5)
