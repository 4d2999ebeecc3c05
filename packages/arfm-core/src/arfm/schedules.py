"""Learning-rate schedules shared by every training loop (ARFM, the query predictor, GR-1, CHOIS).

A schedule is a factor of the peak learning rate as a function of the optimiser step, the form
``torch.optim.lr_scheduler.LambdaLR`` takes::

    scheduler = LambdaLR(optimizer, lr_factor("cosine", warmup_steps=100, total_steps=2000))

Both kinds warm up linearly over ``warmup_steps``: step ``s`` (counted from 0) gets
``(s + 1) / warmup_steps``, so the very first step already learns (a warm-up starting at 0 would
waste it). ``"constant"`` then stays at 1 (ARFM, paper App. B; CHOIS); ``"cosine"`` decays to 0
at ``total_steps`` along half a cosine (GR-1), the same curve as
``transformers.get_cosine_schedule_with_warmup`` after the warm-up.

Torch-free, so that the scripts' ``--help`` stays light.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

ScheduleKind = Literal["constant", "cosine"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def lr_factor(kind: ScheduleKind, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of step ``s`` (0-based), for ``LambdaLR``.

    Args:
        kind: ``"constant"`` or ``"cosine"`` after the warm-up.
        warmup_steps: steps of the linear warm-up (0: none).
        total_steps: steps of the whole run; the cosine reaches 0 there (and stays at 0 after).

    Raises:
        ValueError: naming the argument, for an unknown kind or negative step counts.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"lr schedule must be one of {list(SCHEDULES)}, got {kind!r}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
