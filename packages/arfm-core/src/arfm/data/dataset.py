"""The labelled dataset's lazy reader and training windows (paper §3.1).

The format and its writer live in :mod:`arfm.data.clip_store` (``docs/data-format.md`` for
users). Arrays are opened memory-mapped: a dataset larger than RAM trains, each window
reading only its own frames and track slice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from arfm.data.batch import TrackWindow
from arfm.data.clip_store import ARRAYS, CLIPS_DIR, MANIFEST, read_meta, scan_clips
from arfm.data.subsample import DEFAULT_TEMPERATURE, clip_movement, sample_tracks, summed_distance, visibility_filter

@dataclass
class LabelledClip:
    """One pseudo-labelled clip.

    Attributes:
        clip_id: unique id (its directory name).
        frames: ``(T, 256, 256, 3)`` uint8 (memory-mapped, read on access).
        tracks: ``(M, T, 2)`` float32 pixel positions.
        visible: ``(M, T)`` bool.
        fps: frame rate.
        caption: text description (may be empty).
        source: the original video / episode range.
    """

    clip_id: str
    frames: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    fps: float
    caption: str
    source: str


class LabelledDataset:
    """Lazy reader of a labelled dataset root (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, split: str = "all") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"labelled dataset root {self.root} does not exist (create it with `arfm label`)")
        manifest_path = self.root / MANIFEST
        if manifest_path.is_file():
            try:
                entries = json.loads(manifest_path.read_text(encoding="utf-8"))["clips"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"manifest {manifest_path} is corrupt ({exc}); rebuild it with arfm.data.clip_store.write_manifest") from exc
        else:  # an interrupted labelling run: the clip directories are the truth
            entries = scan_clips(self.root)
        if not entries:
            raise ValueError(f"labelled dataset {self.root} holds no clips")
        if split != "all":
            available = sorted({e["split"] for e in entries})
            entries = [e for e in entries if e["split"] == split]
            if not entries:
                raise ValueError(f"labelled dataset {self.root} has no clips in split {split!r}; splits present: {available}")
        self.entries: list[dict] = entries
        self.split = split
        self._index = {e["clip_id"]: i for i, e in enumerate(entries)}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def clip_ids(self) -> list[str]:
        """Ids of the clips, in manifest order."""
        return [e["clip_id"] for e in self.entries]

    def _resolve(self, key: int | str) -> int:
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"no clip {key!r} in labelled dataset {self.root}")
            return self._index[key]
        if not -len(self) <= key < len(self):
            raise IndexError(f"clip index {key} out of range for {len(self)} clips")
        return key % len(self)

    def info(self, key: int | str) -> dict:
        """The manifest entry of a clip (no array is read)."""
        return dict(self.entries[self._resolve(key)])

    def clip_dir(self, key: int | str) -> Path:
        """Directory of a clip."""
        return self.root / CLIPS_DIR / self.entries[self._resolve(key)]["clip_id"]

    def open_arrays(self, key: int | str) -> dict[str, np.ndarray]:
        """Memory-mapped ``frames``, ``tracks`` (float16), ``visible`` and ``movement`` of a clip."""
        clip_dir = self.clip_dir(key)
        arrays = {}
        for name in ARRAYS:
            path = clip_dir / name
            try:
                arrays[name[:-4]] = np.load(path, mmap_mode="r")
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"labelled clip file {path} is missing") from exc
            except ValueError as exc:
                raise ValueError(f"labelled clip file {path} is corrupt: {exc}") from exc
        num_tracks, num_frames = arrays["visible"].shape
        if arrays["tracks"].shape != (num_tracks, num_frames, 2) or arrays["frames"].shape[0] != num_frames:
            raise ValueError(f"labelled clip {clip_dir} has inconsistent array shapes")
        return arrays

    def load_clip(self, key: int | str) -> LabelledClip:
        """Load a clip: frames stay memory-mapped, tracks are converted to float32."""
        arrays = self.open_arrays(key)
        meta = read_meta(self.clip_dir(key))
        return LabelledClip(
            clip_id=meta["clip_id"],
            frames=arrays["frames"],
            tracks=np.asarray(arrays["tracks"], dtype=np.float32),
            visible=np.asarray(arrays["visible"], dtype=bool),
            fps=float(meta["fps"]),
            caption=str(meta.get("caption", "")),
            source=str(meta.get("source", "")),
        )


def open_labelled_dataset(root: str | Path, split: str = "all") -> LabelledDataset:
    """Open a labelled dataset for reading (all clips by default)."""
    return LabelledDataset(root, split)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``(F, H, W, 3)`` uint8 -> ``(F, 3, H, W)`` float32 in ``[0, 1]``."""
    # np.array copies out of the read-only memory map (torch wants writable memory)
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)


class LabelledTrackDataset(torch.utils.data.Dataset):
    """Random training windows from a labelled dataset (paper §3.1).

    Every window has ``max_cond_frames + horizon`` track positions, so windows collate; clips
    shorter than that are left out. Per window: a uniform random start, ``L_c`` uniform in
    ``[1, max_cond_frames]`` conditioning frames (the first ``L_c`` frames of the window), then
    the §3.1 sub-sampling of ``num_points`` tracks (:func:`arfm.data.subsample.sample_tracks`)
    with the future frames being the window frames after the conditioning ones. With
    ``L_c = max_cond_frames`` exactly ``horizon`` future steps follow; fewer conditioning
    frames leave more.

    One item per eligible clip and epoch. Draws are reproducible: item ``i``'s ``k``-th draw
    in a process uses the seed ``(seed, i, k)``; in DataLoader workers the worker's torch
    seed is mixed in, so epochs differ but follow ``torch.manual_seed``.

    Args:
        root: dataset root written by ``arfm label``.
        split: ``"train"``, ``"val"`` or ``"all"``.
        num_points: ``N`` tracks per window (paper 100).
        horizon: future steps after the longest conditioning (paper 50).
        max_cond_frames: most conditioning frames ``L_c``.
        temperature: movement softmax temperature, squared pixels.
        seed: base seed.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_points: int = 100,
        horizon: int = 50,
        max_cond_frames: int = 8,
        temperature: float = DEFAULT_TEMPERATURE,
        seed: int = 0,
    ) -> None:
        for name, value in (("num_points", num_points), ("horizon", horizon), ("max_cond_frames", max_cond_frames)):
            if value < 1:
                raise ValueError(f"LabelledTrackDataset {name} must be >= 1, got {value}")
        if temperature <= 0:
            raise ValueError(f"LabelledTrackDataset temperature must be > 0, got {temperature}")
        self.data = LabelledDataset(root, split)
        self.num_points, self.horizon, self.max_cond_frames = num_points, horizon, max_cond_frames
        self.temperature, self.seed = temperature, seed
        self.window_length = max_cond_frames + horizon
        self.clip_indices = [i for i, e in enumerate(self.data.entries) if e["num_frames"] >= self.window_length]
        if not self.clip_indices:
            longest = max(e["num_frames"] for e in self.data.entries)
            raise ValueError(
                f"no clip in {root} (split {split!r}) has the {self.window_length} frames a window needs "
                f"(max_cond_frames={max_cond_frames} + horizon={horizon}); the longest has {longest}"
            )
        self._draws: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.clip_indices)

    def _rng(self, index: int) -> np.random.Generator:
        draw = self._draws.get(index, 0)
        self._draws[index] = draw + 1
        entropy = [self.seed, index, draw]
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            entropy.append(int(worker.seed) % 2**63)
        return np.random.default_rng(entropy)

    def __getitem__(self, index: int) -> TrackWindow:
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} clips")
        rng = self._rng(index)
        key = self.clip_indices[index]
        entry = self.data.entries[key]
        arrays = self.data.open_arrays(key)
        length = self.window_length
        start = int(rng.integers(0, entry["num_frames"] - length + 1))
        num_cond = int(rng.integers(1, self.max_cond_frames + 1))
        tracks = np.asarray(arrays["tracks"][:, start : start + length], dtype=np.float32)
        visible = np.asarray(arrays["visible"][:, start : start + length], dtype=bool)
        chosen = sample_tracks(tracks, visible, self.num_points, num_cond, rng, self.temperature)
        return TrackWindow(
            frames=frames_to_tensor(arrays["frames"][start : start + num_cond]),
            tracks=torch.from_numpy(tracks[chosen]),
            visible=torch.from_numpy(visible[chosen]),
            caption=entry.get("caption") or "",
            meta={"clip_id": entry["clip_id"], "start": start, "fps": entry["fps"], "num_cond_frames": num_cond},
        )


def eval_windows(
    dataset: LabelledDataset | str | Path,
    num_points: int = 100,
    horizon: int = 50,
    min_movement: float = 50.0,
    top_k: int = 100,
    num_tracks: int = 1000,
    start: int = 0,
) -> Iterator[tuple[str, TrackWindow]]:
    """Evaluation windows (paper §4.2): one conditioning frame, ``horizon`` future steps.

    Per clip, deterministically: the window is frames ``start .. start + horizon``; clips too
    short are skipped. The clip is kept when the §4.2 score of the window (mean summed per-step
    distance of the ``top_k`` most moving of the first ``num_tracks`` tracks) exceeds
    ``min_movement``. Points: tracks visible on the conditioning frame, then the §3.1 visibility
    filter on the future frames, then the ``num_points`` with the largest summed distance (ties
    by track index). No randomness: the same dataset always gives the same windows.

    Args:
        dataset: a :class:`LabelledDataset` or its root.
        num_points: points per window (paper 100).
        horizon: future steps (paper 50).
        min_movement: pixel threshold of the clip filter (0 keeps every clip that moves).
        top_k / num_tracks: see :func:`arfm.data.subsample.clip_movement`.
        start: first frame of every window.

    Yields:
        ``(clip_id, window)`` with ``window.tracks`` ``(n, horizon + 1, 2)``, ``n <= num_points``.
    """
    if horizon < 1 or num_points < 1 or start < 0:
        raise ValueError(f"eval_windows needs horizon >= 1, num_points >= 1, start >= 0; got {horizon}, {num_points}, {start}")
    data = dataset if isinstance(dataset, LabelledDataset) else open_labelled_dataset(dataset)
    length = horizon + 1
    for index in range(len(data)):
        entry = data.entries[index]
        if entry["num_frames"] < start + length:
            continue
        arrays = data.open_arrays(index)
        tracks = np.asarray(arrays["tracks"][:, start : start + length], dtype=np.float32)
        visible = np.asarray(arrays["visible"][:, start : start + length], dtype=bool)
        if clip_movement(tracks, top_k, num_tracks) <= min_movement:
            continue
        seen = np.flatnonzero(visible[:, 0])
        if len(seen) == 0:
            continue
        keep = seen[visibility_filter(visible[seen, 1:], num_points)]
        moves = summed_distance(tracks[keep])
        chosen = keep[np.argsort(-moves, kind="stable")[:num_points]]
        window = TrackWindow(
            frames=frames_to_tensor(arrays["frames"][start : start + 1]),
            tracks=torch.from_numpy(tracks[chosen]),
            visible=torch.from_numpy(visible[chosen]),
            caption=entry.get("caption") or "",
            meta={"clip_id": entry["clip_id"], "start": start, "fps": entry["fps"], "track_indices": chosen.tolist()},
        )
        yield entry["clip_id"], window
