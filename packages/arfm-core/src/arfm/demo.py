"""The real-clip pipeline demo: real clips -> pseudo-labels -> a tiny ARFM -> predicted tracks, as pictures.

``python -m arfm.demo --out demo_out``. (``make demo`` runs ``experiments/demo.py`` instead: it
needs the simulator, which ``arfm`` may not import, and shows a sim-trained checkpoint on unseen
simulator episodes and held-out real clips.)

1. pseudo-labels every clip of ``../shared/data/videos`` with the LK tracker (``arfm label``;
   resumable, so a second run skips this);
2. trains the ``tiny`` preset on them for a few hundred steps to predict 50 future steps
   from one frame (resumes if a checkpoint is already there);
3. for the evaluation windows of the paper's protocol (one frame, 100 points, 50 steps,
   clips that move), samples future tracks and writes, per clip, a GIF with the prediction
   next to the pseudo-labels over the real future frames, plus one overview PNG;
4. streams one robot clip frame by frame as a controller would (``arfm stream``: LK tracks
   the points, the 16-step horizon is updated at every frame, §3.4) and writes its GIF.

It is a pipeline demo on a few minutes of CPU, not a trained model: expect the tiny model to
capture coarse motion at best. Every window it shows comes from clips it trained on (there are
only 25 clips); use ``arfm label --val-fraction`` and ``arfm eval`` for held-out numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_VIDEOS = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "videos"


@dataclass
class DemoCommand:
    """Label real clips, train a tiny ARFM, and draw its predictions.

    Attributes:
        out: output directory (labelled data, run, pictures).
        videos: folder of input videos (default: ../shared/data/videos beside the checkout).
        steps: training steps of the tiny model.
        train_points: tracks per training window (fewer than predicted keeps CPU training fast;
            the model takes any number of points).
        horizon: future steps predicted (paper: 50).
        num_points: points per predicted clip (paper: 100).
        max_clips: clips drawn.
        stream_horizon: horizon of the streamed clip (paper's robotics setting: 16).
        stream_frames: frames streamed.
        seed: seed of training and sampling.
        threads: torch CPU threads (0 = torch's default). One thread is the safe choice on a
            small or shared machine: more threads than free cores make torch spin.
    """

    out: Path = Path("demo_out")
    videos: Path = DEFAULT_VIDEOS
    steps: int = 300
    train_points: int = 32
    horizon: int = 50
    num_points: int = 100
    max_clips: int = 4
    stream_horizon: int = 16
    stream_frames: int = 40
    seed: int = 0
    threads: int = 1


def run_demo(cmd: DemoCommand) -> list[Path]:
    """Run the three stages; returns the pictures written."""
    from arfm.checkpoint import load_model
    from arfm.config import tiny_model_config, tiny_train_config
    from arfm.data.dataset import LabelledTrackDataset, eval_windows, open_labelled_dataset
    from arfm.labelling.pipeline import LabelConfig, label_dataset
    from arfm.train import run_training
    from arfm.viz import draw_tracks, label, tracks_animation, write_gif, write_png

    if cmd.threads:
        torch.set_num_threads(cmd.threads)
    if not cmd.videos.is_dir():
        raise FileNotFoundError(f"demo videos folder '{cmd.videos}' not found: pass --videos DIR (the shared data lives in ../shared/data/videos)")
    labelled = cmd.out / "labelled"
    print(f"[1/4] pseudo-labelling {cmd.videos} -> {labelled}")
    summary = label_dataset(LabelConfig(input=cmd.videos, output=labelled))
    print(summary.format())

    print(f"[2/4] training the tiny preset for {cmd.steps} steps")
    model_cfg = tiny_model_config(horizon=cmd.horizon)
    train_cfg = tiny_train_config(steps=cmd.steps, batch_size=4, max_cond_frames=1, save_every=max(1, cmd.steps // 3), seed=cmd.seed)
    dataset = LabelledTrackDataset(labelled, split="train", num_points=cmd.train_points, horizon=cmd.horizon, max_cond_frames=1, seed=cmd.seed)
    ckpt = run_training(model_cfg, train_cfg, dataset, cmd.out / "run", resume="auto")

    print("[3/4] predicting from one frame and drawing")
    model = load_model(ckpt)
    data = open_labelled_dataset(labelled)
    pictures, overview = [], []
    generator = torch.Generator().manual_seed(cmd.seed)
    for clip_id, window in eval_windows(data, num_points=cmd.num_points, horizon=cmd.horizon):
        if len(overview) >= cmd.max_clips:
            break
        observed = window.tracks[:, :1]
        future = model.sample(window.frames[None], observed[None], [window.caption], horizon=cmd.horizon, generator=generator)[0, 0]
        pred = torch.cat([observed, future], dim=1).numpy()
        truth, visible = window.tracks.numpy(), window.visible.numpy()
        frames = np.asarray(data.open_arrays(clip_id)["frames"][: cmd.horizon + 1])
        gif = write_gif(cmd.out / f"{clip_id}.gif", tracks_animation(frames, [("ARFM tiny: sample", pred, None), ("pseudo-labels (LK)", truth, visible)]))
        pictures.append(gif)
        first = frames[0]
        overview.append(np.concatenate([label(draw_tracks(first, pred), f"{clip_id[:28]}: ARFM"), label(draw_tracks(first, truth, visible), "pseudo-labels")], axis=1))
        ade = float(np.linalg.norm(pred[:, 1:] - truth[:, 1:], axis=-1)[visible[:, 1:]].mean())
        still = float(np.linalg.norm(truth[:, :1] - truth[:, 1:], axis=-1)[visible[:, 1:]].mean())
        print(f"  {clip_id}: ADE {ade:.1f} px (no-movement {still:.1f} px) -> {gif}")
    if not overview:
        raise RuntimeError(f"no clip of {labelled} is long enough and moves enough for a {cmd.horizon}-step window")
    pictures.append(write_png(cmd.out / "overview.png", np.concatenate(overview, axis=0)))
    pictures.append(stream_one_clip(model, data, cmd))
    print(f"wrote {len(pictures)} pictures to {cmd.out}")
    return pictures


def stream_one_clip(model: torch.nn.Module, data, cmd: DemoCommand) -> Path:
    """Stage 4: the online horizon over the first robot clip (or the first clip), as a GIF."""
    from arfm.online import HorizonPredictor
    from arfm.predict import grid_queries
    from arfm.stream import stream_animation, stream_clip
    from arfm.viz import write_gif

    ids = data.clip_ids
    clip_id = next((c for c in ids if c.startswith("robot")), ids[0])
    frames = np.asarray(data.open_arrays(clip_id)["frames"][: cmd.stream_frames])
    print(f"[4/4] streaming {clip_id} ({len(frames)} frames, horizon {cmd.stream_horizon}, updated every frame)")
    predictor = HorizonPredictor(model, horizon=cmd.stream_horizon, seed=cmd.seed)
    result = stream_clip(predictor, frames, grid_queries(cmd.num_points), data.load_clip(clip_id).caption, progress=False)
    gif = write_gif(cmd.out / f"stream_{clip_id}.gif", stream_animation(frames, result))
    print(f"  median update {np.median(result.latency_ms[1:]):.0f} ms, consistency {result.consistency_px():.2f} px -> {gif}")
    return gif


def main(argv: list[str] | None = None) -> None:
    import tyro

    run_demo(tyro.cli(DemoCommand, args=argv, prog="python -m arfm.demo"))


if __name__ == "__main__":
    main()
