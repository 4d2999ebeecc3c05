"""``arfm stream``: online horizon prediction over a video, as a robot controller runs it (paper §3.4).

The frame at ``--start`` resets a :class:`arfm.online.HorizonPredictor` on query points (a
grid, a ``.npy`` of pixels, or points drawn by a trained query-information predictor, §3.3);
every later frame is fed to ``update``: the LK tracker finds the points on it and the horizon
of ``--horizon`` future steps is refreshed (``--schedule sequential|parallel``, or
``--mode naive`` to regenerate it from noise). Outputs:

- ``<out>.gif``: every frame with each point's live horizon, from its tracked position (blue)
  to the last predicted step (red), and the frame's latency;
- ``<out>.npz``: ``horizons (T, N, H, 2)`` with ``horizons_source`` (source-video pixels) and
  ``horizons_visible``, ``tracked (T, N, 2)`` (and ``tracked_source``), ``tracked_visible (T, N)``,
  ``latency_ms (T,)`` (entry 0 is the reset), ``queries (N, 2)``, and the settings; the same
  horizons as ``<out>.csv`` and what they mean in ``<out>.json`` (:mod:`arfm.export`);
- ``<out>.mp4`` instead of the GIF when ``--out`` ends in ``.mp4``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from arfm.errors import check_positive, check_query_points, run_cli
from arfm.online import HorizonPredictor, OnlineTracker, horizon_consistency


@dataclass
class StreamCommand:
    """Stream a video through the online horizon predictor and draw the live horizon.

    Attributes:
        checkpoint: checkpoint directory written by `arfm train`.
        video: a video file, GIF or folder of frames.
        out: output path without suffix or with .gif/.npz/.mp4; an animation (.mp4 when --out
            ends in .mp4, else .gif) and .npz/.csv/.json predictions are written.
        horizon: future steps kept (robotics setting of the paper: 16).
        start: frame the stream starts on.
        max_frames: frames streamed from --start (0 = to the end).
        num_points: query points (a grid, or drawn by --query-checkpoint).
        queries: optional .npy of (N, 2) query pixels in the 256x256 frame (overrides the grid).
        query_checkpoint: a trained `arfm train-query` checkpoint: draw the queries where it
            predicts movement (§3.3) instead of on a grid.
        caption: language prompt.
        mode: "update" (paper §3.4) or "naive" (regenerate the horizon every frame).
        schedule: re-integration schedule of an update, "sequential" (paper) or "parallel".
        seed: noise seed (and query draw seed).
        device: torch device.
        fps: frame rate of the GIF.
    """

    checkpoint: Path
    video: Path
    out: Path
    horizon: int = 16
    start: int = 0
    max_frames: int = 0
    num_points: int = 100
    queries: Path | None = None
    query_checkpoint: Path | None = None
    caption: str = ""
    mode: Literal["update", "naive"] = "update"
    schedule: Literal["sequential", "parallel"] = "sequential"
    seed: int = 0
    device: str = "cpu"
    fps: float = 10.0

    def __post_init__(self) -> None:
        # Checked before the model or the video is read.
        check_positive(self.horizon, "--horizon")
        check_positive(self.start, "--start", minimum=0)
        check_positive(self.max_frames, "--max-frames", minimum=0)
        check_positive(self.num_points, "--num-points")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps must be a positive number of frames per second, got {self.fps}")
        if self.mode not in ("update", "naive"):
            raise ValueError(f"--mode must be 'update' or 'naive', got {self.mode!r}")
        if self.schedule not in ("sequential", "parallel"):
            raise ValueError(f"--schedule must be 'sequential' or 'parallel', got {self.schedule!r}")


class RecordingTracker:
    """An online tracker that keeps what the tracker it wraps reported on every frame."""

    def __init__(self, inner: OnlineTracker) -> None:
        self.inner = inner
        self.positions: list[np.ndarray] = []
        self.visible: list[np.ndarray] = []

    def init(self, frame: np.ndarray, points: np.ndarray) -> None:
        self.inner.init(frame, points)
        self.positions.append(np.asarray(points, np.float32).copy())
        self.visible.append(np.ones(len(points), dtype=bool))

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions, visible = self.inner.step(frame)
        self.positions.append(np.asarray(positions, np.float32).copy())
        self.visible.append(np.asarray(visible, bool).copy())
        return positions, visible


@dataclass
class StreamResult:
    """What a stream produced, frame by frame (``T`` frames, ``N`` points, ``H`` steps).

    Attributes:
        horizons: ``(T, N, H, 2)`` pixels; row ``t`` holds the steps after frame ``t``.
        tracked: ``(T, N, 2)`` the online tracker's positions on each frame.
        tracked_visible: ``(T, N)`` bool.
        latency_ms: ``(T,)`` wall-clock of the reset (entry 0) and of each update.
    """

    horizons: np.ndarray
    tracked: np.ndarray
    tracked_visible: np.ndarray
    latency_ms: np.ndarray

    def consistency_px(self) -> float:
        """Mean displacement between successive horizons on the steps they share (NaN for one frame)."""
        if len(self.horizons) < 2:
            return float("nan")
        return float(np.mean([horizon_consistency(a, b) for a, b in zip(self.horizons[:-1], self.horizons[1:])]))


def stream_clip(
    predictor: HorizonPredictor,
    frames: np.ndarray,
    queries: np.ndarray,
    caption: str = "",
    progress: bool = True,
) -> StreamResult:
    """Reset ``predictor`` on ``frames[0]`` and update it on every later frame.

    The predictor's tracker is wrapped so its per-frame positions are recorded.

    Args:
        frames: ``(T, 256, 256, 3)`` uint8.
        queries: ``(N, 2)`` pixels on ``frames[0]``.
    """
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) array, got {frames.shape}")
    check_query_points(queries, frames.shape[2])  # new queries must be on the first frame
    from tqdm.auto import tqdm

    recorder = RecordingTracker(predictor.tracker)
    predictor.tracker = recorder
    horizons, latency = [], []
    try:
        for index in tqdm(range(len(frames)), desc="stream", unit="frame", disable=not progress):
            start = time.perf_counter()
            if index == 0:
                horizon = predictor.reset(frames[0], queries, caption)
            else:
                horizon = predictor.update(frames[index])
            latency.append(1000.0 * (time.perf_counter() - start))
            horizons.append(horizon)
    finally:
        predictor.tracker = recorder.inner
    return StreamResult(np.stack(horizons), np.stack(recorder.positions), np.stack(recorder.visible), np.asarray(latency))


def stream_animation(frames: np.ndarray, result: StreamResult) -> list[np.ndarray]:
    """One picture per frame: the live horizon of every visible point, from its tracked position."""
    from arfm.viz import draw_tracks, label

    pictures = []
    steps = result.horizons.shape[2] + 1
    for t, frame in enumerate(frames):
        tracks = np.concatenate([result.tracked[t][:, None], result.horizons[t]], axis=1)  # (N, H + 1, 2)
        visible = np.repeat(result.tracked_visible[t][:, None], steps, axis=1)
        what = "reset" if t == 0 else "update"
        pictures.append(label(draw_tracks(frame, tracks, visible), f"frame {t}  {what} {result.latency_ms[t]:.0f} ms"))
    return pictures


def choose_queries(cmd: StreamCommand, first_frame: np.ndarray) -> np.ndarray:
    """Query pixels ``(N, 2)`` from ``--queries``, ``--query-checkpoint`` or a grid."""
    from arfm.predict import grid_queries, load_queries

    if cmd.queries is not None:
        return load_queries(cmd.queries)
    if cmd.query_checkpoint is not None:
        from arfm.query.train import load_query_model

        query_model = load_query_model(cmd.query_checkpoint, device=cmd.device)
        frame = torch.from_numpy(first_frame).permute(2, 0, 1).float().div(255.0).to(cmd.device)
        generator = torch.Generator(device=cmd.device).manual_seed(cmd.seed)
        candidates = max(1000, 4 * cmd.num_points)
        return query_model.sample_queries(frame, cmd.num_points, candidates, generator=generator).cpu().numpy().astype(np.float32)
    return grid_queries(cmd.num_points)


def main(argv: list[str] | None = None) -> None:
    import tyro

    from arfm.checkpoint import load_model
    from arfm.data.video import read_video
    from arfm.export import prediction_visible, write_predictions
    from arfm.viz import write_gif

    cmd = tyro.cli(StreamCommand, args=argv, prog="arfm stream")
    clip = read_video(cmd.video, transform="center_crop")
    if cmd.start >= len(clip.frames):
        raise ValueError(f"{cmd.video} has {len(clip.frames)} frames; --start {cmd.start} is past its end")
    model = load_model(cmd.checkpoint, device=cmd.device)
    end = len(clip.frames) if cmd.max_frames <= 0 else min(len(clip.frames), cmd.start + cmd.max_frames)
    frames = clip.frames[cmd.start : end]
    queries = choose_queries(cmd, frames[0])
    predictor = HorizonPredictor(model, horizon=cmd.horizon, mode=cmd.mode, schedule=cmd.schedule, seed=cmd.seed)
    result = stream_clip(predictor, frames, queries, cmd.caption)

    base = cmd.out.with_suffix("") if cmd.out.suffix in (".gif", ".npz", ".mp4") else cmd.out
    base.parent.mkdir(parents=True, exist_ok=True)
    animation = base.with_suffix(".mp4" if cmd.out.suffix == ".mp4" else ".gif")
    write_gif(animation, stream_animation(frames, result), fps=cmd.fps)
    settings = dict(caption=cmd.caption, mode=cmd.mode, schedule=cmd.schedule, start=cmd.start)
    extra = dict(tracked=result.tracked, tracked_source=clip.transform.points_to_source(result.tracked),
                 tracked_visible=result.tracked_visible, latency_ms=result.latency_ms, queries=queries)
    visible = prediction_visible(result.horizons, clip.transform, result.tracked_visible)
    written = write_predictions(base, result.horizons, visible, clip.transform, clip.fps, cmd.checkpoint, key="horizons",
                                index_name="frame", arrays={**extra, **settings}, metadata={"video": str(cmd.video), **settings})
    updates = result.latency_ms[1:]
    timing = f"median update {np.median(updates):.0f} ms" if len(updates) else "no updates (one frame)"
    print(
        f"streamed {len(frames)} frames ({cmd.mode}, {cmd.schedule}): {timing}, "
        f"consistency {result.consistency_px():.2f} px; wrote {animation}, " + ", ".join(str(p) for p in written.values())
    )


if __name__ == "__main__":
    run_cli(main, "arfm stream")
