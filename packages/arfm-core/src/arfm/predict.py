"""``arfm predict``: future tracks for a clip from a trained checkpoint, as a picture or GIF.

Given a video (or an image), the first ``--cond-frames`` frames from ``--start`` are the
conditioning frames; query points are a regular grid (or a ``.npy`` of ``(N, 2)`` pixels of
the 256 x 256 frame) on the first of them, tracked through the others with the LK tracker,
and the model samples ``--horizon`` future steps. Outputs: a PNG (trails drawn on the last
conditioning frame), a GIF with growing trails over the real future frames where the clip
has them, and an ``.npz`` with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from arfm.coords import MODEL_FRAME_SIZE


@dataclass
class PredictCommand:
    """Predict future point tracks for a clip.

    Attributes:
        checkpoint: checkpoint directory written by `arfm train`.
        video: a video file, GIF, image or folder of frames.
        out: output path without suffix or with .gif/.png/.npz; all three are written.
        start: first conditioning frame.
        cond_frames: conditioning frames.
        num_points: query points (a grid).
        queries: optional .npy of (N, 2) query pixels in the 256x256 frame (overrides the grid).
        horizon: future steps (default: the checkpoint's horizon).
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
    num_samples: int = 1
    caption: str = ""
    seed: int = 0
    device: str = "cpu"


def grid_queries(num_points: int, size: int = MODEL_FRAME_SIZE) -> np.ndarray:
    """``(N, 2)`` pixel points on a regular grid inset half a cell from the border."""
    side = int(np.ceil(np.sqrt(num_points)))
    cells = (np.arange(side) + 0.5) * size / side
    xx, yy = np.meshgrid(cells, cells)
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)[:num_points].astype(np.float32)


def load_queries(path: Path) -> np.ndarray:
    """Query pixels ``(N, 2)`` of the 256 x 256 frame from a ``.npy`` file, validated."""
    points = np.load(path).astype(np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0 or not np.isfinite(points).all():
        raise ValueError(f"--queries {path} must hold a non-empty, finite (N, 2) array of pixels, got {points.shape}")
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

    from arfm.atomic import atomic_path
    from arfm.checkpoint import load_model
    from arfm.data.video import read_video
    from arfm.viz import draw_tracks, tracks_animation, write_gif, write_png

    cmd = tyro.cli(PredictCommand, args=argv, prog="arfm predict")
    model = load_model(cmd.checkpoint, device=cmd.device)
    horizon = cmd.horizon or model.config.horizon
    clip = read_video(cmd.video, transform="center_crop")
    if cmd.start + cmd.cond_frames > len(clip.frames):
        raise ValueError(f"{cmd.video} has {len(clip.frames)} frames; --start {cmd.start} + --cond-frames {cmd.cond_frames} is past its end")
    cond = clip.frames[cmd.start : cmd.start + cmd.cond_frames]
    points = grid_queries(cmd.num_points) if cmd.queries is None else load_queries(cmd.queries)
    future, observed, _ = predict_clip(model, cond, points, cmd.caption, horizon, cmd.num_samples, cmd.seed)

    base = cmd.out.with_suffix("") if cmd.out.suffix in (".gif", ".png", ".npz") else cmd.out
    base.parent.mkdir(parents=True, exist_ok=True)
    full = np.concatenate([observed[:, -1:], future[0]], axis=1)  # include the start point
    write_png(base.with_suffix(".png"), draw_tracks(cond[-1], full))
    later = clip.frames[cmd.start + cmd.cond_frames - 1 : cmd.start + cmd.cond_frames + horizon]
    write_gif(base.with_suffix(".gif"), tracks_animation(later, [("ARFM prediction", full, None)]))
    with atomic_path(base.with_suffix(".npz")) as tmp:
        np.savez_compressed(tmp, frames=cond, tracks=future, observed=observed, caption=cmd.caption)
    print(f"wrote {base.with_suffix('.png')}, {base.with_suffix('.gif')}, {base.with_suffix('.npz')}")


if __name__ == "__main__":
    main()
