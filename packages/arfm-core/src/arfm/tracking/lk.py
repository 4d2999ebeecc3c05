"""Pyramidal Lucas-Kanade point tracking with forward-backward visibility (paper §3.1 default).

The paper pseudo-labels with BootsTAP; this classical tracker is the default that runs on a
CPU without weights. Each frame-to-frame step is checked by tracking the new position back
to the previous frame: a point is kept only when

- OpenCV's LK reports success both ways (enough texture: minimum eigenvalue of the
  structure tensor above ``min_eig_threshold``),
- the forward-backward error ``|p - LK_back(LK_fwd(p))|`` is at most ``fb_threshold`` pixels, and
- the new position lies inside the frame.

A point that fails any check is *lost*: invisible from that frame on, its position frozen at the
last good estimate (LK cannot re-detect a point after an occlusion; learned trackers can).
Queries may sit on any frame: tracking runs forward to the end and backward to the start.

OpenCV puts pixel centres on integers; :mod:`arfm.coords` puts them on half-integers, so
points are shifted by 0.5 px on the way in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from arfm.tracking.base import check_track_inputs

_CV_OFFSET = 0.5  # our pixel (x, y) = OpenCV pixel (x, y) + 0.5


@dataclass
class LKConfig:
    """Settings of :class:`LucasKanadeTracker`.

    Attributes:
        win_size: side of the LK search window per pyramid level, pixels.
        max_level: pyramid levels above the base (3 handles ~8x window-size motion).
        max_iters: LK iterations per level.
        eps: LK convergence threshold (pixels of update).
        fb_threshold: most forward-backward error, pixels, for a step to count as tracked.
        min_eig_threshold: OpenCV's texture threshold (its default); flat regions below it fail.
    """

    win_size: int = 21
    max_level: int = 3
    max_iters: int = 30
    eps: float = 0.01
    fb_threshold: float = 1.0
    min_eig_threshold: float = 1e-4

    def __post_init__(self) -> None:
        if self.win_size < 3 or self.win_size % 2 == 0:
            raise ValueError(f"invalid LKConfig field 'win_size': must be an odd number >= 3, got {self.win_size}")
        if self.max_level < 0:
            raise ValueError(f"invalid LKConfig field 'max_level': must be >= 0, got {self.max_level}")
        if self.max_iters < 1:
            raise ValueError(f"invalid LKConfig field 'max_iters': must be >= 1, got {self.max_iters}")
        if self.fb_threshold <= 0:
            raise ValueError(f"invalid LKConfig field 'fb_threshold': must be > 0, got {self.fb_threshold}")
        if self.min_eig_threshold < 0:
            raise ValueError(f"invalid LKConfig field 'min_eig_threshold': must be >= 0, got {self.min_eig_threshold}")


def _gray(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class LucasKanadeTracker:
    """OpenCV pyramidal LK with forward-backward consistency; offline and online use.

    Offline: :meth:`track` (the :class:`~arfm.tracking.base.PointTracker` protocol).
    Online (one frame at a time): :meth:`init` then :meth:`step` per new frame.
    """

    name = "lk"

    def __init__(self, config: LKConfig | None = None) -> None:
        self.config = config or LKConfig()
        self._prev: np.ndarray | None = None
        self._points: np.ndarray | None = None
        self._alive: np.ndarray | None = None

    # -- one step ---------------------------------------------------------------------------
    def _lk(self, src: np.ndarray, dst: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        new, status, _ = cv2.calcOpticalFlowPyrLK(
            src,
            dst,
            pts.reshape(-1, 1, 2),
            None,
            winSize=(cfg.win_size, cfg.win_size),
            maxLevel=cfg.max_level,
            criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, cfg.max_iters, cfg.eps),
            minEigThreshold=cfg.min_eig_threshold,
        )
        return new.reshape(-1, 2), status.reshape(-1).astype(bool)

    def step_points(self, prev_gray: np.ndarray, next_gray: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move pixel points from one grey frame to the next.

        Args:
            prev_gray, next_gray: ``(H, W)`` uint8 frames.
            points: ``(K, 2)`` pixel ``(x, y)`` on ``prev_gray``.

        Returns:
            ``(K, 2)`` float32 positions on ``next_gray`` and ``(K,)`` bool: the step passed
            every check (LK status both ways, forward-backward error, inside the frame).
        """
        if len(points) == 0:
            return np.zeros((0, 2), np.float32), np.zeros(0, bool)
        pts = (np.asarray(points, np.float32) - _CV_OFFSET).astype(np.float32)
        fwd, ok_fwd = self._lk(prev_gray, next_gray, pts)
        back, ok_back = self._lk(next_gray, prev_gray, fwd.astype(np.float32))
        fb_error = np.linalg.norm(back - pts, axis=1)
        new = fwd + _CV_OFFSET
        height, width = next_gray.shape
        inside = (new[:, 0] >= 0) & (new[:, 0] < width) & (new[:, 1] >= 0) & (new[:, 1] < height)
        ok = ok_fwd & ok_back & (fb_error <= self.config.fb_threshold) & inside & np.isfinite(new).all(axis=1)
        return new.astype(np.float32), ok

    # -- offline ----------------------------------------------------------------------------
    def _sweep(self, grays: list[np.ndarray], queries: np.ndarray, tracks: np.ndarray, visible: np.ndarray, forward: bool) -> None:
        """Track every query from its frame to one end of the clip, writing into the arrays."""
        num_frames = len(grays)
        order = range(num_frames) if forward else range(num_frames - 1, -1, -1)
        q_t = queries[:, 0].astype(int)
        current = queries[:, 1:].astype(np.float32).copy()
        alive = np.zeros(len(queries), bool)
        for t in order:
            alive |= q_t == t  # queries join the sweep at their own frame
            nxt = t + 1 if forward else t - 1
            if nxt < 0 or nxt >= num_frames:
                break
            idx = np.flatnonzero(alive)
            if len(idx) == 0:
                continue
            new, ok = self.step_points(grays[t], grays[nxt], current[idx])
            current[idx[ok]] = new[ok]
            tracks[idx[ok], nxt] = new[ok]
            visible[idx[ok], nxt] = True
            alive[idx[~ok]] = False

    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track queries ``[t, x, y]`` through ``video`` ``(T, H, W, 3)`` uint8, both directions.

        Returns:
            ``tracks`` ``(N, T, 2)`` float32 pixels (frozen at the last good position once lost)
            and ``visible`` ``(N, T)`` bool.
        """
        video, queries = check_track_inputs(video, queries)
        num, num_frames = len(queries), video.shape[0]
        tracks = np.full((num, num_frames, 2), np.nan, np.float32)
        visible = np.zeros((num, num_frames), bool)
        if num == 0:
            return tracks, visible
        q_t = queries[:, 0].astype(int)
        rows = np.arange(num)
        tracks[rows, q_t] = queries[:, 1:]
        height, width = video.shape[1:3]
        x, y = queries[:, 1], queries[:, 2]
        visible[rows, q_t] = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        grays = [_gray(frame) for frame in video]
        self._sweep(grays, queries, tracks, visible, forward=True)
        self._sweep(grays, queries, tracks, visible, forward=False)
        _hold_last_position(tracks, q_t)
        return tracks, visible

    # -- online -----------------------------------------------------------------------------
    def init(self, frame: np.ndarray, points: np.ndarray) -> None:
        """Start online tracking of ``points`` ``(N, 2)`` pixels on ``frame`` ``(H, W, 3)`` uint8."""
        points = np.asarray(points, np.float32)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must be (N, 2) pixel (x, y), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points contain NaN or Inf")
        self._prev = _gray(frame)
        self._points = points.copy()
        height, width = self._prev.shape
        self._alive = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance one frame.

        Returns:
            ``(N, 2)`` float32 positions on ``frame`` (lost points keep their last position)
            and ``(N,)`` bool visibility.
        """
        if self._prev is None or self._points is None or self._alive is None:
            raise RuntimeError("LucasKanadeTracker.step called before init(frame, points)")
        gray = _gray(frame)
        if gray.shape != self._prev.shape:
            raise ValueError(f"frame size {gray.shape[::-1]} differs from the init frame {self._prev.shape[::-1]}")
        idx = np.flatnonzero(self._alive)
        new, ok = self.step_points(self._prev, gray, self._points[idx])
        self._points[idx[ok]] = new[ok]
        self._alive[idx[~ok]] = False
        self._prev = gray
        return self._points.copy(), self._alive.copy()


def _hold_last_position(tracks: np.ndarray, q_t: np.ndarray) -> None:
    """Fill NaN positions with the nearest known one towards the query frame (in place)."""
    num, num_frames = tracks.shape[:2]
    steps = np.broadcast_to(np.arange(num_frames), (num, num_frames))
    known = ~np.isnan(tracks[..., 0])
    last_known = np.maximum.accumulate(np.where(known, steps, -1), axis=1)
    next_known = np.minimum.accumulate(np.where(known, steps, num_frames)[:, ::-1], axis=1)[:, ::-1]
    source = np.where(steps > q_t[:, None], last_known, next_known)
    fill = ~known
    rows = np.broadcast_to(np.arange(num)[:, None], (num, num_frames))
    tracks[fill] = tracks[rows[fill], source[fill]]
