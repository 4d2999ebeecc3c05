"""Flow matching, model-agnostic (paper §3.2, Eq. 1; horizon update §3.4).

The probability path is the straight line from noise to data::

    x_t = t * x1 + (1 - t) * eps,        t in [0, 1],  eps ~ N(0, I)
    target velocity u = x1 - eps

and sampling integrates ``dx/dt = v(x, t)`` with Euler steps. Nothing here knows about the
network: a velocity function ``v(x, t) -> (same shape as x)`` is all the solver needs.

Two entries of one solver:

- :func:`euler_sample` integrates from ``t = 0`` (pure noise) to exactly ``t = 1`` in ``K``
  steps. The official release evaluates its solver on ``linspace(t_start, 1, K + 1)[:-1]``
  and returns the state at the last grid time, i.e. ``K - 1`` steps that stop one step
  short of ``t = 1`` (at ``15/16`` with 16 steps); ``grid="official"`` reproduces it;
- :func:`renoise` + :func:`euler_sample` with ``t_start = t_e`` is the horizon update: the
  previous prediction is mixed with fresh noise to time ``t_e`` and re-integrated.
"""

from __future__ import annotations

from typing import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def interpolate(x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point on the path at time ``t`` (broadcast over the trailing dims of ``x1``)."""
    t = _expand_time(t, x1)
    return t * x1 + (1.0 - t) * noise


def target_velocity(x1: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity the network regresses: ``x1 - eps`` (constant along the straight path)."""
    return x1 - noise


def renoise(x1_estimate: torch.Tensor, t: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Move a previous estimate back to flow time ``t`` with fresh noise (``t = 1`` returns it unchanged)."""
    noise = torch.randn(x1_estimate.shape, generator=generator, device=x1_estimate.device, dtype=x1_estimate.dtype)
    return t * x1_estimate + (1.0 - t) * noise


def euler_sample(
    velocity: VelocityFn,
    x_start: torch.Tensor,
    num_steps: int,
    t_start: float = 0.0,
    t_end: float = 1.0,
    grid: str = "exact",
) -> torch.Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``t_start`` to exactly ``t_end`` in ``num_steps`` Euler steps.

    Args:
        velocity: ``v(x, t)`` with ``t`` a tensor of shape ``(x.shape[0],)``.
        x_start: state at ``t_start`` (noise when ``t_start == 0``).
        num_steps: Euler steps; the last one lands on ``t_end``.
        t_start, t_end: integration interval, ``0 <= t_start <= t_end <= 1``.
        grid: ``"exact"`` or ``"official"``: the release's grid, which drops the last
            point of the ``num_steps + 1`` grid, so ``num_steps - 1`` steps end one step short
            of ``t_end`` (module docstring).
    """
    if num_steps < 1:
        raise ValueError(f"euler_sample needs num_steps >= 1, got {num_steps}")
    if not 0.0 <= t_start <= t_end <= 1.0:
        raise ValueError(f"euler_sample needs 0 <= t_start <= t_end <= 1, got {t_start}, {t_end}")
    if grid not in ("exact", "official"):
        raise ValueError(f"euler_sample grid must be 'exact' or 'official', got {grid!r}")
    times = torch.linspace(t_start, t_end, num_steps + 1, device=x_start.device, dtype=x_start.dtype)
    if grid == "official":
        times = times[:-1]
    x = x_start
    for i in range(len(times) - 1):
        t = times[i].expand(x.shape[0])
        x = x + (times[i + 1] - times[i]) * velocity(x, t)
    return x


def _expand_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` of shape ``(B,)`` or ``(B, ...)`` broadcast to ``like``'s rank."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    while t.ndim < like.ndim:
        t = t.unsqueeze(-1)
    return t
