"""Import CALVIN episodes as clips: one clip per language-annotated segment (paper §4.2, §4.3).

CALVIN's on-disk format (per split folder, e.g. ``task_ABC_D/training``)::

    episode_0000000.npz ...          one file per frame: rgb_static (200, 200, 3) uint8,
                                     rgb_gripper (84, 84, 3), actions (7,), rel_actions (7,),
                                     robot_obs (15,), scene_obs (24,), ...
    ep_start_end_ids.npy             (K, 2) first and last frame id of each recorded episode
    lang_annotations/auto_lang_ann.npy   pickled dict: {'info': {'indx': [(start, end), ...]},
                                     'language': {'ann': [...], 'task': [...], 'emb': ...}}

Segment ranges are inclusive (``end`` is the last frame), as CALVIN's own loaders read them.
The simulator runs at 30 Hz, which is the fps given to every clip. Frames come from the
static camera by default and are resized to 256 x 256 (they are square).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from arfm.data.video import FrameTransform

CALVIN_FPS = 30.0
"""CALVIN's control and rendering frequency."""

Camera = Literal["rgb_static", "rgb_gripper"]


class CalvinFormatError(ValueError):
    """A CALVIN folder or episode file does not follow the format; the message names the file."""


@dataclass
class CalvinSegment:
    """One annotated segment.

    Attributes:
        split_dir: the split folder holding the episode files.
        start: first frame id (inclusive).
        end: last frame id (inclusive).
        instruction: the language annotation (the clip's caption).
        task: CALVIN's task name.
        index: position in the annotation file.
        episode_bounds: ``ep_start_end_ids.npy`` of the split (``None`` when absent); a segment
            that lies in no recorded episode is rejected when its frames are loaded.
    """

    split_dir: Path
    start: int
    end: int
    instruction: str
    task: str
    index: int
    episode_bounds: np.ndarray | None = None

    @property
    def clip_id(self) -> str:
        # the annotation index keeps ids unique when two instructions share a frame range
        return f"calvin_{self.split_dir.name}_{self.index:05d}_{self.start:07d}-{self.end:07d}"

    def episode_path(self, frame_id: int) -> Path:
        return self.split_dir / f"episode_{frame_id:07d}.npz"


def is_calvin_split(path: str | Path) -> bool:
    """Whether ``path`` is a CALVIN split folder (has ``lang_annotations/auto_lang_ann.npy``)."""
    return (Path(path) / "lang_annotations" / "auto_lang_ann.npy").is_file()


def find_calvin_splits(root: str | Path) -> list[Path]:
    """Split folders of a CALVIN dataset: ``root`` itself, or its ``training``/``validation``."""
    root = Path(root)
    if is_calvin_split(root):
        return [root]
    return [p for p in (root / "training", root / "validation") if is_calvin_split(p)]


def read_annotations(split_dir: str | Path) -> list[CalvinSegment]:
    """Read ``lang_annotations/auto_lang_ann.npy`` of one split.

    Raises:
        CalvinFormatError: missing file, unpicklable content or missing keys.
    """
    split_dir = Path(split_dir)
    path = split_dir / "lang_annotations" / "auto_lang_ann.npy"
    if not path.is_file():
        raise CalvinFormatError(f"CALVIN annotations not found: {path}")
    try:
        # The file is a pickled dict wrapped in a 0-d object array: allow_pickle is required.
        # Only open CALVIN files you trust, as with any pickle.
        ann = np.load(path, allow_pickle=True).item()
        indx = ann["info"]["indx"]
        texts = ann["language"]["ann"]
        tasks = ann["language"].get("task", [""] * len(texts))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
        raise CalvinFormatError(f"CALVIN annotations {path} are unreadable or lack info/indx or language/ann: {exc}") from exc
    if len(indx) != len(texts):
        raise CalvinFormatError(f"CALVIN annotations {path}: {len(indx)} ranges but {len(texts)} instructions")
    bounds = read_episode_bounds(split_dir)
    segments = []
    for i, ((start, end), text) in enumerate(zip(indx, texts)):
        if int(end) < int(start):
            raise CalvinFormatError(f"CALVIN annotations {path}: segment {i} ends ({end}) before it starts ({start})")
        segments.append(CalvinSegment(split_dir, int(start), int(end), str(text), str(tasks[i]) if i < len(tasks) else "", i, bounds))
    return segments


def read_episode_bounds(split_dir: str | Path) -> np.ndarray | None:
    """``ep_start_end_ids.npy`` as ``(K, 2)`` int64, or ``None`` when the file is absent."""
    path = Path(split_dir) / "ep_start_end_ids.npy"
    if not path.is_file():
        return None
    try:
        bounds = np.asarray(np.load(path), dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise CalvinFormatError(f"CALVIN episode bounds {path} are unreadable: {exc}") from exc
    if bounds.ndim != 2 or bounds.shape[1] != 2:
        raise CalvinFormatError(f"CALVIN episode bounds {path} must be (K, 2), got {bounds.shape}")
    return bounds


def check_segment_in_episode(segment: CalvinSegment) -> None:
    """Raise :class:`CalvinFormatError` when a segment straddles recorded episodes."""
    bounds = segment.episode_bounds
    if bounds is None:
        return
    inside = (bounds[:, 0] <= segment.start) & (segment.end <= bounds[:, 1])
    if not inside.any():
        raise CalvinFormatError(
            f"CALVIN segment {segment.start}-{segment.end} of {segment.split_dir} lies in no episode of ep_start_end_ids.npy"
        )


def load_segment_frames(segment: CalvinSegment, camera: Camera = "rgb_static", size: int = 256) -> np.ndarray:
    """Read a segment's frames and resize them to ``size`` x ``size``.

    Returns:
        ``(end - start + 1, size, size, 3)`` uint8.

    Raises:
        CalvinFormatError: a missing or corrupt episode file, or a missing / malformed camera key.
    """
    check_segment_in_episode(segment)
    frames = []
    transform = None
    for frame_id in range(segment.start, segment.end + 1):
        path = segment.episode_path(frame_id)
        try:
            with np.load(path) as episode:
                image = np.asarray(episode[camera])
        except FileNotFoundError as exc:
            raise CalvinFormatError(f"CALVIN episode file missing: {path}") from exc
        except KeyError as exc:
            raise CalvinFormatError(f"CALVIN episode {path} has no {camera!r} array") from exc
        except (OSError, ValueError, EOFError) as exc:
            raise CalvinFormatError(f"CALVIN episode {path} is corrupt: {exc}") from exc
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise CalvinFormatError(f"CALVIN episode {path}: {camera} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if transform is None:
            transform = FrameTransform(width=image.shape[1], height=image.shape[0], mode="center_crop", size=size)
        frames.append(transform(image))
    return np.stack(frames)


def iter_calvin_segments(root: str | Path) -> Iterator[CalvinSegment]:
    """All annotated segments of every split under ``root``.

    Raises:
        CalvinFormatError: ``root`` holds no CALVIN split.
    """
    splits = find_calvin_splits(root)
    if not splits:
        raise CalvinFormatError(
            f"{root} is not a CALVIN dataset: expected lang_annotations/auto_lang_ann.npy in it or in training/ or validation/"
        )
    for split_dir in splits:
        yield from read_annotations(split_dir)
