"""Point trackers for pseudo-labelling video (paper §3.1).

``build_tracker("lk")`` gives the CPU default; ``build_tracker("cotracker3", checkpoint=...)``
and ``build_tracker("bootstapir", checkpoint=...)`` load learned trackers from local files.
"""

from __future__ import annotations

from arfm.tracking.base import PointTracker, check_track_inputs, make_queries
from arfm.tracking.learned import BootsTAPIRTracker, CoTracker3Tracker
from arfm.tracking.lk import LKConfig, LucasKanadeTracker

TRACKERS = ("lk", "cotracker3", "bootstapir")


def build_tracker(name: str, checkpoint: str | None = None, device: str | None = None, lk: LKConfig | None = None) -> PointTracker:
    """Make a tracker by name.

    Args:
        name: ``"lk"``, ``"cotracker3"`` or ``"bootstapir"``.
        checkpoint: local weights for the learned trackers.
        device: torch device for the learned trackers.
        lk: settings of the LK tracker.

    Raises:
        ValueError: unknown name, or a learned tracker without a checkpoint path.
    """
    if name == "lk":
        return LucasKanadeTracker(lk)
    if name in ("cotracker3", "bootstapir"):
        if not checkpoint:
            raise ValueError(f"tracker {name!r} needs a local checkpoint path (--tracker-checkpoint)")
        cls = CoTracker3Tracker if name == "cotracker3" else BootsTAPIRTracker
        return cls(checkpoint, device=device)
    raise ValueError(f"unknown tracker {name!r}: choose one of {TRACKERS}")


__all__ = [
    "PointTracker",
    "LucasKanadeTracker",
    "LKConfig",
    "CoTracker3Tracker",
    "BootsTAPIRTracker",
    "build_tracker",
    "make_queries",
    "check_track_inputs",
    "TRACKERS",
]
