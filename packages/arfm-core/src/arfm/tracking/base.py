"""The point-tracker interface used for pseudo-labelling (paper §3.1) and query layouts.

A tracker takes a video and query points ``[t, x, y]`` (pixels, :mod:`arfm.coords`
convention) and returns a position and a visibility flag for every query on every frame,
before and after its query frame. The paper uses BootsTAP; the default here is the classical
Lucas-Kanade tracker (:mod:`arfm.tracking.lk`), which runs on a CPU.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np

QueryLayout = Literal["grid", "random"]


@runtime_checkable
class PointTracker(Protocol):
    """Anything that tracks query points through a video."""

    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track points.

        Args:
            video: ``(T, H, W, 3)`` uint8 RGB frames.
            queries: ``(N, 3)`` rows ``[t, x, y]``: frame index and pixel position.

        Returns:
            ``tracks`` ``(N, T, 2)`` float32 pixel ``(x, y)`` and ``visible`` ``(N, T)`` bool.
        """
        ...


def check_track_inputs(video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate the arguments of :meth:`PointTracker.track`; return them as arrays.

    Raises:
        ValueError: wrong shapes or dtypes, an empty video, non-finite or out-of-range queries.
    """
    video = np.asarray(video)
    queries = np.asarray(queries, dtype=np.float64)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3), got {video.shape}")
    if video.dtype != np.uint8:
        raise ValueError(f"video must be uint8, got {video.dtype}")
    if video.shape[0] == 0:
        raise ValueError("video has zero frames")
    if queries.ndim != 2 or queries.shape[1] != 3:
        raise ValueError(f"queries must be (N, 3) rows [t, x, y], got {queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("queries contain NaN or Inf")
    t = queries[:, 0]
    if queries.shape[0] and (t.min() < 0 or t.max() > video.shape[0] - 1 or not np.allclose(t, np.round(t))):
        raise ValueError(f"query frame indices must be integers in [0, {video.shape[0] - 1}], got range [{t.min()}, {t.max()}]")
    return video, queries


def make_queries(
    num_points: int,
    num_frames: int,
    size: int | tuple[int, int] = 256,
    num_query_frames: int = 1,
    layout: QueryLayout = "grid",
    seed: int = 0,
) -> np.ndarray:
    """Query points spread over space and over a few evenly spaced frames.

    Points are split as evenly as possible across ``num_query_frames`` frames
    ``round(k * T / num_query_frames)`` (frame 0 first). ``"grid"`` places each frame's points on
    the cells of a regular grid (a seeded choice of cells when the grid has more cells than
    points); ``"random"`` draws them uniformly. Points are inset half a cell so none sits on the
    border, where trackers have no context.

    Args:
        num_points: total queries.
        num_frames: frames ``T`` of the video.
        size: frame size, an int or ``(width, height)``.
        num_query_frames: frames that receive queries (capped at ``T``).
        layout: ``"grid"`` or ``"random"``.
        seed: seed of the random choices (queries are deterministic given it).

    Returns:
        ``(num_points, 3)`` float32 rows ``[t, x, y]``.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_query_frames < 1:
        raise ValueError(f"num_query_frames must be >= 1, got {num_query_frames}")
    if layout not in ("grid", "random"):
        raise ValueError(f"query layout must be 'grid' or 'random', got {layout!r}")
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    k = min(num_query_frames, num_frames)
    frames = sorted({int(round(i * num_frames / k)) for i in range(k)})
    counts = np.full(len(frames), num_points // len(frames))
    counts[: num_points % len(frames)] += 1
    rows = []
    for frame, count in zip(frames, counts):
        if count == 0:
            continue
        if layout == "random":
            xy = rng.uniform([0.0, 0.0], [width, height], size=(count, 2))
        else:
            side = int(np.ceil(np.sqrt(count * width / height)))
            cols, lines = side, int(np.ceil(count / side))
            xs = (np.arange(cols) + 0.5) * (width / cols)
            ys = (np.arange(lines) + 0.5) * (height / lines)
            grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
            xy = grid[np.sort(rng.choice(len(grid), size=count, replace=False))]
        rows.append(np.concatenate([np.full((count, 1), frame), xy], axis=1))
    return np.concatenate(rows).astype(np.float32)
