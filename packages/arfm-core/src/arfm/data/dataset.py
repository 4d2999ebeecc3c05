"""The on-disk labelled dataset: writer, lazy reader, manifest and training windows (paper §3.1).

Layout (documented for users in ``docs/data-format.md``)::

    <root>/manifest.json                 clip list with splits (rebuilt by `arfm label`)
    <root>/clips/<clip_id>/frames.npy    uint8   (T, 256, 256, 3)  RGB model frames
                          tracks.npy    float16 (M, T, 2)         pixel (x, y), arfm.coords
                          visible.npy   bool    (M, T)
                          movement.npy  float32 (M,)              summed per-step distance (§4.2)
                          meta.json     fps, caption, source, tracker, queries, ...

A clip directory is written under a temporary name and renamed into place, so a clip either
exists completely or not at all. Arrays are opened memory-mapped: a dataset larger than RAM
trains, each window reading only its own frames and track slice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from arfm.atomic import write_text_atomic
from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.batch import TrackWindow
from arfm.data.subsample import DEFAULT_TEMPERATURE, clip_movement, sample_tracks, summed_distance, visibility_filter

FORMAT_VERSION = 1
CLIPS_DIR = "clips"
MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
_CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ARRAYS = ("frames.npy", "tracks.npy", "visible.npy", "movement.npy")


def check_clip_id(clip_id: str) -> str:
    """Return ``clip_id`` if it is a safe directory name (letters, digits, ``._-``)."""
    if not isinstance(clip_id, str) or not _CLIP_ID.match(clip_id):
        raise ValueError(f"invalid clip id {clip_id!r}: use letters, digits, '.', '_' or '-', not starting with '.'")
    return clip_id


def split_of(clip_id: str, val_fraction: float) -> str:
    """``"val"`` or ``"train"``, a stable function of the id (adding clips never moves others)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    bucket = int(hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "val" if bucket < val_fraction else "train"


def write_clip(
    root: str | Path,
    clip_id: str,
    frames: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray,
    fps: float,
    caption: str = "",
    source: str = "",
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one labelled clip atomically.

    Args:
        root: dataset root.
        clip_id: directory-safe unique id.
        frames: ``(T, S, S, 3)`` uint8 model frames.
        tracks: ``(M, T, 2)`` pixel positions (stored as float16).
        visible: ``(M, T)`` bool.
        fps: frame rate of ``frames``.
        caption: text description (may be empty).
        source: where the clip came from.
        extra: more JSON-able metadata (tracker settings, query layout...).
        overwrite: replace an existing clip of the same id instead of raising.

    Returns:
        The clip directory.

    Raises:
        ValueError: bad shapes, dtypes, non-finite tracks or fps.
        FileExistsError: the clip exists and ``overwrite`` is False.
    """
    check_clip_id(clip_id)
    frames, tracks, visible = np.asarray(frames), np.asarray(tracks), np.asarray(visible)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2] or frames.dtype != np.uint8:
        raise ValueError(f"clip {clip_id}: frames must be (T, S, S, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] < 2:
        raise ValueError(f"clip {clip_id}: needs at least 2 frames, got {frames.shape[0]}")
    if tracks.ndim != 3 or tracks.shape[1:] != (frames.shape[0], 2):
        raise ValueError(f"clip {clip_id}: tracks must be (M, {frames.shape[0]}, 2), got {tracks.shape}")
    if tracks.shape[0] == 0:
        raise ValueError(f"clip {clip_id}: has zero tracks")
    if visible.shape != tracks.shape[:2]:
        raise ValueError(f"clip {clip_id}: visible must be {tracks.shape[:2]}, got {visible.shape}")
    if not np.isfinite(tracks).all() or np.abs(tracks).max() > 6e4:
        raise ValueError(f"clip {clip_id}: tracks contain NaN/Inf or values beyond float16 range")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"clip {clip_id}: fps must be a positive number, got {fps}")
    clips = Path(root) / CLIPS_DIR
    final = clips / clip_id
    if final.exists() and not overwrite:
        raise FileExistsError(f"clip {clip_id} already exists at {final}")
    clips.mkdir(parents=True, exist_ok=True)
    partial = clips / f"{PARTIAL_PREFIX}{clip_id}-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        tracks16 = tracks.astype(np.float16)
        np.save(partial / "frames.npy", np.ascontiguousarray(frames))
        np.save(partial / "tracks.npy", tracks16)
        np.save(partial / "visible.npy", visible.astype(bool))
        np.save(partial / "movement.npy", summed_distance(tracks16.astype(np.float32)).astype(np.float32))
        meta = {
            "format_version": FORMAT_VERSION,
            "clip_id": clip_id,
            "source": str(source),
            "fps": float(fps),
            "caption": str(caption),
            "num_frames": int(frames.shape[0]),
            "num_tracks": int(tracks.shape[0]),
            "frame_size": int(frames.shape[1]),
            "mean_visibility": float(visible.mean()),
            **(extra or {}),
        }
        (partial / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if final.exists():  # overwrite: move the old clip aside first, rename can't replace a full dir
            trash = clips / f"{PARTIAL_PREFIX}{clip_id}-old-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            os.rename(partial, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def remove_partial_clips(root: str | Path) -> list[str]:
    """Delete leftovers of interrupted writes (``clips/.partial-*``); return their names."""
    clips = Path(root) / CLIPS_DIR
    removed = []
    if clips.is_dir():
        for path in sorted(clips.glob(f"{PARTIAL_PREFIX}*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def clip_exists(root: str | Path, clip_id: str) -> bool:
    """Whether a complete clip of this id is on disk (its directory holds ``meta.json``)."""
    return (Path(root) / CLIPS_DIR / clip_id / "meta.json").is_file()


def _read_meta(clip_dir: Path) -> dict:
    meta_path = clip_dir / "meta.json"
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"labelled clip {clip_dir} has no meta.json (incomplete or not a clip)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"labelled clip metadata {meta_path} is corrupt: {exc}") from exc


def scan_clips(root: str | Path, val_fraction: float = 0.0) -> list[dict]:
    """Manifest entries for every complete clip under ``root/clips``, sorted by id."""
    clips = Path(root) / CLIPS_DIR
    entries = []
    if clips.is_dir():
        for clip_dir in sorted(p for p in clips.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (clip_dir / "meta.json").is_file():
                continue
            meta = _read_meta(clip_dir)
            keys = ("clip_id", "num_frames", "num_tracks", "fps", "caption", "source", "mean_visibility")
            entry = {k: meta.get(k) for k in keys}
            entry["split"] = meta.get("split") or split_of(clip_dir.name, val_fraction)
            entries.append(entry)
    return entries


def write_manifest(root: str | Path, val_fraction: float = 0.0, extra: dict[str, Any] | None = None) -> dict:
    """Rebuild ``root/manifest.json`` from the clip directories (atomically); return it."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "frame_size": MODEL_FRAME_SIZE,
        "val_fraction": val_fraction,
        "clips": scan_clips(root, val_fraction),
        **(extra or {}),
    }
    write_text_atomic(Path(root) / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


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
                raise ValueError(f"manifest {manifest_path} is corrupt ({exc}); rebuild it with arfm.data.dataset.write_manifest") from exc
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
        for name in _ARRAYS:
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
        meta = _read_meta(self.clip_dir(key))
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
