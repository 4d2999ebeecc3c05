"""The labelled dataset's lazy reader and training windows (paper §3.1).

The format and its writer live in :mod:`arfm.data.clip_store` (``docs/data-format.md`` for
users). Arrays are opened memory-mapped: a dataset larger than RAM trains, each window
reading only its own frames and track slice.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.batch import TrackWindow
from arfm.data.clip_store import MANIFEST, TRACK_ARRAYS, clip_path, read_manifest, read_meta, scan_clips
from arfm.data.frame_codec import EncodedFrames, open_frames
from arfm.data.subsample import DEFAULT_TEMPERATURE, clip_movement, sample_tracks, summed_distance, visibility_filter

TRACK_RANGE = (-4.0 * MODEL_FRAME_SIZE, 5.0 * MODEL_FRAME_SIZE)
"""Track positions accepted in a labelled clip (pixels): points may leave the frame (and drift
while invisible), but not by more than four frame sizes; beyond that it is a labelling or unit
error (e.g. positions in a 4K video's pixels, or 60000 px from a float16 overflow)."""

BadClipPolicy = Literal["error", "skip"]


def clip_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why a clip's arrays cannot be trained or evaluated on, or ``None`` if they can.

    Checks that visibility is stored as bool (a float mask would be thresholded silently), that
    every track position is finite and within :data:`TRACK_RANGE`.
    """
    visible, tracks = arrays["visible"], arrays["tracks"]
    if visible.dtype != np.bool_:
        return f"visible.npy holds {visible.dtype}, not bool"
    values = np.asarray(tracks, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        return f"{int(bad.any(axis=-1).sum())} track positions are NaN or Inf"
    if values.size and (values.min() < TRACK_RANGE[0] or values.max() > TRACK_RANGE[1]):
        return f"track positions reach [{values.min():.0f}, {values.max():.0f}] px, outside [{TRACK_RANGE[0]:.0f}, {TRACK_RANGE[1]:.0f}] for a {MODEL_FRAME_SIZE} px frame"
    return None


def _check_policy(bad_clips: str) -> None:
    if bad_clips not in ("error", "skip"):
        raise ValueError(f"bad_clips must be 'error' or 'skip', got {bad_clips!r}")


def _report_dropped(what: str, dropped: dict[str, str], total: int) -> None:
    if dropped:
        listing = "; ".join(f"{clip_id}: {reason}" for clip_id, reason in dropped.items())
        warnings.warn(f"{what}: left out {len(dropped)} of {total} clips ({listing})", stacklevel=3)


@dataclass
class LabelledClip:
    """One pseudo-labelled clip.

    Attributes:
        clip_id: unique id (its directory name).
        frames: ``(T, 256, 256, 3)`` uint8, read on access: memory-mapped raw frames, or an
            :class:`~arfm.data.frame_codec.EncodedFrames` that decodes the frames indexed.
        tracks: ``(M, T, 2)`` float32 pixel positions.
        visible: ``(M, T)`` bool.
        fps: frame rate.
        caption: text description (may be empty).
        source: the original video / episode range.
    """

    clip_id: str
    frames: np.ndarray | EncodedFrames
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
        if manifest_path.is_file():  # validated: a clip id like '../x' must not lead outside the root
            entries = read_manifest(self.root)
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
        """Directory of a clip (inside its shard for a dataset labelled in shards)."""
        return clip_path(self.root, self.entries[self._resolve(key)])

    def open_arrays(self, key: int | str) -> dict[str, np.ndarray]:
        """Memory-mapped ``tracks`` (float16), ``visible`` and ``movement`` of a clip, and its
        ``frames``: memory-mapped (``frames.npy``) or decoded on indexing (``frames.mp4``)."""
        clip_dir = self.clip_dir(key)
        arrays = {}
        for name in TRACK_ARRAYS:
            path = clip_dir / name
            try:
                arrays[name[:-4]] = np.load(path, mmap_mode="r")
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"labelled clip file {path} is missing") from exc
            except ValueError as exc:
                raise ValueError(f"labelled clip file {path} is corrupt: {exc}") from exc
        num_tracks, num_frames = arrays["visible"].shape
        arrays["frames"] = open_frames(clip_dir, num_frames, MODEL_FRAME_SIZE)
        if arrays["tracks"].shape != (num_tracks, num_frames, 2) or arrays["frames"].shape[0] != num_frames:
            raise ValueError(f"labelled clip {clip_dir} has inconsistent array shapes")
        return arrays

    def load_clip(self, key: int | str) -> LabelledClip:
        """Load a clip: frames stay memory-mapped, tracks are converted to float32.

        Raises:
            ValueError: naming the clip, if its arrays fail :func:`clip_problem`.
        """
        arrays = self.open_arrays(key)
        problem = clip_problem(arrays)
        if problem is not None:
            raise ValueError(f"labelled clip {self.clip_dir(key)}: {problem}")
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
    """Open a labelled dataset for reading (all clips by default): a dataset root (plain or
    labelled in shards), or a folder of tar shards (:mod:`arfm.data.tar_shards`)."""
    from arfm.data.tar_shards import TarShardDataset, is_tar_shard_set  # it builds on this module

    return TarShardDataset(root, split) if is_tar_shard_set(root) else LabelledDataset(root, split)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``(F, H, W, 3)`` uint8 -> ``(F, 3, H, W)`` float32 in ``[0, 1]``."""
    # np.array copies out of the read-only memory map (torch wants writable memory)
    return torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)


class LabelledTrackDataset(torch.utils.data.Dataset):
    """Random training windows from a labelled dataset (paper §3.1).

    Every window has ``max_cond_frames + horizon`` track positions, so windows collate. Clips
    shorter than that, or with no visible track point, are left out; so are clips that fail
    :func:`clip_problem` (NaN, out-of-range positions, non-bool visibility) when
    ``bad_clips="skip"``, while ``"error"`` (the default) stops at once naming the clip. Every
    clip left out is listed in :attr:`dropped` with the reason, and in one warning.

    Per window: a uniform random start, ``L_c`` uniform in ``[1, max_cond_frames]``
    conditioning frames (the first ``L_c`` frames of the window), then
    the §3.1 sub-sampling of ``num_points`` tracks (:func:`arfm.data.subsample.sample_tracks`)
    with the future frames being the window frames after the conditioning ones. With
    ``L_c = max_cond_frames`` exactly ``horizon`` future steps follow; fewer conditioning
    frames leave more.

    One item per eligible clip and epoch. Draws are reproducible. In training the loop calls
    :meth:`set_epoch` and item ``i`` of epoch ``e`` is a pure function of ``(seed, i, e)``, so
    neither DataLoader workers nor batches loaded ahead and then discarded (an interrupted
    run) change later windows. Without an epoch, item ``i``'s ``k``-th draw in a process uses
    ``(seed, i, k)`` (in DataLoader workers the worker's seed is mixed in); those counters and
    the epoch are the dataset's state (:meth:`state_dict`), saved with training checkpoints.

    Args:
        root: dataset root written by ``arfm label``.
        split: ``"train"``, ``"val"`` or ``"all"``.
        num_points: ``N`` tracks per window (paper 100).
        horizon: future steps after the longest conditioning (paper 50).
        max_cond_frames: most conditioning frames ``L_c``.
        temperature: movement softmax temperature, squared pixels.
        seed: base seed.
        bad_clips: ``"error"`` or ``"skip"`` a clip that fails :func:`clip_problem`.

    Attributes:
        dropped: ``{clip_id: reason}`` of the clips left out.
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
        bad_clips: BadClipPolicy = "error",
    ) -> None:
        for name, value in (("num_points", num_points), ("horizon", horizon), ("max_cond_frames", max_cond_frames)):
            if value < 1:
                raise ValueError(f"LabelledTrackDataset {name} must be >= 1, got {value}")
        if temperature <= 0:
            raise ValueError(f"LabelledTrackDataset temperature must be > 0, got {temperature}")
        _check_policy(bad_clips)
        self.data = open_labelled_dataset(root, split)
        self.num_points, self.horizon, self.max_cond_frames = num_points, horizon, max_cond_frames
        self.temperature, self.seed = temperature, seed
        self.window_length = max_cond_frames + horizon
        self.dropped: dict[str, str] = {}
        self.clip_indices: list[int] = []
        for i, entry in enumerate(self.data.entries):
            reason = self._exclusion(i, bad_clips)
            if reason is None:
                self.clip_indices.append(i)
            else:
                self.dropped[entry["clip_id"]] = reason
        if not self.clip_indices:
            reasons = "; ".join(f"{k}: {v}" for k, v in self.dropped.items())
            longest = max(e["num_frames"] for e in self.data.entries)
            raise ValueError(f"no clip in {root} (split {split!r}) can be trained on (the longest has {longest} frames): {reasons}")
        _report_dropped(f"LabelledTrackDataset {root} (split {split!r})", self.dropped, len(self.data))
        self._draws: dict[int, int] = {}
        self.epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Make the windows of this epoch a function of ``(seed, index, epoch)`` (see the class docstring)."""
        self.epoch = int(epoch)

    def _exclusion(self, key: int, bad_clips: BadClipPolicy) -> str | None:
        """Why clip ``key`` is left out (``None``: kept); raises for a bad clip under ``"error"``."""
        entry = self.data.entries[key]
        if entry["num_frames"] < self.window_length:
            return (
                f"{entry['num_frames']} frames, a window needs {self.window_length} "
                f"(max_cond_frames {self.max_cond_frames} + horizon {self.horizon})"
            )
        arrays = self.data.open_arrays(key)
        problem = clip_problem(arrays)
        if problem is not None:
            if bad_clips == "error":
                raise ValueError(f"labelled clip {self.data.clip_dir(key)}: {problem} (skip such clips with bad_clips='skip')")
            return problem
        if not np.asarray(arrays["visible"]).any():
            return "no track point is visible in any frame"
        return None

    def state_dict(self) -> dict:
        """The draw counters (what decides the next windows), with the clip ids they refer to."""
        ids = [self.data.entries[k]["clip_id"] for k in self.clip_indices]
        return {"clip_ids": ids, "epoch": self.epoch, "draws": sorted(self._draws.items())}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. If the clips changed since it was saved, the counters no
        longer mean the same windows: they are reset, with a warning (the run is not exact)."""
        ids = [self.data.entries[k]["clip_id"] for k in self.clip_indices]
        if list(state["clip_ids"]) != ids:
            warnings.warn(
                f"LabelledTrackDataset {self.data.root}: the clips differ from the saved state's "
                f"({len(state['clip_ids'])} saved, {len(ids)} now); the resumed run draws other windows than an uninterrupted one",
                stacklevel=2,
            )
            self._draws = {}
            return
        self._draws = {int(index): int(count) for index, count in state["draws"]}
        self.epoch = state.get("epoch")

    def __len__(self) -> int:
        return len(self.clip_indices)

    def _rng(self, index: int) -> np.random.Generator:
        if self.epoch is not None:
            return np.random.default_rng([self.seed, index, self.epoch, 1])  # the trailing 1 keeps these apart from counted draws
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
    dropped: dict[str, str] | None = None,
    bad_clips: BadClipPolicy = "error",
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
        dropped: if given, receives ``{clip_id: reason}`` for every clip left out (too short, too
            little movement, no visible point, or bad data under ``bad_clips="skip"``), as the
            iteration reaches it, and the caller reports them; if not, a warning lists them
            when the iteration ends.
        bad_clips: ``"error"`` (default: stop, naming the clip) or ``"skip"`` a clip failing
            :func:`clip_problem`.

    Yields:
        ``(clip_id, window)`` with ``window.tracks`` ``(n, horizon + 1, 2)``, ``n <= num_points``.
    """
    if horizon < 1 or num_points < 1 or start < 0:
        raise ValueError(f"eval_windows needs horizon >= 1, num_points >= 1, start >= 0; got {horizon}, {num_points}, {start}")
    _check_policy(bad_clips)
    data = dataset if isinstance(dataset, LabelledDataset) else open_labelled_dataset(dataset)
    left_out: dict[str, str] = {}

    def drop(clip_id: str, reason: str) -> None:
        left_out[clip_id] = reason
        if dropped is not None:
            dropped[clip_id] = reason

    length = horizon + 1
    for index in range(len(data)):
        entry = data.entries[index]
        clip_id = entry["clip_id"]
        if entry["num_frames"] < start + length:
            drop(clip_id, f"{entry['num_frames']} frames, the window needs {start + length} (start {start} + horizon {horizon} + 1)")
            continue
        arrays = data.open_arrays(index)
        problem = clip_problem(arrays)
        if problem is not None:
            if bad_clips == "error":
                raise ValueError(f"labelled clip {data.clip_dir(index)}: {problem} (skip such clips with bad_clips='skip')")
            drop(clip_id, problem)
            continue
        tracks = np.asarray(arrays["tracks"][:, start : start + length], dtype=np.float32)
        visible = np.asarray(arrays["visible"][:, start : start + length], dtype=bool)
        movement = clip_movement(tracks, top_k, num_tracks)
        if movement <= min_movement:
            drop(clip_id, f"movement score {movement:.1f} px <= min_movement {min_movement:g}")
            continue
        seen = np.flatnonzero(visible[:, 0])
        if len(seen) == 0:
            drop(clip_id, f"no track visible on the conditioning frame {start}")
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
        yield clip_id, window
    if dropped is None:
        _report_dropped(f"eval_windows {data.root} (start {start}, horizon {horizon})", left_out, len(data))
