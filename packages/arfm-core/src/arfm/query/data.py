"""Training items for the query-information predictor: one frame, many points, their future.

Each item is a frame and ``M`` points visible on it, with the §3.1 movement of each point's
track over the next ``horizon`` steps and the fraction of those steps it stays visible.
Sources: labelled datasets (``arfm label`` output) and the moving-shapes generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from arfm.data.subsample import track_movement
from arfm.data.synthetic import random_scene, render_frame, scene_tracks
from arfm.query.model import QueryBatch


def query_item(frame: np.ndarray, tracks: np.ndarray, visible: np.ndarray, num_points: int, rng: np.random.Generator) -> QueryBatch:
    """Build an item from a frame ``(H, W, 3)`` uint8 and tracks ``(K, horizon + 1, 2)`` starting on it.

    Points visible on the frame are drawn uniformly (with replacement only if too few).
    """
    candidates = np.flatnonzero(visible[:, 0])
    if len(candidates) == 0:
        raise ValueError("no track is visible on the query frame")
    chosen = rng.choice(candidates, size=num_points, replace=len(candidates) < num_points)
    tr, vis = tracks[chosen], visible[chosen]
    return QueryBatch(
        frames=torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255.0,
        points=torch.from_numpy(tr[:, 0].astype(np.float32)),
        movement=torch.from_numpy(track_movement(tr, vis).astype(np.float32)),
        visible_ratio=torch.from_numpy(vis[:, 1:].mean(axis=1).astype(np.float32)),
    )


class SyntheticQueryDataset(Dataset):
    """Moving-shapes frames: shapes move, the background does not (so the answer is known)."""

    def __init__(self, length: int = 500, horizon: int = 16, points_per_frame: int = 128, seed: int = 0) -> None:
        self.length, self.horizon, self.points, self.seed = length, horizon, points_per_frame, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> QueryBatch:
        rng = np.random.default_rng([self.seed, index, 7])
        scene = random_scene(rng)
        tracks, visible = scene_tracks(scene, 4 * self.points, self.horizon + 1, rng, on_shape_fraction=0.4)
        return query_item(render_frame(scene, 0), tracks, visible, self.points, rng)


class LabelledQueryDataset(Dataset):
    """Frames of a labelled dataset: a random start frame per item, seeded by the item index."""

    def __init__(self, root: str | Path, horizon: int = 50, points_per_frame: int = 256, length: int | None = None, split: str = "train", seed: int = 0) -> None:
        from arfm.data.dataset import open_labelled_dataset

        self.data = open_labelled_dataset(root, split=split)
        self.horizon, self.points, self.seed = horizon, points_per_frame, seed
        self.clips = [i for i in range(len(self.data)) if self.data.info(i)["num_frames"] > horizon]
        if not self.clips:
            raise ValueError(f"no clip of {root} (split {split!r}) is longer than the horizon {horizon}")
        self.length = length or 50 * len(self.clips)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> QueryBatch:
        rng = np.random.default_rng([self.seed, index, 11])
        arrays = self.data.open_arrays(self.clips[index % len(self.clips)])
        num_frames = arrays["frames"].shape[0]
        start = int(rng.integers(0, num_frames - self.horizon))
        window = slice(start, start + self.horizon + 1)
        tracks = np.asarray(arrays["tracks"][:, window], dtype=np.float32)
        visible = np.asarray(arrays["visible"][:, window], dtype=bool)
        return query_item(np.asarray(arrays["frames"][start]), tracks, visible, self.points, rng)
