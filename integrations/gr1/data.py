"""GR-1 training windows over CALVIN's on-disk format plus track sidecars (ARFM paper §4.4).

CALVIN's format (read here with numpy only, so real CALVIN task folders work unchanged):

- ``episode_XXXXXXX.npz`` per frame (7-digit global frame id) with ``rgb_static (200, 200, 3)``,
  ``rgb_gripper (84, 84, 3)`` uint8, ``rel_actions (7)``, ``robot_obs (15)``, ... ;
- ``ep_start_end_ids.npy``: ``(K, 2)`` inclusive frame ranges of the recorded episodes;
- ``lang_annotations/auto_lang_ann.npy``: a pickled dict with ``info.indx`` (inclusive
  ``(start, end)`` per annotation) and ``language.ann`` / ``language.task``.

Track sidecars (ARFM): ``tracks/ep_<start>_<end>.npz`` (7-digit ids, inclusive) with ``tracks``
``(N, end - start + 1, 2)`` float pixels of the static camera, ``visible (N, T)`` bool and
``frame_size (2,)``. The conditioning tracks of frame ``t`` are ``tracks[:, t : t + track_len]``,
padded past the sidecar's last frame by holding the last position.

Each item is one window of ``window`` steps starting inside a language annotation; windows are
full when the annotation is long enough, otherwise padded at the end (``valid`` False). The
video target of step ``t`` is frame ``t + video_offset`` when it is still inside the episode
(``future_valid``).

Reading a window decompresses 10-20 full CALVIN frames; a tiny policy looks at 32-px images, so
``image_size`` resizes the cameras once when a frame is first read (bilinear, antialiased: the
policy's own resize, which then has nothing left to do) and keeps the small frames in memory.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

_SIDECAR = re.compile(r"^ep_(\d{7})_(\d{7})\.npz$")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"CALVIN file missing: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"corrupt CALVIN file {path}: {err}") from err


def load_language_annotations(root: Path) -> list[tuple[int, int, str, str]]:
    """``[(start, end, task, instruction), ...]`` from ``lang_annotations/auto_lang_ann.npy``."""
    path = root / "lang_annotations" / "auto_lang_ann.npy"
    if not path.is_file():
        raise FileNotFoundError(f"CALVIN language annotations missing: {path}")
    try:
        ann = np.load(path, allow_pickle=True).item()
        indx, texts = ann["info"]["indx"], ann["language"]["ann"]
        tasks = ann["language"].get("task", [""] * len(texts))
    except (KeyError, AttributeError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a CALVIN annotation dict ({{'info': {{'indx'}}, 'language': {{'ann'}}}}): {err}") from err
    if not (len(indx) == len(texts) == len(tasks)):
        raise ValueError(f"{path}: {len(indx)} ranges but {len(texts)} instructions / {len(tasks)} tasks")
    return [(int(s), int(e), str(task), str(text)) for (s, e), task, text in zip(indx, tasks, texts)]


@dataclass
class _Sidecar:
    start: int
    end: int
    path: Path


class CalvinWindowDataset(Dataset):
    """Windows of ``window`` steps from a CALVIN-format folder, with future tracks per step.

    Args:
        root: the folder (e.g. CALVIN's ``training/``) holding the episode files.
        window: steps per window (GR-1: 10).
        video_offset: how far ahead the video target lies (GR-1: 3).
        track_len: positions per conditioning track (first = current frame).
        with_tracks: read track sidecars from ``root/tracks`` (error if none cover a frame).
        track_frame_size: expected side of the camera the sidecar tracks are measured in.
        max_points: keep at most this many tracks (evenly spaced, deterministic).
        stride: step between window starts inside an annotation.
        image_size: resize both cameras to this side when a frame is first read and keep the
            resized frames in memory (float in [0, 1] instead of uint8); ``None``: full frames,
            read from disk every time.
    """

    def __init__(
        self, root: str | Path, window: int = 10, video_offset: int = 3, track_len: int = 16, with_tracks: bool = True,
        track_frame_size: int = 200, max_points: int | None = None, stride: int = 1, image_size: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"CALVIN dataset folder not found: {self.root}")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1 or None, got {image_size}")
        self.image_size = image_size
        self._frame_rows: dict[int, int] = {}  # frame id -> row of the resized-frame store
        self._frame_store: dict[str, np.ndarray] = {}
        if window < 1 or stride < 1 or track_len < 2 or video_offset < 1:
            raise ValueError(f"invalid dataset arguments window={window}, stride={stride}, track_len={track_len}, video_offset={video_offset}")
        self.window, self.video_offset, self.track_len = window, video_offset, track_len
        self.with_tracks, self.track_frame_size, self.max_points = with_tracks, track_frame_size, max_points
        ids_path = self.root / "ep_start_end_ids.npy"
        if not ids_path.is_file():
            raise FileNotFoundError(f"CALVIN episode ranges missing: {ids_path}")
        self.episodes = np.asarray(np.load(ids_path), dtype=np.int64).reshape(-1, 2)
        self.annotations = load_language_annotations(self.root)
        if not self.annotations:
            raise ValueError(f"{self.root}: the language annotation file lists no annotations")
        self.sidecars = self._find_sidecars() if with_tracks else []
        self._sidecar_starts = np.array([car.start for car in self.sidecars], dtype=np.int64)
        self.items: list[tuple[int, int]] = []  # (annotation index, window start)
        for a, (s, e, _, _) in enumerate(self.annotations):
            if e < s:
                raise ValueError(f"{self.root}: annotation {a} has end {e} < start {s}")
            self._episode_of(s)  # fails early if an annotation lies outside every episode
            last = max(s, e - window + 1)
            self.items += [(a, t) for t in range(s, last + 1, stride)]
        # Bounded: a full CALVIN split has ~20k annotated segments, too many to keep in memory.
        self._sidecar_cache: OrderedDict[Path, tuple[int, np.ndarray]] = OrderedDict()
        self.sidecar_cache_size = 64

    def _find_sidecars(self) -> list[_Sidecar]:
        folder = self.root / "tracks"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"track sidecar folder missing: {folder}. The embedded simulator writes it (python -m integrations.gr1.sim.generate); "
                f"for a real CALVIN split run `arfm label --format calvin {self.root} LABELLED` and then "
                f"`python -m integrations.gr1.calvin_tracks LABELLED {self.root}` (256-px labelled tracks -> camera-pixel sidecars)")
        found = [_Sidecar(int(m[1]), int(m[2]), p) for p in folder.iterdir() if (m := _SIDECAR.match(p.name))]
        if not found:
            raise FileNotFoundError(f"no track sidecars ep_XXXXXXX_XXXXXXX.npz in {folder}")
        return sorted(found, key=lambda car: car.start)

    def _episode_of(self, frame: int) -> tuple[int, int]:
        hit = np.nonzero((self.episodes[:, 0] <= frame) & (frame <= self.episodes[:, 1]))[0]
        if hit.size == 0:
            raise ValueError(f"{self.root}: frame {frame} lies in no range of ep_start_end_ids.npy")
        s, e = self.episodes[hit[0]]
        return int(s), int(e)

    def _frame(self, frame: int) -> dict[str, np.ndarray]:
        if frame in self._frame_rows:
            row = self._frame_rows[frame]
            return {key: store[row] for key, store in self._frame_store.items()}
        data = _load_npz(self.root / f"episode_{frame:07d}.npz")
        for key in ("rgb_static", "rgb_gripper", "rel_actions", "robot_obs"):
            if key not in data:
                raise ValueError(f"CALVIN frame {self.root / f'episode_{frame:07d}.npz'} lacks key {key!r}")
        if self.image_size is None:
            return data
        small = {key: np.asarray(data[key], dtype=np.float64) for key in ("rel_actions", "robot_obs")}
        for key in ("rgb_static", "rgb_gripper"):
            img = torch.from_numpy(np.ascontiguousarray(data[key])).permute(2, 0, 1)[None].float() / 255.0
            img = F.interpolate(img, size=(self.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
            small[key] = img[0].clamp(0, 1).permute(1, 2, 0).numpy()  # (S, S, 3) float32, HWC like the files
        if not self._frame_store:
            # One preallocated array per key: thousands of small cached arrays between the large
            # temporary ones of each read fragment the heap (measured: ~0.8 MB of RSS per frame).
            frames = int((self.episodes[:, 1] - self.episodes[:, 0] + 1).sum())
            self._frame_store = {key: np.zeros((frames, *value.shape), dtype=value.dtype) for key, value in small.items()}
        row = len(self._frame_rows)
        for key, value in small.items():
            self._frame_store[key][row] = value
        self._frame_rows[frame] = row
        return small

    def _sidecar(self, frame: int) -> tuple[int, np.ndarray]:
        i = int(np.searchsorted(self._sidecar_starts, frame, side="right")) - 1  # last sidecar starting at or before frame
        for car in self.sidecars[max(i, 0) : i + 1]:
            if car.start <= frame <= car.end:
                if car.path in self._sidecar_cache:
                    self._sidecar_cache.move_to_end(car.path)
                else:
                    data = _load_npz(car.path)
                    if "tracks" not in data:
                        raise ValueError(f"track sidecar {car.path} lacks 'tracks'")
                    tracks = data["tracks"].astype(np.float32)
                    if tracks.ndim != 3 or tracks.shape[1:] != (car.end - car.start + 1, 2) or tracks.shape[0] == 0:
                        raise ValueError(f"track sidecar {car.path}: tracks must be (N>0, {car.end - car.start + 1}, 2), got {tracks.shape}")
                    if not np.isfinite(tracks).all():
                        raise ValueError(f"track sidecar {car.path} contains NaN or Inf")
                    size = data.get("frame_size")
                    if size is not None and tuple(np.asarray(size).tolist()) != (self.track_frame_size,) * 2:
                        raise ValueError(f"track sidecar {car.path} is for frames of {tuple(size)}, expected {self.track_frame_size}")
                    if self.max_points is not None and tracks.shape[0] > self.max_points:
                        keep = np.linspace(0, tracks.shape[0] - 1, self.max_points).round().astype(int)
                        tracks = tracks[keep]
                    self._sidecar_cache[car.path] = (car.start, tracks)
                    if len(self._sidecar_cache) > self.sidecar_cache_size:
                        self._sidecar_cache.popitem(last=False)
                return self._sidecar_cache[car.path]
        raise ValueError(f"no track sidecar in {self.root / 'tracks'} covers frame {frame}")

    def future_tracks(self, frame: int) -> np.ndarray:
        """``(N, track_len, 2)`` pixels: the sidecar tracks from ``frame`` on, last position held."""
        start, tracks = self._sidecar(frame)
        idx = np.minimum(np.arange(frame, frame + self.track_len) - start, tracks.shape[1] - 1)
        return tracks[:, idx]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        a, t0 = self.items[index]
        s, e, task, text = self.annotations[a]
        ep_start, ep_end = self._episode_of(t0)
        steps = np.arange(t0, t0 + self.window)
        valid = steps <= min(e, ep_end)
        frames = np.where(valid, steps, t0 + valid.sum() - 1)  # padded steps repeat the last real frame
        future = frames + self.video_offset
        future_valid = valid & (future <= ep_end)
        future = np.where(future_valid, future, frames)
        cache = {int(f): self._frame(int(f)) for f in np.unique(np.concatenate([frames, future]))}

        def stack(key: str, ids: np.ndarray) -> np.ndarray:
            return np.stack([cache[int(f)][key] for f in ids])

        item = {
            "rgb_static": torch.from_numpy(stack("rgb_static", frames)).permute(0, 3, 1, 2).contiguous(),
            "rgb_gripper": torch.from_numpy(stack("rgb_gripper", frames)).permute(0, 3, 1, 2).contiguous(),
            "future_static": torch.from_numpy(stack("rgb_static", future)).permute(0, 3, 1, 2).contiguous(),
            "future_gripper": torch.from_numpy(stack("rgb_gripper", future)).permute(0, 3, 1, 2).contiguous(),
            "robot_obs": torch.from_numpy(stack("robot_obs", frames).astype(np.float32)),
            "actions": torch.from_numpy(stack("rel_actions", frames).astype(np.float32)),
            "valid": torch.from_numpy(valid),
            "future_valid": torch.from_numpy(future_valid),
            "instruction": text,
            "task": task,
        }
        if self.with_tracks:
            item["tracks"] = torch.from_numpy(np.stack([self.future_tracks(int(f)) for f in frames]))  # (T, N, L, 2)
        return item


def collate_gr1(items: list[dict]) -> dict:
    """Stack dataset items; pads the track count ``N`` across the batch (``track_mask``)."""
    if not items:
        raise ValueError("collate_gr1 got an empty list of items")
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if isinstance(items[0][k], torch.Tensor) and k != "tracks"}
    batch["instruction"] = [it["instruction"] for it in items]
    batch["task"] = [it["task"] for it in items]
    if "tracks" in items[0]:
        n = max(it["tracks"].shape[1] for it in items)
        t, _, length, _ = items[0]["tracks"].shape
        tracks = torch.zeros(len(items), t, n, length, 2)
        mask = torch.zeros(len(items), t, n, dtype=torch.bool)
        for i, it in enumerate(items):
            tracks[i, :, : it["tracks"].shape[1]] = it["tracks"]
            mask[i, :, : it["tracks"].shape[1]] = True
        batch["tracks"], batch["track_mask"] = tracks, mask
        batch["has_tracks"] = torch.ones(len(items), dtype=torch.bool)
    return batch
