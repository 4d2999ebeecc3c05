"""Read LeRobot datasets as clips to pseudo-label (paper §3.1: videos plus descriptions).

One clip per episode, from one camera, captioned by the episode's task text, at the dataset's
fps. Both on-disk layouts are read from the files alone (the ``lerobot`` package is not needed):

- **v2.x** (``codebase_version`` ``v2.0`` / ``v2.1``): ``meta/episodes.jsonl`` lists the
  episodes (``episode_index``, ``tasks``, ``length``); each episode has its own video at
  ``video_path`` (``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``),
  starting at time 0.
- **v3.0**: ``meta/episodes/chunk-*/file-*.parquet`` lists the episodes with, per camera,
  ``videos/<key>/chunk_index``, ``file_index``, ``from_timestamp`` and ``to_timestamp``; several
  episodes share one video (``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``)
  and an episode is the span ``[from_timestamp, to_timestamp)`` of it, reached by seeking.

The caption is the episode's ``tasks`` text; when an episode lists none, its data parquet's
first ``task_index`` is looked up in ``meta/tasks.jsonl`` (v2) or ``meta/tasks.parquet`` (v3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arfm.data.video import FrameTransform, ResizeMode, VideoReadError
from arfm.labelling.sources import ClipSource, Discovery

INFO_FILE = Path("meta") / "info.json"
V2_EPISODES_FILE = Path("meta") / "episodes.jsonl"
V2_TASKS_FILE = Path("meta") / "tasks.jsonl"
V3_EPISODES_DIR = Path("meta") / "episodes"
V3_TASKS_FILE = Path("meta") / "tasks.parquet"


class LeRobotFormatError(ValueError):
    """A LeRobot dataset's metadata is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class LeRobotEpisode:
    """Where one episode's frames are, for one camera.

    Attributes:
        index: ``episode_index``.
        camera: the video key, e.g. ``observation.images.top``.
        task: caption text ("" when the dataset gives none).
        length: frames in the episode (from the episode metadata).
        video: the video file that holds the episode.
        from_timestamp: where the episode starts in ``video`` (s); 0 in v2.
        to_timestamp: where it ends (exclusive, s); ``None`` in v2 (the file's end).
    """

    index: int
    camera: str
    task: str
    length: int
    video: Path
    from_timestamp: float = 0.0
    to_timestamp: float | None = None


def is_lerobot_root(path: str | Path) -> bool:
    """True when ``path`` is a folder holding ``meta/info.json`` (how ``--format auto`` tells)."""
    return (Path(path) / INFO_FILE).is_file()


def read_info(root: str | Path) -> dict:
    """``meta/info.json``, checked for what labelling needs (version, fps, video path, features).

    Raises:
        LeRobotFormatError: the file is missing, not JSON, or lacks or misspells a field.
    """
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise LeRobotFormatError(f"LeRobot dataset {root}: {path} is missing (every LeRobot dataset has meta/info.json)")
    info = _load_json(path)
    if not isinstance(info, dict):
        raise LeRobotFormatError(f"{path} must hold a JSON object")
    version = str(info.get("codebase_version", ""))
    if not (version.startswith("v2.") or version.startswith("v3.")):
        raise LeRobotFormatError(f"{path}: codebase_version {version or None!r} is not supported (v2.x or v3.x)")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or not fps > 0:
        raise LeRobotFormatError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    if not isinstance(info.get("features"), dict):
        raise LeRobotFormatError(f"{path}: 'features' is missing or not an object")
    if not video_keys(info):
        raise LeRobotFormatError(f"{path}: no feature has dtype 'video' (datasets storing images in parquet are not supported)")
    if not isinstance(info.get("video_path"), str):
        raise LeRobotFormatError(f"{path}: 'video_path' template is missing")
    return info


def video_keys(info: dict) -> list[str]:
    """The camera (video) feature keys, in the order ``info.json`` lists them."""
    return [key for key, spec in info.get("features", {}).items() if isinstance(spec, dict) and spec.get("dtype") == "video"]


def list_episodes(root: str | Path, camera: str | None = None) -> list[LeRobotEpisode]:
    """Every episode of the dataset at ``root``, for ``camera`` (default: the first video key).

    Raises:
        LeRobotFormatError: missing or malformed metadata, or an unknown camera (the message
            lists the available ones).
    """
    root = Path(root)
    info = read_info(root)
    keys = video_keys(info)
    camera = camera or keys[0]
    if camera not in keys:
        raise LeRobotFormatError(f"camera {camera!r} is not a video feature of {root / INFO_FILE}: choose one of {keys}")
    rows = _v3_episode_rows(root, camera) if info["codebase_version"].startswith("v3.") else _v2_episode_rows(root)
    episodes = []
    tasks: dict[int, str] | None = None  # read only when an episode lacks its task text
    for row, where in rows:
        index, length = row.get("episode_index"), row.get("length")
        if not isinstance(index, int) or not isinstance(length, int) or length < 1:
            raise LeRobotFormatError(f"{where}: needs an integer 'episode_index' and a positive 'length', got {index!r}, {length!r}")
        listed = row.get("tasks") or []
        task = listed if isinstance(listed, str) else "; ".join(str(t) for t in listed)
        if not task:
            tasks = _task_table(root, info) if tasks is None else tasks
            task = tasks.get(_first_task_index(root, info, row), "")
        if info["codebase_version"].startswith("v3."):
            prefix = f"videos/{camera}/"
            values = [row[prefix + name] for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
            if not all(isinstance(v, (int, float)) for v in values) or not 0 <= values[2] < values[3]:
                raise LeRobotFormatError(f"{where}: camera {camera!r} needs chunk/file indices and 0 <= from_timestamp < to_timestamp, got {values}")
            names = {"video_key": camera, "chunk_index": int(values[0]), "file_index": int(values[1])}
            start, end = float(values[2]), float(values[3])
        else:
            chunk = index // int(info.get("chunks_size", 1000))
            names = {"video_key": camera, "episode_chunk": chunk, "episode_index": index}
            start, end = 0.0, None
        video = root / _fill(info["video_path"], names, root / INFO_FILE, "video_path")
        episodes.append(LeRobotEpisode(index, camera, task, length, video, start, end))
    if not episodes:
        raise LeRobotFormatError(f"LeRobot dataset {root} lists no episodes")
    return sorted(episodes, key=lambda e: e.index)


def decode_episode(
    episode: LeRobotEpisode, fps: float, resize: ResizeMode = "center_crop", max_frames: int = 0, frame_stride: int = 1
) -> tuple[np.ndarray, dict]:
    """Decode one episode's frames with PyAV, seeking to its start in a shared (v3) video.

    A frame belongs to the episode when its timestamp lies in ``[from, to)`` shifted back by half
    a frame (timestamps are rounded in the container); at most ``episode.length`` are kept.

    Returns:
        ``(frames (T, 256, 256, 3) uint8, info)``; ``info`` has ``original_size`` and, when the
        video holds fewer frames than the metadata announces, ``cut_short``.

    Raises:
        VideoReadError: the video is missing or undecodable, or the span holds no frame.
    """
    import av  # a dependency of arfm; imported here so reading metadata does not load FFmpeg

    half = 0.5 / fps
    end = episode.to_timestamp - half if episode.to_timestamp is not None else float("inf")
    frames: list[np.ndarray] = []
    transform, kept, error = None, 0, ""
    try:
        container = av.open(str(episode.video))
    except (av.FFmpegError, OSError) as exc:
        raise VideoReadError(f"cannot open video {episode.video} of episode {episode.index}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise VideoReadError(f"{episode.video} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            if episode.from_timestamp > 0:  # lands on the keyframe at or before the start
                container.seek(int(episode.from_timestamp / stream.time_base), stream=stream, backward=True)
            for position, frame in enumerate(container.decode(stream)):
                time = float(frame.pts * stream.time_base) if frame.pts is not None else position / fps
                if time < episode.from_timestamp - half:
                    continue
                if time >= end or kept >= episode.length:
                    break
                if kept % frame_stride == 0:
                    image = frame.to_ndarray(format="rgb24")
                    if transform is None:
                        transform = FrameTransform(width=image.shape[1], height=image.shape[0], mode=resize)
                    frames.append(transform(image))
                kept += 1
                if max_frames and len(frames) >= max_frames:
                    break
        except (av.FFmpegError, EOFError) as exc:  # corrupt data mid-stream: keep what decoded
            error = f"decoding stopped with an error: {exc}"
    if not frames:
        raise VideoReadError(f"episode {episode.index}: no frame of {episode.video} lies in {_span(episode)}" + (f" ({error})" if error else ""))
    info: dict = {"original_size": [transform.width, transform.height]}
    if not (max_frames and len(frames) >= max_frames) and kept < episode.length:
        reason = f"episode {episode.index} is cut short: {episode.video} holds {kept} of its {episode.length} frames in {_span(episode)}"
        info["cut_short"] = {"decoded_frames": kept, "expected_frames": episode.length, "reason": reason + (f"; {error}" if error else "")}
    return np.stack(frames), info


@dataclass
class LeRobotClipSource(ClipSource):
    """A :class:`ClipSource` for one LeRobot episode (``kind == "lerobot"``).

    Attributes:
        episode: where the episode's frames are; ``fps`` holds the dataset's rate.
    """

    episode: LeRobotEpisode | None = field(default=None)

    @property
    def source(self) -> str:
        """The video, with the episode's time span for a shared (v3) video."""
        if self.episode is None or self.episode.to_timestamp is None:
            return str(self.path)
        return f"{self.path}#t={self.episode.from_timestamp:.6g},{self.episode.to_timestamp:.6g}"

    def load(
        self,
        resize: ResizeMode = "center_crop",
        max_frames: int = 0,
        frame_stride: int = 1,
        default_fps: float = 30.0,
        camera: str = "",
    ) -> tuple[np.ndarray, float, dict]:
        """Decode the episode; the arguments mean what they mean in :meth:`ClipSource.load`
        (``camera`` is ignored: the camera was chosen when the episodes were listed)."""
        if self.episode is None:
            raise ValueError(f"LeRobot clip {self.clip_id} has no episode to load")
        if frame_stride < 1 or max_frames < 0:
            raise ValueError(f"frame_stride must be >= 1 and max_frames >= 0, got {frame_stride}, {max_frames}")
        fps = self.fps or default_fps
        frames, info = decode_episode(self.episode, fps, resize, max_frames, frame_stride)
        info.update(resize=resize, frame_stride=frame_stride, camera=self.episode.camera, episode_index=self.episode.index)
        return frames, fps / frame_stride, info


def discover_lerobot(root: str | Path, camera: str | None = None) -> Discovery:
    """The clips of a LeRobot dataset: one per episode, ids ``<camera>__episode_<index:06d>``.

    Raises:
        LeRobotFormatError: see :func:`list_episodes`.
    """
    root = Path(root)
    info = read_info(root)
    discovery = Discovery(format="lerobot")
    keys = video_keys(info)
    if camera is None and len(keys) > 1:
        discovery.warnings.append(f"LeRobot dataset {root} has cameras {keys}: labelling {keys[0]!r} (choose with --camera)")
    for ep in list_episodes(root, camera):
        clip_id = f"{ep.camera}__episode_{ep.index:06d}"
        source = LeRobotClipSource(clip_id=clip_id, kind="lerobot", path=ep.video, caption=ep.task, fps=float(info["fps"]), episode=ep)
        discovery.sources.append(source)
    return discovery


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LeRobotFormatError(f"{path} is not readable JSON: {exc}") from exc


def _load_jsonl(path: Path) -> list[tuple[dict, str]]:
    """``(row, "file:line")`` of every non-empty line of a JSON-lines file."""
    if not path.is_file():
        raise LeRobotFormatError(f"LeRobot v2 metadata {path} is missing")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LeRobotFormatError(f"{path} is unreadable: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise LeRobotFormatError(f"{path} line {number} is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise LeRobotFormatError(f"{path} line {number} is not a JSON object")
        rows.append((row, f"{path} line {number}"))
    return rows


def _read_parquet(path: Path, columns: list[str] | None = None) -> list[dict]:
    """Rows of a parquet file (only ``columns`` when given), naming the file on any error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if columns is not None:
            missing = [c for c in columns if c not in pq.read_schema(path).names]
            if missing:
                raise LeRobotFormatError(f"{path} lacks the column(s) {missing}")
        return pq.read_table(path, columns=columns).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise LeRobotFormatError(f"{path} is not a readable parquet file: {exc}") from exc


def _v2_episode_rows(root: Path) -> list[tuple[dict, str]]:
    return _load_jsonl(root / V2_EPISODES_FILE)


def _v3_episode_rows(root: Path, camera: str) -> list[tuple[dict, str]]:
    files = sorted((root / V3_EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise LeRobotFormatError(f"LeRobot v3 metadata {root / V3_EPISODES_DIR}/chunk-*/file-*.parquet is missing")
    prefix = f"videos/{camera}/"
    wanted = ["episode_index", "length"] + [prefix + n for n in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    rows = []
    for path in files:
        names = _schema_names(path)
        columns = wanted + (["tasks"] if "tasks" in names else []) + [c for c in ("data/chunk_index", "data/file_index") if c in names]
        rows += [(row, f"{path} episode row {i}") for i, row in enumerate(_read_parquet(path, columns))]
    return rows


def _schema_names(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise LeRobotFormatError(f"{path} is not a readable parquet file: {exc}") from exc


def _task_table(root: Path, info: dict) -> dict[int, str]:
    """``task_index -> task`` from ``meta/tasks.jsonl`` (v2) or ``meta/tasks.parquet`` (v3)."""
    if info["codebase_version"].startswith("v2."):
        return {int(row["task_index"]): str(row["task"]) for row, _ in _load_jsonl(root / V2_TASKS_FILE) if "task_index" in row}
    path = root / V3_TASKS_FILE
    if not path.is_file():
        raise LeRobotFormatError(f"LeRobot v3 metadata {path} is missing")
    names = _schema_names(path)
    # pandas writes the task text as the table's index: a "task" column, or an unnamed index column
    text = "task" if "task" in names else next((n for n in names if n.startswith("__index_level_")), None)
    if text is None or "task_index" not in names:
        raise LeRobotFormatError(f"{path} needs a 'task_index' column and the task text ('task' or the index), got {names}")
    return {int(row["task_index"]): str(row[text]) for row in _read_parquet(path, [text, "task_index"])}


def _first_task_index(root: Path, info: dict, row: dict) -> int:
    """``task_index`` of an episode's first frame in its data parquet (-1 when not found)."""
    template = info.get("data_path")
    if not isinstance(template, str):
        return -1
    index = row["episode_index"]
    if info["codebase_version"].startswith("v2."):
        names = {"episode_chunk": index // int(info.get("chunks_size", 1000)), "episode_index": index}
    else:
        names = {"chunk_index": row.get("data/chunk_index", 0), "file_index": row.get("data/file_index", 0)}
    path = root / _fill(template, names, root / INFO_FILE, "data_path")
    if not path.is_file():
        return -1
    frames = _read_parquet(path, ["episode_index", "task_index"])
    return next((int(f["task_index"]) for f in frames if f["episode_index"] == index), -1)


def _fill(template: str, names: dict, where: Path, field_name: str) -> str:
    try:
        return template.format(**names)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise LeRobotFormatError(f"{where}: '{field_name}' template {template!r} uses an unknown field {exc}") from exc


def _span(episode: LeRobotEpisode) -> str:
    if episode.to_timestamp is None:
        return "the whole file"
    return f"[{episode.from_timestamp:.3f}, {episode.to_timestamp:.3f}) s"
