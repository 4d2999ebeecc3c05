"""CALVIN's on-disk dataset format: writer and reader (paper §4.4; CALVIN, Mees et al. 2022).

A split directory holds:

- ``episode_XXXXXXX.npz``, one per frame (7-digit global frame id), with keys
  ``actions`` (7, absolute TCP pos/euler/gripper), ``rel_actions`` (7, scaled and clipped to
  [-1, 1]), ``robot_obs`` (15), ``scene_obs`` (24), ``rgb_static`` (200, 200, 3) uint8,
  ``rgb_gripper`` (84, 84, 3) uint8, ``depth_static`` (200, 200) float32, ``depth_gripper``
  (84, 84) float32 (CALVIN's tactile keys are not produced by the embedded simulator);
- ``ep_start_end_ids.npy``: (K, 2) int, first and last (inclusive) frame id of each
  continuous recording;
- ``lang_annotations/auto_lang_ann.npy``: ``np.save`` of a dict
  ``{"info": {"episodes": [], "indx": [(start, end), ...]},
  "language": {"ann": [str], "task": [str], "emb": float32 (K, 1, 384)}}``. CALVIN's ``emb``
  are MiniLM sentence embeddings; **ours are not**: :func:`hashed_embedding` is a
  deterministic unit vector seeded by the FNV-1 hash of the text (no model download), so a
  policy must not rely on them carrying meaning beyond identity of the instruction;
- ``scene_info.npy``: ``{"embedded_tabletop": [first_frame, last_frame]}`` (CALVIN stores
  the scene name per frame range the same way);
- ``tracks/ep_<start>_<end>.npz`` sidecars (not part of CALVIN; see
  :mod:`integrations.gr1.sim.tracks`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from integrations.gr1.sim.fnv import fnv1_32
from integrations.gr1.sim.tracks import load_tracks, save_tracks, sidecar_name

FRAME_SHAPES: dict[str, tuple[tuple[int, ...] | None, Any]] = {
    "actions": ((7,), np.float64),
    "rel_actions": ((7,), np.float64),
    "robot_obs": ((15,), np.float64),
    "scene_obs": ((24,), np.float64),
    "rgb_static": (None, np.uint8),
    "rgb_gripper": (None, np.uint8),
    "depth_static": (None, np.float32),
    "depth_gripper": (None, np.float32),
}
"""Keys of a frame file, with their fixed shape (``None``: an image, (H, W, 3) or (H, W)) and dtype."""

EMBEDDING_DIM = 384
LANG_ANN = Path("lang_annotations") / "auto_lang_ann.npy"


def episode_path(root: str | Path, index: int) -> Path:
    """``root / episode_XXXXXXX.npz``."""
    return Path(root) / f"episode_{int(index):07d}.npz"


def hashed_embedding(text: str, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """Deterministic stand-in language embedding: a unit normal vector seeded by FNV-1 32 of ``text``.

    Not CALVIN's MiniLM embedding; equal texts map to equal vectors, different texts to
    nearly orthogonal ones.
    """
    vec = np.random.default_rng(fnv1_32(text)).standard_normal(dim)
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def _check_frame(frame: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, (shape, dtype) in FRAME_SHAPES.items():
        if key not in frame:
            raise KeyError(f"frame lacks key {key!r} (needs {sorted(FRAME_SHAPES)})")
        value = np.asarray(frame[key])
        if shape is not None and value.shape != shape:
            raise ValueError(f"frame[{key!r}] must have shape {shape}, got {value.shape}")
        if shape is None and not (value.ndim == 3 and value.shape[-1] == 3 if key.startswith("rgb") else value.ndim == 2):
            raise ValueError(f"frame[{key!r}] has bad image shape {value.shape}")
        if np.issubdtype(dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"frame[{key!r}] contains NaN or inf")
        out[key] = value.astype(dtype, copy=False)
    return out


def _atomic_save_npy(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, obj, allow_pickle=not isinstance(obj, np.ndarray))
    os.replace(tmp, path)


class CalvinWriter:
    """Streams frames into a CALVIN split directory; :meth:`close` writes the index files.

    Args:
        root: output directory (created).
        compress: ``np.savez_compressed`` frames (smaller; CALVIN's files load either way).
    """

    def __init__(self, root: str | Path, compress: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.compress = compress
        self.next_index = 0
        self._episode_start: int | None = None
        self.episodes: list[tuple[int, int]] = []
        self.annotations: list[tuple[int, int, str, str]] = []

    def write_frame(self, frame: dict[str, np.ndarray]) -> int:
        """Write one frame (keys of :data:`FRAME_SHAPES`); returns its global id."""
        arrays = _check_frame(frame)
        index = self.next_index
        path = episode_path(self.root, index)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            (np.savez_compressed if self.compress else np.savez)(f, **arrays)
        os.replace(tmp, path)
        if self._episode_start is None:
            self._episode_start = index
        self.next_index += 1
        return index

    def end_episode(self) -> tuple[int, int] | None:
        """Close the current continuous recording; returns its (start, end) or ``None`` if empty."""
        if self._episode_start is None:
            return None
        span = (self._episode_start, self.next_index - 1)
        self.episodes.append(span)
        self._episode_start = None
        return span

    def annotate(self, start: int, end: int, task: str, instruction: str,
                 tracks: np.ndarray | None = None, visible: np.ndarray | None = None,
                 frame_size: tuple[int, int] = (200, 200)) -> None:
        """Add a language annotation for frames ``start..end`` (inclusive), with optional tracks."""
        if not 0 <= start <= end < self.next_index:
            raise ValueError(f"annotation {start}..{end} outside the written frames 0..{self.next_index - 1}")
        self.annotations.append((int(start), int(end), task, instruction))
        if tracks is not None:
            if visible is None:
                raise ValueError("annotate: tracks given without visible")
            save_tracks(self.root / "tracks" / sidecar_name(start, end), tracks, visible, frame_size, start, end)

    def close(self) -> None:
        """Write ``ep_start_end_ids.npy``, ``lang_annotations/auto_lang_ann.npy``, ``scene_info.npy``."""
        self.end_episode()
        ids = np.asarray(self.episodes, dtype=np.int64).reshape(-1, 2)
        _atomic_save_npy(self.root / "ep_start_end_ids.npy", ids)
        emb = np.stack([hashed_embedding(a[3])[None] for a in self.annotations]) if self.annotations else \
            np.zeros((0, 1, EMBEDDING_DIM), np.float32)
        lang = {"info": {"episodes": [], "indx": [(a[0], a[1]) for a in self.annotations]},
                "language": {"ann": [a[3] for a in self.annotations], "task": [a[2] for a in self.annotations], "emb": emb}}
        _atomic_save_npy(self.root / LANG_ANN, lang)
        if self.next_index:
            _atomic_save_npy(self.root / "scene_info.npy", {"embedded_tabletop": [0, self.next_index - 1]})


class CalvinEpisodeReader:
    """Reads a CALVIN split directory (real CALVIN data or the embedded simulator's).

    Args:
        root: the split directory (e.g. ``task_D_D/training``).

    Raises:
        FileNotFoundError: ``root``, ``ep_start_end_ids.npy`` or the language annotations are missing.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"CALVIN split directory not found: {self.root}")
        ids_path = self.root / "ep_start_end_ids.npy"
        if not ids_path.is_file():
            raise FileNotFoundError(f"missing {ids_path} (every CALVIN split has ep_start_end_ids.npy)")
        self.episode_ids = np.load(ids_path).astype(np.int64).reshape(-1, 2)
        lang_path = self.root / LANG_ANN
        if not lang_path.is_file():
            raise FileNotFoundError(f"missing {lang_path} (CALVIN's language annotations)")
        try:
            self.lang = np.load(lang_path, allow_pickle=True).item()
            self.lang["info"]["indx"], self.lang["language"]["ann"], self.lang["language"]["task"]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{lang_path} is not a CALVIN annotation dict: {err}") from err

    def frame(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of frame ``index``."""
        path = episode_path(self.root, index)
        if not path.is_file():
            raise FileNotFoundError(f"missing frame file {path}")
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"frame file {path} is not a readable npz: {err}") from err

    def annotations(self) -> list[tuple[int, int, str, str]]:
        """``(start, end, task, instruction)`` per language annotation (inclusive frame ids)."""
        indx, lang = self.lang["info"]["indx"], self.lang["language"]
        return [(int(s), int(e), str(t), str(a)) for (s, e), t, a in zip(indx, lang["task"], lang["ann"])]

    def language_embeddings(self) -> np.ndarray:
        """``(K, 1, 384)`` float32 embeddings aligned with :meth:`annotations`."""
        return np.asarray(self.lang["language"]["emb"], dtype=np.float32)

    def tracks(self, start: int, end: int) -> dict[str, np.ndarray]:
        """The track sidecar of annotation ``start..end`` (see :mod:`integrations.gr1.sim.tracks`)."""
        return load_tracks(self.root / "tracks" / sidecar_name(start, end))

    def __len__(self) -> int:
        """Number of frames covered by ``ep_start_end_ids``."""
        return int(np.sum(self.episode_ids[:, 1] - self.episode_ids[:, 0] + 1)) if len(self.episode_ids) else 0
