"""Streaming future tracks for a policy: camera frames of any size in, camera pixels out (paper §3.4).

:class:`MotionStream` wraps one :class:`arfm.online.HorizonPredictor` per environment of a
(vectorised) robot setup. Each :meth:`MotionStream.step` takes every environment's latest
camera frame, ``(H, W, 3)`` uint8 at whatever size that camera has, and returns a horizon of
future point positions per environment in **that camera's pixels**:

- Frames go to the 256 x 256 model frame through one :class:`arfm.coords.FrameTransform` per
  environment (built from the frame at reset), and predictions come back through its exact
  inverse. Query points are given, and positions returned, in source pixels.
- The online tracker (LK by default) runs on the model frames. LK cannot re-detect a point
  it lost, so the tracked share only falls during an episode (a 64-point grid keeps half its
  points after 60 frames of the longest shared robot clip). When the fraction of tracked
  points of an environment falls below ``requery_below``, the lost slots are refilled with new
  queries (a grid, or a trained query predictor, §3.3) and the predictor restarts on the
  current frame; :attr:`Motion.refilled` says which slots changed. A restart
  forgets the model's memory of that environment (its next horizon is conditioned on one
  frame, as at a reset); the kept points keep their tracked positions.
- Environments are independent: one can be reset (a new episode, another camera size) while
  the others keep streaming (``resets`` of :meth:`MotionStream.step`).

Every environment tracks the same number of slots, so the outputs stack into arrays with a
leading environment axis.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Literal, Protocol, Sequence

import numpy as np
import torch

from arfm.coords import RESIZE_MODES, FrameTransform, ResizeMode
from arfm.model import TrackShiftFlowPredictor
from arfm.online import HorizonPredictor, OnlineTracker

Box = tuple[float, float, float, float]


@dataclass
class MotionStreamConfig:
    """Settings of :class:`MotionStream`.

    Attributes:
        horizon: future steps predicted per frame (robotics setting of the paper: 16).
        resize: how frames reach the model frame: ``"center_crop"``, ``"letterbox"`` or ``"resize"``.
        num_points: query slots per environment when none are given (0 = the model's
            ``max_points``, its training size).
        requery_below: refill lost slots when the tracked fraction of an environment drops
            below this (0 never refills, 1 refills as soon as one point is lost).
        schedule: re-integration schedule of an update, ``"sequential"`` or ``"parallel"``.
        sample_steps: Euler steps of a full denoise (``None``: the model config's, 16).
        update_steps: Euler steps of a horizon update (``None``: the model config's, 4).
        seed: noise seed; environment ``i`` uses ``seed + i``.
    """

    horizon: int = 16
    resize: ResizeMode = "center_crop"
    num_points: int = 0
    requery_below: float = 0.5
    schedule: Literal["sequential", "parallel"] = "sequential"
    sample_steps: int | None = None
    update_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"invalid MotionStreamConfig field 'horizon': must be >= 1, got {self.horizon}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"invalid MotionStreamConfig field 'resize': use one of {RESIZE_MODES}, got {self.resize!r}")
        if self.num_points < 0:
            raise ValueError(f"invalid MotionStreamConfig field 'num_points': must be >= 0, got {self.num_points}")
        if not 0.0 <= self.requery_below <= 1.0:
            raise ValueError(f"invalid MotionStreamConfig field 'requery_below': must lie in [0, 1], got {self.requery_below}")
        if self.schedule not in ("sequential", "parallel"):
            raise ValueError(f"invalid MotionStreamConfig field 'schedule': use 'sequential' or 'parallel', got {self.schedule!r}")
        for name in ("sample_steps", "update_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"invalid MotionStreamConfig field '{name}': must be >= 1 or None, got {value}")


@dataclass
class Motion:
    """What :meth:`MotionStream.step` returns (``B`` environments, ``N`` slots, ``H`` steps).

    Attributes:
        horizon: ``(B, N, H, 2)`` float32 predicted positions after this frame, source pixels.
        horizon_model: ``(B, N, H, 2)`` the same in model-frame pixels.
        in_frame: ``(B, N, H)`` bool: the predicted step lies inside the source frame and
            the part of it the model sees.
        position: ``(B, N, 2)`` float32 tracked positions on this frame, source pixels.
        visible: ``(B, N)`` bool: the tracker still follows the slot's point.
        refilled: ``(B, N)`` bool: the slot got a new query on this frame (all True at a reset).
    """

    horizon: np.ndarray
    horizon_model: np.ndarray
    in_frame: np.ndarray
    position: np.ndarray
    visible: np.ndarray
    refilled: np.ndarray


class QuerySource(Protocol):
    """Picks ``count`` new query points (model pixels) on a model frame, inside ``box`` and
    away from the points already tracked (``avoid``, ``(K, 2)`` model pixels)."""

    def __call__(self, frame: np.ndarray, count: int, box: Box, avoid: np.ndarray) -> np.ndarray: ...


def grid_in_box(count: int, box: Box) -> np.ndarray:
    """``(M >= count, 2)`` cell centres of a regular grid over ``box = (x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    side = int(np.ceil(np.sqrt(count)))
    xs = x0 + (np.arange(side) + 0.5) * (x1 - x0) / side
    ys = y0 + (np.arange(side) + 0.5) * (y1 - y0) / side
    xx, yy = np.meshgrid(xs, ys)
    return np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)


def farthest_from(candidates: np.ndarray, count: int, avoid: np.ndarray) -> np.ndarray:
    """Greedily pick ``count`` candidates, each the farthest from ``avoid`` and those picked."""
    distance = np.full(len(candidates), np.inf)
    for point in np.asarray(avoid, np.float64).reshape(-1, 2):
        distance = np.minimum(distance, np.linalg.norm(candidates - point, axis=1))
    chosen = []
    for _ in range(min(count, len(candidates))):
        best = int(np.argmax(distance))  # first index on ties: deterministic
        chosen.append(best)
        distance = np.minimum(distance, np.linalg.norm(candidates - candidates[best], axis=1))
        distance[best] = -1.0
    return candidates[chosen]


class GridQuerySource:
    """New queries on a grid ``density`` times finer than needed, farthest from the kept points."""

    def __init__(self, density: int = 4) -> None:
        if density < 1:
            raise ValueError(f"GridQuerySource density must be >= 1, got {density}")
        self.density = density

    def __call__(self, frame: np.ndarray, count: int, box: Box, avoid: np.ndarray) -> np.ndarray:
        if avoid.size == 0:  # a fresh start: the plain grid, spread evenly
            return grid_in_box(count, box)[:count]
        return farthest_from(grid_in_box(self.density * count, box), count, avoid)


class LearnedQuerySource:
    """New queries drawn by a trained query-information predictor (§3.3) where it expects movement;
    any it cannot place inside ``box`` come from a grid."""

    def __init__(self, query_model: torch.nn.Module, num_candidates: int = 1000, seed: int = 0) -> None:
        self.query_model = query_model.eval()
        self.num_candidates = num_candidates
        device = next(query_model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, frame: np.ndarray, count: int, box: Box, avoid: np.ndarray) -> np.ndarray:
        device = next(self.query_model.parameters()).device
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(255.0).to(device)
        candidates = max(self.num_candidates, 2 * count)
        drawn = self.query_model.sample_queries(image, min(2 * count, candidates), candidates, generator=self.generator)
        drawn = drawn.cpu().numpy().astype(np.float32)
        x0, y0, x1, y1 = box
        inside = drawn[(drawn[:, 0] >= x0) & (drawn[:, 0] < x1) & (drawn[:, 1] >= y0) & (drawn[:, 1] < y1)][:count]
        if len(inside) < count:
            fill = GridQuerySource()(frame, count - len(inside), box, np.concatenate([avoid.reshape(-1, 2), inside]))
            inside = np.concatenate([inside, fill])
        return inside


class _LastStepTracker:
    """Wraps an online tracker and keeps what it reported on the latest frame."""

    def __init__(self, inner: OnlineTracker) -> None:
        self.inner = inner
        self.positions = np.zeros((0, 2), np.float32)
        self.visible = np.zeros(0, bool)

    def init(self, frame: np.ndarray, points: np.ndarray) -> None:
        self.inner.init(frame, points)
        self.positions, self.visible = np.asarray(points, np.float32).copy(), np.ones(len(points), bool)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions, visible = self.inner.step(frame)
        self.positions, self.visible = np.asarray(positions, np.float32).copy(), np.asarray(visible, bool).copy()
        return positions, visible


def check_frame(frame: np.ndarray, what: str) -> np.ndarray:
    """Raise, naming ``what``, unless ``frame`` is a non-empty ``(H, W, 3)`` uint8 RGB image."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{what} must be an (H, W, 3) RGB image, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0..255), got {frame.dtype}")
    return frame


def check_source_queries(queries: np.ndarray, transform: FrameTransform, what: str) -> np.ndarray:
    """Source-pixel queries ``(N, 2)`` -> model pixels, naming ``what`` and the first bad point."""
    points = np.asarray(queries, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{what} must be a non-empty (N, 2) array of (x, y) source pixels, got shape {points.shape}")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}: point {int(np.flatnonzero(bad)[0])} is not finite ({int(bad.sum())} of {len(points)} points are NaN/Inf)")
    w, h = transform.width, transform.height
    model = transform.points_to_model(points)
    x0, y0, x1, y1 = transform.content_box()
    outside = ((points < 0) | (points >= [w, h])).any(axis=1)
    cut = ~outside & ((model[:, 0] < x0) | (model[:, 0] >= x1) | (model[:, 1] < y0) | (model[:, 1] >= y1))
    for mask, reason in ((outside, f"outside the {w}x{h} source frame"), (cut, f"in the part of the {w}x{h} frame the {transform.mode} transform cuts away")):
        if mask.any():
            index = int(np.flatnonzero(mask)[0])
            x, y = points[index]
            raise ValueError(f"{what}: point {index} at (x={x:g}, y={y:g}) is {reason} ({int(mask.sum())} of {len(points)} points are)")
    return model.astype(np.float32)


class MotionStream:
    """Future tracks for ``num_envs`` camera streams of any size (module docstring).

    Args:
        model: a trained :class:`TrackShiftFlowPredictor`.
        num_envs: environments ``B`` fed together.
        config: settings; default :class:`MotionStreamConfig`.
        query_source: picks new queries (at a reset without queries, and to refill lost
            slots); default :class:`GridQuerySource`, or :class:`LearnedQuerySource` for a
            trained query-information predictor.
        make_tracker: builds one online tracker per environment; default LK.

    Example::

        stream = MotionStream(load_model("runs/tiny/checkpoint"), num_envs=2, config=MotionStreamConfig(horizon=16))
        motion = stream.reset([cam0, cam1], texts=["open the drawer", "pick up the cup"])
        motion = stream.step([cam0, cam1])          # motion.horizon: (2, N, 16, 2) camera pixels
    """

    def __init__(
        self,
        model: TrackShiftFlowPredictor,
        num_envs: int = 1,
        config: MotionStreamConfig | None = None,
        query_source: QuerySource | None = None,
        make_tracker: Callable[[], OnlineTracker] | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = config or MotionStreamConfig()
        self.num_envs = num_envs
        self.num_points = self.config.num_points or model.config.max_points
        self.query_source = query_source or GridQuerySource()
        if make_tracker is None:
            from arfm.tracking import LucasKanadeTracker

            make_tracker = LucasKanadeTracker
        cfg = self.config
        self.predictors = [
            HorizonPredictor(
                model, horizon=cfg.horizon, tracker=_LastStepTracker(make_tracker()), schedule=cfg.schedule,
                sample_steps=cfg.sample_steps, update_steps=cfg.update_steps, seed=cfg.seed + env,
            )
            for env in range(num_envs)
        ]
        self.transforms: list[FrameTransform | None] = [None] * num_envs
        self.texts = [""] * num_envs
        self._last: list[dict[str, np.ndarray] | None] = [None] * num_envs

    # -- public ---------------------------------------------------------------------------
    def reset(
        self,
        frames: Sequence[np.ndarray],
        queries: Sequence[np.ndarray | None] | None = None,
        texts: str | Sequence[str] = "",
    ) -> Motion:
        """Start every environment on its frame (queries in source pixels, or chosen for you)."""
        return self.step(frames, resets=[True] * self.num_envs, queries=queries, texts=texts)

    def step(
        self,
        frames: Sequence[np.ndarray],
        resets: Sequence[bool] | None = None,
        queries: Sequence[np.ndarray | None] | None = None,
        texts: str | Sequence[str] | None = None,
    ) -> Motion:
        """Feed one frame per environment; returns every environment's refreshed horizon.

        Args:
            frames: ``B`` frames ``(H, W, 3)`` uint8 (sizes may differ between environments).
            resets: ``B`` flags: start that environment afresh on this frame (a new episode);
                environments never reset so far are reset regardless.
            queries: for reset environments, ``(N, 2)`` source-pixel queries or ``None``
                (``N = num_points`` chosen by the query source); ignored for the others.
            texts: the instruction, one for all or one per environment (reset ones only).
        """
        frames = self._per_env(frames, "frames")
        resets = [False] * self.num_envs if resets is None else [bool(r) for r in self._per_env(resets, "resets")]
        queries = [None] * self.num_envs if queries is None else self._per_env(queries, "queries")
        if texts is None or isinstance(texts, str):
            texts = [texts] * self.num_envs
        texts = self._per_env(texts, "texts")
        frames = [check_frame(frame, f"frames[{env}]") for env, frame in enumerate(frames)]
        starts = {}  # env -> (transform, model-pixel queries or None); all checked before any state changes
        for env in range(self.num_envs):
            if resets[env] or self.transforms[env] is None:
                transform = FrameTransform.for_frame(frames[env], self.config.resize)
                model_queries = None
                if queries[env] is not None:
                    model_queries = check_source_queries(queries[env], transform, f"queries[{env}]")
                    if len(model_queries) != self.num_points:
                        raise ValueError(f"queries[{env}] has {len(model_queries)} points; every environment tracks num_points={self.num_points} slots")
                starts[env] = (transform, model_queries)
            else:
                self._check_size(env, frames[env])
        for env in range(self.num_envs):
            if env in starts:
                self._reset_env(env, frames[env], *starts[env], texts[env] if texts[env] is not None else "")
            else:
                self._update_env(env, frames[env])
        return self._collect()

    # -- one environment ------------------------------------------------------------------
    def _per_env(self, values: Sequence, what: str) -> list:
        values = list(values)
        if len(values) != self.num_envs:
            raise ValueError(f"{what} must hold one entry per environment ({self.num_envs}), got {len(values)}")
        return values

    def _check_size(self, env: int, frame: np.ndarray) -> None:
        transform = self.transforms[env]
        if frame.shape[:2] != (transform.height, transform.width):
            raise ValueError(
                f"frames[{env}] is {frame.shape[1]}x{frame.shape[0]} but environment {env} was reset on "
                f"{transform.width}x{transform.height} frames: reset it (resets[{env}]=True) to change the camera"
            )

    def _reset_env(self, env: int, frame: np.ndarray, transform: FrameTransform, model_queries: np.ndarray | None, text: str) -> None:
        model_frame = transform.frame_to_model(frame)
        if model_queries is None:
            model_queries = self._new_queries(model_frame, self.num_points, transform, np.zeros((0, 2), np.float32))
        self.transforms[env], self.texts[env] = transform, text
        horizon = self.predictors[env].reset(model_frame, model_queries, text)
        self._record(env, horizon, np.ones(len(model_queries), bool))

    def _update_env(self, env: int, frame: np.ndarray) -> None:
        predictor, transform = self.predictors[env], self.transforms[env]
        model_frame = transform.frame_to_model(frame)
        horizon = predictor.update(model_frame)
        tracker: _LastStepTracker = predictor.tracker
        positions, visible = tracker.positions, tracker.visible
        refilled = np.zeros(len(visible), bool)
        if visible.mean() < self.config.requery_below:
            x0, y0, x1, y1 = transform.content_box()
            keep = visible & (positions[:, 0] >= x0) & (positions[:, 0] < x1) & (positions[:, 1] >= y0) & (positions[:, 1] < y1)
            refilled = ~keep
            queries = positions.copy()
            queries[refilled] = self._new_queries(model_frame, int(refilled.sum()), transform, positions[keep])
            horizon = predictor.reset(model_frame, queries, self.texts[env])
        self._record(env, horizon, refilled)

    def _new_queries(self, model_frame: np.ndarray, count: int, transform: FrameTransform, avoid: np.ndarray) -> np.ndarray:
        points = np.asarray(self.query_source(model_frame, count, transform.content_box(), avoid), np.float32)
        if points.shape != (count, 2):
            raise ValueError(f"the query source returned {points.shape} points, {(count, 2)} were asked for")
        return points

    def _record(self, env: int, horizon_model: np.ndarray, refilled: np.ndarray) -> None:
        transform, tracker = self.transforms[env], self.predictors[env].tracker
        x0, y0, x1, y1 = transform.content_box()
        hx, hy = horizon_model[..., 0], horizon_model[..., 1]
        # source pixels beyond the content box are outside the source frame or cut away
        in_frame = (hx >= x0) & (hx < x1) & (hy >= y0) & (hy < y1)
        self._last[env] = {
            "horizon": transform.points_to_source(horizon_model.astype(np.float32)),
            "horizon_model": horizon_model.astype(np.float32),
            "in_frame": in_frame,
            "position": transform.points_to_source(tracker.positions),
            "visible": tracker.visible.copy(),
            "refilled": refilled,
        }

    def _collect(self) -> Motion:
        return Motion(**{f.name: np.stack([last[f.name] for last in self._last]) for f in fields(Motion)})
