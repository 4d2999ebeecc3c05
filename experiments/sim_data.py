"""Simulator episodes -> labelled clips with exact tracks (the CALVIN half of Table 1, paper §4.2).

The embedded tabletop (``integrations/gr1/sim``) runs its scripted expert through seeded task
chains; every task segment becomes one labelled clip (:mod:`arfm.data.clip_store` format) whose
tracks are the simulator's exact ground truth instead of tracker pseudo-labels. The 200 x 200
static camera is resized to the 256 x 256 model frame with :class:`arfm.data.video.FrameTransform`
and the tracks go through the same transform, so they stay on the pixels they mark.

Training and held-out data come from disjoint scene seeds; the split is written into each
clip's metadata (``"train"`` or ``"val"``), so one root holds both.

    python experiments/sim_data.py --out data/sim --train-episodes 60 --val-episodes 12
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from arfm.data.clip_store import clip_exists, remove_partial_clips, write_clip, write_manifest
from arfm.data.video import FrameTransform

SIM_FPS = 30.0
"""The tabletop's control rate (CALVIN's)."""


@dataclass
class SimSegment:
    """One expert task segment in model pixels.

    Attributes:
        clip_id: directory-safe id ``sim_s<seed>_e<episode>_t<task index>_<task>``.
        frames: ``(T, 256, 256, 3)`` uint8.
        tracks: ``(N, T, 2)`` float32 exact positions in pixels of the 256 x 256 frame.
        visible: ``(N, T)`` bool.
        caption: the task's instruction.
        task: the task name.
    """

    clip_id: str
    frames: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    caption: str
    task: str


def to_model_frame(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize ``(T, H, W, 3)`` frames to the model frame and move ``(N, T, 2)`` tracks with them.

    A point outside the resized frame is marked invisible (the transform may crop).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if tracks.ndim != 3 or tracks.shape[1:] != (frames.shape[0], 2) or visible.shape != tracks.shape[:2]:
        raise ValueError(f"tracks {tracks.shape} / visible {visible.shape} do not match {frames.shape[0]} frames")
    transform = FrameTransform(width=frames.shape[2], height=frames.shape[1], mode="center_crop")
    out_frames = np.stack([transform(f) for f in frames])
    out_tracks = transform.apply_points(tracks.reshape(-1, 2)).reshape(tracks.shape).astype(np.float32)
    size = out_frames.shape[1]
    inside = np.all((out_tracks >= 0) & (out_tracks < size), axis=-1)
    return out_frames, out_tracks, visible & inside


def simulate(seed: int, episodes: int, tasks_per_episode: int = 5, num_points: int = 256) -> Iterator[SimSegment]:
    """Run the expert through ``episodes`` seeded task chains, yielding every confirmed task.

    Segments are yielded as they finish, so a large export never holds all frames in memory.

    Args:
        seed: seed of the scenes, chains and track points (disjoint seeds = unseen scenes).
        episodes: chains to run.
        tasks_per_episode: tasks per chain.
        num_points: ground-truth tracks per segment (half on moving bodies, half uniform; see
            ``integrations/gr1/sim/README.md``).
    """
    from integrations.gr1.sim import CalvinTabletopEnv, collect_demos, sample_task_chains

    if episodes < 1 or tasks_per_episode < 1 or num_points < 1:
        raise ValueError(f"simulate needs episodes, tasks_per_episode, num_points >= 1; got {episodes}, {tasks_per_episode}, {num_points}")
    chains = sample_task_chains(episodes, seed, tasks_per_episode)
    env = CalvinTabletopEnv(use_relative_actions=True, seed=seed)
    try:
        for e, chain in enumerate(chains):
            env.reset(scene_obs=chain.scene_obs)
            for k, demo in enumerate(collect_demos(env, chain.tasks, num_points=num_points, seed=seed * 100003 + e)):
                raw = np.stack([f["rgb_static"] for f in demo.frames])
                frames, tracks, visible = to_model_frame(raw, demo.tracks, demo.visible)
                clip_id = f"sim_s{seed}_e{e:04d}_t{k}_{demo.task}"
                yield SimSegment(clip_id, frames, tracks, visible, demo.instruction, demo.task)
    finally:
        env.close()


def write_segment(root: str | Path, seg: SimSegment, split: str, seed: int) -> Path:
    """Write one segment as a labelled clip of ``split`` (``"train"`` or ``"val"``)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    extra = {"split": split, "kind": "simulator", "tracker": "ground-truth", "task": seg.task, "sim_seed": seed}
    return write_clip(root, seg.clip_id, seg.frames, seg.tracks, seg.visible, SIM_FPS, seg.caption,
                      source=f"integrations.gr1.sim seed {seed}", extra=extra)


def export(root: str | Path, seed: int, episodes: int, split: str, tasks_per_episode: int = 5, num_points: int = 256) -> list[str]:
    """Simulate and write the segments as labelled clips of ``split``; returns the clip ids written.

    Clips already present are kept (the ids depend only on the seed and position), so an
    interrupted export resumes.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    remove_partial_clips(root)
    written = []
    for seg in simulate(seed, episodes, tasks_per_episode, num_points):
        if not clip_exists(root, seg.clip_id):
            write_segment(root, seg, split, seed)
            written.append(seg.clip_id)
    return written


def build_sim_dataset(root: str | Path, train_episodes: int, val_episodes: int, train_seed: int = 0, val_seed: int = 1000,
                      tasks_per_episode: int = 5, num_points: int = 256) -> dict:
    """Write a train split (seed ``train_seed``) and a held-out split (seed ``val_seed``); return the manifest."""
    if train_seed == val_seed:
        raise ValueError("train_seed and val_seed must differ: held-out episodes come from unseen seeds")
    t0 = time.perf_counter()
    if train_episodes > 0:
        export(root, train_seed, train_episodes, "train", tasks_per_episode, num_points)
    if val_episodes > 0:
        export(root, val_seed, val_episodes, "val", tasks_per_episode, num_points)
    info = {"simulator": {"train_seed": train_seed, "train_episodes": train_episodes, "val_seed": val_seed,
                          "val_episodes": val_episodes, "tasks_per_episode": tasks_per_episode, "num_points": num_points,
                          "seconds": round(time.perf_counter() - t0, 1)}}
    return write_manifest(root, extra=info)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="labelled dataset root")
    parser.add_argument("--train-episodes", type=int, default=60)
    parser.add_argument("--val-episodes", type=int, default=12)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--val-seed", type=int, default=1000)
    parser.add_argument("--tasks-per-episode", type=int, default=5)
    parser.add_argument("--num-points", type=int, default=256)
    args = parser.parse_args(argv)
    manifest = build_sim_dataset(args.out, args.train_episodes, args.val_episodes, args.train_seed, args.val_seed,
                                 args.tasks_per_episode, args.num_points)
    splits = [c["split"] for c in manifest["clips"]]
    print(json.dumps({"train": splits.count("train"), "val": splits.count("val"), **manifest["simulator"]}))


if __name__ == "__main__":
    main()
