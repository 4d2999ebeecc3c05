"""Find the clips to pseudo-label and their captions (paper §3.1: videos plus descriptions).

Three importers:

- **Folder** (any depth): every ``.mp4/.avi/.webm/.mov/.mkv/.m4v/.gif`` file is a clip, and
  every directory that directly holds ``.jpg/.jpeg/.png`` files but no videos is a clip of
  frames (its subfolders are not searched). Hidden files and folders are ignored.
- **CALVIN**: a dataset root or split folder (see :mod:`arfm.data.calvin`); one clip per
  language-annotated segment, the instruction as caption.
- **LeRobot** (v2.x / v3.0, found by ``meta/info.json``): one clip per episode, its task as
  caption (:mod:`arfm.labelling.lerobot`).

Captions, first match wins: a CSV manifest (``--captions file.csv`` or ``captions.csv`` in the
input root; columns ``path`` and ``caption``, optional ``fps``; ``path`` relative to the input
root, with or without extension), a sidecar ``<name>.json`` (``{"caption": ..., "fps": ...}``),
a sidecar ``<name>.txt`` (or ``caption.txt`` inside a frame folder), then, only when asked, the
file name with ``_``/``-`` turned into spaces.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from arfm.data import calvin
from arfm.data.video import GIF_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ResizeMode, read_video

SourceFormat = Literal["auto", "folder", "calvin", "lerobot"]
CAPTIONS_CSV = "captions.csv"


@dataclass
class ClipSource:
    """One clip to label.

    Attributes:
        clip_id: directory-safe id of the output clip.
        kind: ``"video"`` (file), ``"frames"`` (folder of images) or ``"calvin"`` (segment).
        path: the video file, frame folder, or CALVIN split folder.
        caption: text description ("" when none was found).
        fps: rate from a caption sidecar/CSV (``None``: use the container's or the default).
        segment: the CALVIN segment for ``kind == "calvin"``.
    """

    clip_id: str
    kind: str
    path: Path
    caption: str = ""
    fps: float | None = None
    segment: calvin.CalvinSegment | None = None

    @property
    def source(self) -> str:
        """Human-readable origin stored in the clip's metadata."""
        if self.segment is not None:
            return f"{self.path}/episode_{self.segment.start:07d}..{self.segment.end:07d}.npz"
        return str(self.path)

    def load(
        self,
        resize: ResizeMode = "center_crop",
        max_frames: int = 0,
        frame_stride: int = 1,
        default_fps: float = 30.0,
        camera: calvin.Camera = "rgb_static",
    ) -> tuple[np.ndarray, float, dict]:
        """Decode to model frames.

        Returns:
            ``(frames (T, 256, 256, 3) uint8, fps, info)`` where ``info`` records the transform
            and, for a video that ends before its container's frame count, ``cut_short``.
        """
        if self.segment is not None:
            frames = calvin.load_segment_frames(self.segment, camera=camera)
            fps = calvin.CALVIN_FPS
            if frame_stride > 1:
                frames, fps = frames[::frame_stride], fps / frame_stride
            if max_frames:
                frames = frames[:max_frames]
            return frames, self.fps or fps, {"camera": camera, "resize": "center_crop"}
        clip = read_video(self.path, resize, max_frames=max_frames, frame_stride=frame_stride, default_fps=default_fps)
        fps = self.fps / frame_stride if self.fps else clip.fps
        info = {"resize": resize, "original_size": list(clip.original_size), "frame_stride": frame_stride}
        if clip.warning:  # kept in meta.json and the manifest, so a short clip is never silent
            info["cut_short"] = {"decoded_frames": clip.decoded_frames, "expected_frames": clip.expected_frames, "reason": clip.warning}
        return clip.frames, fps, info


@dataclass
class Discovery:
    """What :func:`discover_sources` found: the clips and any problems with captions."""

    sources: list[ClipSource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    format: str = "folder"


_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def clip_id_for(relative: Path) -> str:
    """Directory-safe id of the clip at ``relative`` (path under the input root, with extension).

    Folders are joined with ``__`` and the extension is kept, so ``clip.gif`` and ``clip.mp4``
    differ. When that text is not an exact, reversible spelling of the path (characters other
    than letters, digits and ``._-``, a ``__`` of its own, a leading symbol), it is sanitised and
    8 hex digits of the path's SHA-1 are appended: ``a b.mp4``, ``a+b.mp4`` and ``a_b.mp4`` get
    three ids. An id depends on its own path only, never on which other clips exist, so it is
    the same on every run and adding a file never renames another clip.
    """
    parts = relative.as_posix().split("/")
    text = "__".join(parts)
    if all(_ID_PART.match(part) and "__" not in part for part in parts):
        return text
    digest = hashlib.sha1(relative.as_posix().encode("utf-8")).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:80] or "clip"
    return f"{cleaned if cleaned[0].isalnum() else 'c' + cleaned}-{digest}"


def _read_captions_csv(path: Path) -> dict[str, tuple[str, float | None]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
                raise ValueError(f"caption CSV {path} needs the columns 'path' and 'caption', got {reader.fieldnames}")
            table = {}
            for line, row in enumerate(reader, start=2):
                fps_text = (row.get("fps") or "").strip()
                try:
                    fps = float(fps_text) if fps_text else None
                except ValueError as exc:
                    raise ValueError(f"caption CSV {path} line {line}: fps {fps_text!r} is not a number") from exc
                key = (row["path"] or "").strip().replace("\\", "/")
                table[key] = ((row["caption"] or "").strip(), fps)
            return table
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"caption CSV {path} is unreadable: {exc}") from exc


def _sidecar(path: Path, warnings: list[str]) -> tuple[str | None, float | None]:
    stem = path.parent / path.stem if path.is_file() else path
    candidates_json = [stem.with_name(stem.name + ".json")]
    candidates_txt = [stem.with_name(stem.name + ".txt")]
    if path.is_dir():
        candidates_txt.append(path / "caption.txt")
    for candidate in candidates_json:
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                fps = data.get("fps")
                return (str(data["caption"]) if "caption" in data else None), (float(fps) if fps else None)
            except (ValueError, TypeError, OSError, UnicodeDecodeError) as exc:
                warnings.append(f"caption sidecar {candidate} ignored: {exc}")
    for candidate in candidates_txt:
        if candidate.is_file():
            try:
                return candidate.read_text(encoding="utf-8").strip(), None
            except (OSError, UnicodeDecodeError) as exc:
                warnings.append(f"caption sidecar {candidate} ignored: {exc}")
    return None, None


def _caption_from_name(path: Path) -> str:
    return re.sub(r"[_\-]+", " ", path.stem if path.is_file() else path.name).strip()


def _walk(root: Path, warnings: list[str], seen: set[Path] | None = None) -> list[tuple[str, Path]]:
    """``(kind, path)`` of every clip under ``root``, in sorted order.

    Symbolic links are followed, but every real folder and file is visited once (``seen`` holds
    resolved paths), and a link to a folder that contains the one being searched (``self -> .``,
    ``up -> ..``) is a loop and is skipped: discovery ends, and a clip reachable by two names is
    labelled once, under the first name in sorted order.
    """
    seen = set() if seen is None else seen
    real_root = root.resolve()
    seen.add(real_root)
    found = []
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    videos = [p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS + GIF_EXTENSIONS and not p.is_dir()]
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if images and not videos:
        return [("frames", root)]
    if images:  # e.g. thumbnails beside the videos: the videos are the clips
        warnings.append(f"{len(images)} image files beside videos in {root} ignored (a frame folder holds images only)")
    for path in entries:
        if path.is_dir():
            real = path.resolve()
            if real in seen or real in real_root.parents:
                warnings.append(f"{path} ignored: it leads back to {real}, already searched (a symbolic link loop?)")
                continue
            found.extend(_walk(path, warnings, seen))
        elif path in videos:  # broken links included: reading them reports the error
            real = path.resolve()
            if real in seen:
                warnings.append(f"{path} ignored: the same file as a clip already found ({real})")
                continue
            seen.add(real)
            found.append(("video", path))
    return found


def discover_sources(
    input_path: str | Path,
    fmt: SourceFormat = "auto",
    captions_csv: str | Path | None = None,
    caption_from_filename: bool = False,
    camera: str | None = None,
) -> Discovery:
    """List the clips under ``input_path``.

    Args:
        input_path: a folder of videos / frame folders, a single video, or a CALVIN root.
        fmt: ``"auto"`` (CALVIN when its annotation file is found, LeRobot when
            ``meta/info.json`` is, else folder), ``"folder"``, ``"calvin"`` or ``"lerobot"``.
        captions_csv: a CSV of captions (default: ``captions.csv`` in the input folder if present).
        caption_from_filename: caption clips without one by their file name.
        camera: LeRobot video key (default: the first; see :mod:`arfm.labelling.lerobot`).

    Raises:
        FileNotFoundError: ``input_path`` (or the CSV) does not exist.
        ValueError: nothing to label, an unknown format, or a malformed caption CSV.
        arfm.data.calvin.CalvinFormatError: ``fmt="calvin"`` on a folder that is not CALVIN.
    """
    root = Path(input_path)
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    if fmt not in ("auto", "folder", "calvin", "lerobot"):
        raise ValueError(f"unknown input format {fmt!r}: use 'auto', 'folder', 'calvin' or 'lerobot'")
    if fmt == "lerobot" or (fmt == "auto" and root.is_dir() and (root / "meta" / "info.json").is_file()):
        from arfm.labelling.lerobot import discover_lerobot  # here: lerobot.py builds on ClipSource

        return discover_lerobot(root, camera)
    if fmt == "calvin" or (fmt == "auto" and root.is_dir() and calvin.find_calvin_splits(root)):
        sources = [
            ClipSource(clip_id=seg.clip_id, kind="calvin", path=seg.split_dir, caption=seg.instruction, segment=seg)
            for seg in calvin.iter_calvin_segments(root)
        ]
        if not sources:
            raise ValueError(f"CALVIN dataset {root} has no language-annotated segments")
        return Discovery(sources=sources, format="calvin")

    discovery = Discovery(format="folder")
    base = root if root.is_dir() else root.parent
    items = _walk(root, discovery.warnings) if root.is_dir() else [("video", root)]
    if not items:
        raise ValueError(
            f"no clips found in {root}: looked for {VIDEO_EXTENSIONS + GIF_EXTENSIONS} files and folders of {IMAGE_EXTENSIONS} frames"
        )
    csv_path = Path(captions_csv) if captions_csv else (base / CAPTIONS_CSV)
    if captions_csv and not csv_path.is_file():
        raise FileNotFoundError(f"caption CSV {csv_path} does not exist")
    table = _read_captions_csv(csv_path) if csv_path.is_file() else {}
    used_ids: dict[str, Path] = {}
    for kind, path in items:
        relative = path.relative_to(base) if path != base else Path(path.name)
        clip_id = clip_id_for(relative)
        if clip_id in used_ids:  # only a SHA-1 prefix collision can get here
            raise ValueError(f"clips {used_ids[clip_id]} and {path} map to the same clip id {clip_id!r}: rename one of them")
        used_ids[clip_id] = path
        key = relative.as_posix()
        row = table.get(key) or table.get(str(relative.with_suffix("").as_posix())) or table.get(path.name)
        caption, fps = row if row else _sidecar(path, discovery.warnings)
        if caption is None and caption_from_filename:
            caption = _caption_from_name(path)
        discovery.sources.append(ClipSource(clip_id=clip_id, kind=kind, path=path, caption=caption or "", fps=fps))
    return discovery
