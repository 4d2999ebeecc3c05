"""Writes small datasets in CALVIN's real on-disk format for the GR-1 tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EPISODES = ((0, 19), (20, 41))
ANNOTATIONS = ((0, 14, "open_drawer", "open the drawer"), (20, 41, "lift_red_block", "lift the red block"))


def write_fake_calvin(root: Path, static: int = 32, gripper: int = 16, points: int = 5, with_tracks: bool = True) -> Path:
    """CALVIN layout: episode_XXXXXXX.npz per frame, ep_start_end_ids.npy, lang_annotations/auto_lang_ann.npy,
    plus track sidecars tracks/ep_XXXXXXX_XXXXXXX.npz. Frame ``f`` encodes its id: robot_obs[0] = f,
    rel_actions[0] = f / 100, and rgb_static[0, 0, 0] = f, so tests can check which frame was read."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for s, e in EPISODES:
        for f in range(s, e + 1):
            rgb_static = rng.integers(0, 255, (static, static, 3), dtype=np.uint8)
            rgb_static[0, 0, 0] = f
            rgb_gripper = rng.integers(0, 255, (gripper, gripper, 3), dtype=np.uint8)
            robot_obs = np.zeros(15, np.float32)
            robot_obs[0], robot_obs[14] = f / 100.0, 1.0 if (f // 5) % 2 else -1.0
            rel = np.zeros(7, np.float32)
            rel[0], rel[1], rel[6] = f / 100.0, np.sin(f / 3.0), 1.0 if (f // 5) % 2 else -1.0
            np.savez(root / f"episode_{f:07d}.npz", rgb_static=rgb_static, rgb_gripper=rgb_gripper, actions=rel.copy(),
                     rel_actions=rel, robot_obs=robot_obs, scene_obs=np.zeros(24, np.float32),
                     depth_static=np.zeros((static, static), np.float32), depth_gripper=np.zeros((gripper, gripper), np.float32))
        if with_tracks:
            (root / "tracks").mkdir(exist_ok=True)
            t = np.arange(e - s + 1, dtype=np.float32)
            # point i at frame k: x = 10 + 20 i + k (global frame id encoded in the motion), y = 100 + s
            tracks = np.stack([np.stack([10 + 20 * i + t, np.full_like(t, 100 + s)], -1) for i in range(points)])
            np.savez(root / "tracks" / f"ep_{s:07d}_{e:07d}.npz", tracks=tracks, visible=np.ones(tracks.shape[:2], bool),
                     frame_size=np.array([200, 200]))
    np.save(root / "ep_start_end_ids.npy", np.array(EPISODES))
    (root / "lang_annotations").mkdir(exist_ok=True)
    ann = {"info": {"episodes": [], "indx": [(s, e) for s, e, _, _ in ANNOTATIONS]},
           "language": {"ann": [a[3] for a in ANNOTATIONS], "task": [a[2] for a in ANNOTATIONS],
                        "emb": np.zeros((len(ANNOTATIONS), 1, 384), np.float32)}}
    np.save(root / "lang_annotations" / "auto_lang_ann.npy", ann, allow_pickle=True)
    return root
