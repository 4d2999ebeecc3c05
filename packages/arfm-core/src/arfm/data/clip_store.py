"""Writing the labelled dataset format: atomic clip directories and the manifest (paper §3.1).

Layout (documented for users in ``docs/data-format.md``)::

    <root>/manifest.json                 clip list with splits (rebuilt by `arfm label`)
    <root>/clips/<clip_id>/frames.mp4    H.264 RGB model frames (arfm.data.frame_codec), or
                          frames.npy    uint8   (T, 256, 256, 3)  raw (format 1, frames codec "npy")
                          tracks.npy    float16 (M, T, 2)         pixel (x, y), arfm.coords
                          visible.npy   bool    (M, T)
                          movement.npy  float32 (M,)              summed per-step distance (§4.2)
                          meta.json     fps, caption, source, tracker, queries, ...

A clip directory is written under a temporary name and renamed into place, so a clip either
exists completely or not at all. :mod:`arfm.data.dataset` reads what this module writes.

A dataset labelled in shards (``arfm label --shard i/n``, :mod:`arfm.data.shards`) keeps each
shard as a complete dataset root under ``<root>/shards/<i>-of-<n>/``; the merged
``<root>/manifest.json`` names each clip's shard in its entry (``"shard"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from arfm.atomic import write_text_atomic
from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.frame_codec import FramesCodec, encode_frames, frames_file
from arfm.data.subsample import summed_distance

FORMAT_VERSION = 2
"""1: frames.npy only. 2: frames.npy or frames.mp4 (``meta.json["frames"]`` says which), shards."""
CLIPS_DIR = "clips"
SHARDS_DIR = "shards"
MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
_CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TRACK_ARRAYS = ("tracks.npy", "visible.npy", "movement.npy")
"""The per-track arrays of a clip (memory-mapped by readers); frames are separate (frame_codec)."""


def check_clip_id(clip_id: str) -> str:
    """Return ``clip_id`` if it is a safe directory name (letters, digits, ``._-``)."""
    if not isinstance(clip_id, str) or not _CLIP_ID.fullmatch(clip_id):
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
    frames_codec: FramesCodec = "npy",
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
        frames_codec: ``"npy"`` (raw, exact; the default for library callers), ``"h264"``
            (near-lossless, about 21 times smaller; what ``arfm label`` writes) or
            ``"h264-lossless"`` (exact, about 4 times smaller); see :mod:`arfm.data.frame_codec`.

    Returns:
        The clip directory.

    Raises:
        ValueError: bad shapes, dtypes, non-finite tracks or fps.
        FileExistsError: the clip exists and ``overwrite`` is False.
    """
    check_clip_id(clip_id)
    frames_file(frames_codec)  # an unknown codec fails before anything is written
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
        frames_info = encode_frames(partial / frames_file(frames_codec), frames, frames_codec)
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
            "frames": frames_info,
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


def read_meta(clip_dir: Path) -> dict:
    meta_path = clip_dir / "meta.json"
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"labelled clip {clip_dir} has no meta.json (incomplete or not a clip)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"labelled clip metadata {meta_path} is corrupt: {exc}") from exc


def clip_path(root: str | Path, entry: dict) -> Path:
    """The directory of a manifest entry's clip: ``clips/<id>`` or ``shards/<shard>/clips/<id>``."""
    shard = entry.get("shard")
    if shard:
        return Path(root) / SHARDS_DIR / shard / CLIPS_DIR / entry["clip_id"]
    return Path(root) / CLIPS_DIR / entry["clip_id"]


def shard_dirs(root: str | Path) -> list[Path]:
    """The shard roots under ``root/shards`` (sorted; empty for an unsharded dataset)."""
    shards = Path(root) / SHARDS_DIR
    if not shards.is_dir():
        return []
    return sorted(p for p in shards.iterdir() if p.is_dir() and _CLIP_ID.fullmatch(p.name))


def scan_clips(root: str | Path, val_fraction: float = 0.0) -> list[dict]:
    """Manifest entries for every complete clip under ``root/clips`` and, for a sharded dataset,
    under every ``root/shards/<shard>/clips`` (entries then carry ``"shard"``), sorted by id."""
    entries = _scan_flat(root, val_fraction)
    for shard in shard_dirs(root):
        entries += [{**entry, "shard": shard.name} for entry in _scan_flat(shard, val_fraction)]
    return sorted(entries, key=lambda e: e["clip_id"])


def _scan_flat(root: str | Path, val_fraction: float) -> list[dict]:
    clips = Path(root) / CLIPS_DIR
    entries = []
    if clips.is_dir():
        for clip_dir in sorted(p for p in clips.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (clip_dir / "meta.json").is_file():
                continue
            meta = read_meta(clip_dir)
            keys = ("clip_id", "num_frames", "num_tracks", "fps", "caption", "source", "mean_visibility")
            entry = {k: meta.get(k) for k in keys}
            entry["split"] = meta.get("split") or split_of(clip_dir.name, val_fraction)
            if meta.get("cut_short"):  # the source video ended before its announced frame count
                entry["cut_short"] = meta["cut_short"]
            entries.append(entry)
    return entries


def read_manifest(root: str | Path) -> list[dict]:
    """The clip entries of ``root/manifest.json``, validated before any path is built from them.

    Every ``clip_id`` must be a plain directory name (:func:`check_clip_id`): an id such as
    ``../../etc`` or ``/home/x`` in an edited or foreign manifest would otherwise make readers
    open files outside the dataset root.

    Raises:
        FileNotFoundError: no manifest.
        ValueError: corrupt JSON, a malformed entry, or an unsafe or repeated clip id (named).
    """
    path = Path(root) / MANIFEST
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["clips"]
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"manifest {path} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"manifest {path} is corrupt ({exc}); rebuild it with arfm.data.clip_store.write_manifest") from exc
    if not isinstance(entries, list):
        raise ValueError(f"manifest {path}: 'clips' must be a list, got {type(entries).__name__}")
    seen = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "clip_id" not in entry:
            raise ValueError(f"manifest {path}: clip entry {index} is not an object with a 'clip_id'")
        try:
            check_clip_id(entry["clip_id"])
        except ValueError as exc:
            raise ValueError(f"manifest {path}: clip entry {index}: {exc} (a clip id is a directory name inside {CLIPS_DIR}/)") from None
        shard = entry.get("shard")
        if shard is not None and not (isinstance(shard, str) and _CLIP_ID.fullmatch(shard)):
            raise ValueError(f"manifest {path}: clip entry {index}: invalid shard {shard!r} (a shard is a directory name inside {SHARDS_DIR}/)")
        if entry["clip_id"] in seen:
            raise ValueError(f"manifest {path}: clip id {entry['clip_id']!r} appears twice")
        seen.add(entry["clip_id"])
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
