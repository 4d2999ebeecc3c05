"""Online prediction of a constant horizon of future tracks (paper §3.4, Fig. 4).

:class:`HorizonPredictor` keeps ``H`` future steps of every query point and refreshes them at
each new camera frame:

1. an online point tracker gives the points' observed positions on the new frame; they
   replace step 0 of the stored horizon and become a committed (observed) row of the fusion
   module's KV cache;
2. steps ``1 .. H-1`` are re-noised to flow time ``t_e`` (default 0.8: 80 % previous
   prediction, 20 % noise) and re-integrated autoregressively in a few Euler steps (default 4),
   which keeps the horizon consistent with its past while letting it react to the frame;
3. one new final step is denoised fully from ``t = 0`` (16 steps).

Step 2 has two schedules:

- ``"sequential"`` (default, the paper's): rows are re-integrated one after the other, each
  conditioned on the fusion features of the rows just re-integrated before it, so the fusion
  module runs once per row and the flow head ``4 * (H - 1) + 16`` times, one row per call.
- ``"parallel"``: one Jacobi sweep of the same recursion. The fusion module reads every
  horizon row at once from the previous horizon re-anchored on the observation (positions =
  observation + previous shifts), then all re-noised rows share each of the 4 Euler steps and
  the new row takes its 16. Same FLOPs, but one fusion call and 20 head calls instead of
  ``H`` and ``4 * (H - 1) + 16``: far less latency where calls, not arithmetic, bound the time
  (a GPU at robot batch sizes). Rows differ from the sequential schedule only by conditioning
  on the previous instead of the re-integrated shifts; with ``t_e = 1`` the two are equal.

Rows of the horizon are speculative: they are dropped from the cache before the next update,
so the cache holds the text prefix plus committed rows (bounded by a sliding window).
``mode="naive"`` regenerates the whole horizon from noise at every frame instead (baseline).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch

from arfm import flow
from arfm.backbones import FrameFeatures
from arfm.coords import MODEL_FRAME_SIZE
from arfm.errors import check_frame_size, check_query_points
from arfm.model import RolloutState, TrackShiftFlowPredictor


class OnlineTracker(Protocol):
    """A tracker fed one frame at a time (``arfm.tracking.LucasKanadeTracker`` is one)."""

    def init(self, frame: np.ndarray, points: np.ndarray) -> None: ...

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class GivenPositionsTracker:
    """An online "tracker" that reports positions set by the caller, for when they are known
    (a simulator's ground truth, an external tracker): call :meth:`set` before each ``update``."""

    def __init__(self) -> None:
        self.points: np.ndarray | None = None

    def set(self, points: np.ndarray) -> None:
        """Positions ``(N, 2)`` (pixels) of the query points on the next frame."""
        self.points = np.asarray(points, np.float32).copy()

    def init(self, frame: np.ndarray, points: np.ndarray) -> None:
        self.set(points)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.points is None:
            raise RuntimeError("GivenPositionsTracker.step called before init/set")
        return self.points.copy(), np.ones(len(self.points), dtype=bool)


def horizon_consistency(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean displacement (px) between two successive horizons ``(N, H, 2)`` on the steps they
    share: step ``h + 1`` of ``previous`` and step ``h`` of ``current`` are the same future frame."""
    if previous.shape != current.shape or previous.ndim != 3 or previous.shape[1] < 2:
        raise ValueError(f"horizons must both be (N, H >= 2, 2), got {previous.shape} and {current.shape}")
    return float(np.linalg.norm(current[:, :-1] - previous[:, 1:], axis=-1).mean())


def frame_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 1, 3, H, W)`` float in ``[0, 1]``."""
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    check_frame_size(frame.shape[0], frame.shape[1], MODEL_FRAME_SIZE, what="frame")
    frame = np.ascontiguousarray(frame)
    if not frame.flags.writeable:  # a memory-mapped clip: torch wants memory it may own
        frame = frame.copy()
    return torch.from_numpy(frame).permute(2, 0, 1).float().div(255.0)[None, None].to(device)


class HorizonPredictor:
    """Streaming ARFM: ``reset(frame, queries, text)``, then ``update(frame)`` per new frame.

    Args:
        model: a trained :class:`TrackShiftFlowPredictor` (eval mode).
        horizon: ``H`` future steps kept (robotics setting of the paper: 16).
        tracker: online point tracker; default :class:`arfm.tracking.LucasKanadeTracker`.
        mode: ``"update"`` (paper §3.4) or ``"naive"`` (regenerate the horizon every frame).
        schedule: ``"sequential"`` (paper) or ``"parallel"`` re-integration of an update
            (module docstring); ignored by ``mode="naive"``.
        update_start_time: ``t_e``; default from the model config (0.8).
        update_steps: Euler steps of an update; default from the model config (4).
        sample_steps: Euler steps of a full denoise; default from the model config (16).
        use_cache: False recomputes the fusion module over the whole history at every row
            (reference for tests and benchmarks).
        seed: noise seed.
    """

    def __init__(
        self,
        model: TrackShiftFlowPredictor,
        horizon: int = 16,
        tracker: OnlineTracker | None = None,
        mode: Literal["update", "naive"] = "update",
        schedule: Literal["sequential", "parallel"] = "sequential",
        update_start_time: float | None = None,
        update_steps: int | None = None,
        sample_steps: int | None = None,
        use_cache: bool = True,
        seed: int = 0,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if mode not in ("update", "naive"):
            raise ValueError(f"mode must be 'update' or 'naive', got {mode!r}")
        if schedule not in ("sequential", "parallel"):
            raise ValueError(f"schedule must be 'sequential' or 'parallel', got {schedule!r}")
        cfg = model.config
        if use_cache and cfg.cache_window and cfg.cache_window <= horizon:
            raise ValueError(f"model cache_window {cfg.cache_window} must exceed the horizon {horizon}")
        if tracker is None:
            from arfm.tracking import LucasKanadeTracker

            tracker = LucasKanadeTracker()
        self.model, self.horizon, self.tracker, self.mode, self.schedule = model.eval(), horizon, tracker, mode, schedule
        self.t_e = cfg.update_start_time if update_start_time is None else update_start_time
        self.update_steps = update_steps or cfg.update_steps
        self.sample_steps = sample_steps or cfg.sample_steps
        self.use_cache = use_cache
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.state: RolloutState | None = None
        self.shifts: torch.Tensor | None = None  # (1, N, H, 2) model-unit shifts of the horizon
        self.tracks: torch.Tensor | None = None  # (1, N, H, 2) pixels
        self._committed_position: torch.Tensor | None = None  # (1, N, 2) last observed positions

    def _noise(self) -> torch.Tensor:
        return torch.randn(self.state.positions.shape, generator=self.generator, device=self.device)

    def _roll_horizon(self, previous: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """From the committed state, produce ``H`` steps; re-noise ``previous`` shifts if given."""
        state, model = self.state, self.model
        positions, shifts = [], []
        for h in range(self.horizon):
            if previous is not None and h < previous.shape[2]:
                x0 = flow.renoise(previous[:, :, h], self.t_e, self.generator)
                pos = model.advance(state, x0, self.t_e, self.update_steps, self.use_cache)
            else:
                pos = model.advance(state, self._noise(), 0.0, self.sample_steps, self.use_cache)
            positions.append(pos)
            shifts.append(state.prev_shift)
        # Rows 1 .. H-1 were speculative: forget them so the next frame's row follows the committed one.
        self._forget(self.horizon - 1)
        return torch.stack(positions, dim=2), torch.stack(shifts, dim=2)

    def _reroll_horizon_parallel(self, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``"parallel"`` schedule: ``previous`` holds the ``H - 1`` shifts kept from the last horizon."""
        state, model = self.state, self.model
        scale = model.config.shift_scale
        # Inputs of the H rows to fuse: the committed (observed) row, then the previous horizon
        # re-anchored on the observation; each row's T_C is the shift that led to it.
        anchored = state.positions[:, :, None] + scale * torch.cumsum(previous, dim=2)
        row_positions = torch.cat([state.positions[:, :, None], anchored], dim=2).transpose(1, 2)  # (1, H, N, 2)
        row_prev = torch.cat([state.prev_shift[:, :, None], previous], dim=2).transpose(1, 2)
        features = model.fuse_rows(state, row_positions, row_prev, self.use_cache)
        # Noise is drawn row by row in row order, as the sequential schedule draws it.
        shifts = []
        if previous.shape[2]:
            x0 = torch.stack([flow.renoise(previous[:, :, h], self.t_e, self.generator) for h in range(previous.shape[2])], dim=1)
            shifts.append(model.denoise(state, features[:, :-1], row_prev[:, :-1], x0, self.t_e, self.update_steps))
        shifts.append(model.denoise(state, features[:, -1:], row_prev[:, -1:], self._noise()[:, None], 0.0, self.sample_steps))
        shifts = torch.cat(shifts, dim=1).transpose(1, 2)  # (1, N, H, 2)
        positions = state.positions[:, :, None] + scale * torch.cumsum(shifts, dim=2)
        state.positions, state.prev_shift = positions[:, :, -1], shifts[:, :, -1]
        self._forget(self.horizon - 1)
        return positions, shifts

    def _forget(self, rows: int) -> None:
        state = self.state
        if self.use_cache:
            state.cache.drop_last(rows)
        elif rows and state.history is not None:
            state.history = state.history[:, :-rows]
        state.row -= rows

    @torch.no_grad()
    def reset(self, frame: np.ndarray, queries: np.ndarray, text: str = "") -> np.ndarray:
        """Start on a first frame with query points ``(N, 2)`` pixels; returns the horizon ``(N, H, 2)``."""
        queries = np.asarray(queries, dtype=np.float32)
        check_query_points(queries, None)  # shape and finiteness; a tracked point may be off-frame
        frames = frame_tensor(frame, self.device)  # checked before the tracker sees the frame
        self.tracker.init(frame, queries)
        observed = torch.from_numpy(queries)[None, :, None, :].to(self.device)
        self.state = self.model.prepare(frames, observed, [text], use_cache=self.use_cache, cache_window=self.model.config.cache_window)
        self._committed_position = observed[:, :, 0]
        self.tracks, self.shifts = self._roll_horizon(previous=None)
        return self.tracks[0].cpu().numpy()

    @torch.no_grad()
    def update(self, frame: np.ndarray) -> np.ndarray:
        """Feed the next frame; returns the refreshed horizon ``(N, H, 2)`` (steps after this frame)."""
        if self.state is None:
            raise RuntimeError("HorizonPredictor.update called before reset(frame, queries, text)")
        observed, _ = self.tracker.step(frame)
        observed = torch.from_numpy(np.asarray(observed, np.float32))[None].to(self.device)  # (1, N, 2)
        state = self.state
        # The committed row for the new frame: observed position, shift from the previous
        # observation, features of the new frame.
        state.prev_shift = (observed - self._committed_position) / self.model.config.shift_scale
        state.positions = observed
        feats = self.model.backbone.encode_frames(frame_tensor(frame, self.device))
        state.last_frame = FrameFeatures(feats.local, feats.global_tokens)
        state.observed_rows = state.row + 1
        self._committed_position = observed
        if self.mode == "naive":
            self.tracks, self.shifts = self._roll_horizon(previous=None)
        elif self.schedule == "parallel":
            self.tracks, self.shifts = self._reroll_horizon_parallel(self.shifts[:, :, 1:])
        else:
            self.tracks, self.shifts = self._roll_horizon(self.shifts[:, :, 1:])
        return self.tracks[0].cpu().numpy()
