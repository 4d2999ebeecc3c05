"""``arfm predict``: future tracks for a clip from a trained checkpoint, as a picture or GIF.

Given a video (or an image), the first ``--cond-frames`` frames from ``--start`` are the
conditioning frames; query points are a regular grid (or a ``.npy`` of ``(N, 2)`` pixels of
the 256 x 256 frame) on the first of them, tracked through the others with the LK tracker,
and the model samples ``--horizon`` future steps. Outputs: a PNG (trails drawn on the last
conditioning frame), a GIF (an MP4 with ``--out x.mp4``) with growing trails over the real
future frames where the clip has them, and the predictions with visibility in model and source
pixels as ``.npz`` + ``.csv`` + ``.json`` (:mod:`arfm.export`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arfm.coords import MODEL_FRAME_SIZE
from arfm.errors import check_positive, check_query_points, run_cli


@dataclass
class PredictCommand:
    """Predict future point tracks for a clip.

    Attributes:
        checkpoint: checkpoint directory written by `arfm train`.
        video: a video file, GIF, image or folder of frames.
        out: output path without suffix or with .gif/.png/.npz/.mp4; a .png, an animation
            (.mp4 when --out ends in .mp4, else .gif) and .npz/.csv/.json predictions are written.
        start: first conditioning frame.
        cond_frames: conditioning frames.
        num_points: query points (a grid).
        queries: optional .npy of (N, 2) query pixels in the 256x256 frame (overrides the grid).
        horizon: future steps (default: the checkpoint's horizon).
        max_horizon: refuse a --horizon above this (sampling runs the model once per step per
            Euler step: 100000 steps would run for hours with nothing to show).
        num_samples: draws; the PNG shows the first, the .npz keeps all.
        caption: language prompt.
        seed: noise seed.
        device: torch device.
    """

    checkpoint: Path
    video: Path
    out: Path
    start: int = 0
    cond_frames: int = 1
    num_points: int = 100
    queries: Path | None = None
    horizon: int | None = None
    max_horizon: int = 1000
    num_samples: int = 1
    caption: str = ""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Checked before anything is read or written, so a bad flag never leaves half the outputs.
        check_positive(self.start, "--start", minimum=0)
        check_positive(self.cond_frames, "--cond-frames")
        check_positive(self.num_points, "--num-points")
        check_positive(self.num_samples, "--num-samples")
        check_positive(self.max_horizon, "--max-horizon")
        if self.horizon is not None:
            check_horizon(self.horizon, self.max_horizon)


def check_horizon(horizon: int, max_horizon: int) -> None:
    """Raise unless ``1 <= horizon <= max_horizon``."""
    check_positive(horizon, "--horizon")
    if horizon > max_horizon:
        raise ValueError(f"--horizon {horizon} is above --max-horizon {max_horizon}: sampling is one model call per step; raise --max-horizon to run it anyway")


def grid_queries(num_points: int, size: int = MODEL_FRAME_SIZE) -> np.ndarray:
    """``(N, 2)`` pixel points on a regular grid inset half a cell from the border."""
    side = int(np.ceil(np.sqrt(num_points)))
    cells = (np.arange(side) + 0.5) * size / side
    xx, yy = np.meshgrid(cells, cells)
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)[:num_points].astype(np.float32)


def load_queries(path: Path) -> np.ndarray:
    """Query pixels ``(N, 2)`` of the 256 x 256 frame from a ``.npy`` file, validated."""
    try:
        points = np.load(path).astype(np.float32)
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"--queries {path} is not a readable .npy array: {exc}") from exc
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 or not np.isfinite(points).all():
        raise ValueError(f"--queries {path} must hold a non-empty, finite (N, 2) array of pixels, got {points.shape}")
    check_query_points(points, MODEL_FRAME_SIZE, what=f"--queries {path}")
    return points


def observe(frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Track query points (on ``frames[0]``) through the conditioning frames with LK."""
    if len(frames) == 1:
        return points[:, None, :], np.ones((len(points), 1), dtype=bool)
    from arfm.tracking import LucasKanadeTracker

    queries = np.concatenate([np.zeros((len(points), 1), np.float32), points], axis=1)
    return LucasKanadeTracker().track(frames, queries)


def predict_clip(
    model: torch.nn.Module,
    frames: np.ndarray,
    points: np.ndarray,
    caption: str,
    horizon: int,
    num_samples: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict from uint8 frames ``(F, 256, 256, 3)`` and query pixels ``(N, 2)`` on frame 0.

    Returns:
        ``(future (S, N, H, 2), observed (N, F, 2), observed_visible (N, F))`` in pixels.
    """
    observed, observed_visible = observe(frames, points)
    device = next(model.parameters()).device
    frames_t = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None].to(device)
    obs_t = torch.from_numpy(np.ascontiguousarray(observed, dtype=np.float32))[None].to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    future = model.sample(frames_t, obs_t, [caption], horizon=horizon, num_samples=num_samples, generator=gen)
    return future[0].cpu().numpy(), observed, observed_visible


def main(argv: list[str] | None = None) -> None:
    import tyro

    from arfm.checkpoint import load_model
    from arfm.data.video import read_video
    from arfm.export import prediction_visible, write_predictions
    from arfm.viz import draw_tracks, tracks_animation, write_gif, write_png

    cmd = tyro.cli(PredictCommand, args=argv, prog="arfm predict")
    points = grid_queries(cmd.num_points) if cmd.queries is None else load_queries(cmd.queries)
    clip = read_video(cmd.video, transform="center_crop")
    if cmd.start + cmd.cond_frames > len(clip.frames):
        raise ValueError(f"{cmd.video} has {len(clip.frames)} frames; --start {cmd.start} + --cond-frames {cmd.cond_frames} is past its end")
    model = load_model(cmd.checkpoint, device=cmd.device)
    horizon = model.config.horizon if cmd.horizon is None else cmd.horizon
    check_horizon(horizon, cmd.max_horizon)
    cond = clip.frames[cmd.start : cmd.start + cmd.cond_frames]
    print(f"sampling {horizon} steps for {len(points)} points x {cmd.num_samples} samples", file=sys.stderr)
    future, observed, observed_visible = predict_clip(model, cond, points, cmd.caption, horizon, cmd.num_samples, cmd.seed)

    base = cmd.out.with_suffix("") if cmd.out.suffix in (".gif", ".png", ".npz", ".mp4") else cmd.out
    animation = base.with_suffix(".mp4" if cmd.out.suffix == ".mp4" else ".gif")
    base.parent.mkdir(parents=True, exist_ok=True)
    full = np.concatenate([observed[:, -1:], future[0]], axis=1)  # include the start point
    write_png(base.with_suffix(".png"), draw_tracks(cond[-1], full))
    later = clip.frames[cmd.start + cmd.cond_frames - 1 : cmd.start + cmd.cond_frames + horizon]
    write_gif(animation, tracks_animation(later, [("ARFM prediction", full, None)]))
    visible = prediction_visible(future, clip.transform, observed_visible[:, -1])
    extra = {"video": str(cmd.video), "caption": cmd.caption, "start": cmd.start, "cond_frames": cmd.cond_frames, "seed": cmd.seed}
    arrays = dict(frames=cond, observed=observed, caption=cmd.caption)
    written = write_predictions(base, future, visible, clip.transform, clip.fps, cmd.checkpoint, arrays=arrays, metadata=extra)
    print(f"wrote {base.with_suffix('.png')}, {animation}, " + ", ".join(str(p) for p in written.values()))


if __name__ == "__main__":
    run_cli(main, "arfm predict")
