"""Pseudo-label clips with a point tracker into a training set (paper §3.1).

For each clip: decode to 256 x 256, place the query points (1000 by default), track them
through the whole clip, and write the clip atomically (:func:`arfm.data.clip_store.write_clip`).
The run is resumable: clips already on disk are skipped and leftovers of an interrupted write
are removed first, so rerunning after a kill gives the same dataset as an uninterrupted run
(queries are seeded per clip from ``seed`` and the clip id, and LK is deterministic).
Unreadable inputs are reported by name and skipped; the manifest is rebuilt at the end.

Frames are stored as near-lossless H.264 by default (``frames_codec``, see
:mod:`arfm.data.frame_codec`). With ``shard="i/n"`` the run labels only its share of the clips
into ``<output>/shards/<i>-of-<n>/`` and the last shard to finish merges the index
(:mod:`arfm.data.shards`), so many processes or machines can label one collection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import tyro
from tqdm import tqdm

from arfm.data.calvin import CalvinFormatError, Camera
from arfm.data.clip_store import CLIPS_DIR, clip_exists, remove_partial_clips, scan_clips, shard_dirs, write_clip, write_manifest
from arfm.data.dataset import LabelledDataset
from arfm.data.frame_codec import FRAMES_CODECS, FramesCodec
from arfm.data.shards import parse_shard, shard_of, shard_root, try_merge_shards
from arfm.data.video import ResizeMode, VideoReadError
from arfm.labelling.lock import OutputLock
from arfm.labelling.sources import ClipSource, Discovery, SourceFormat, discover_sources
from arfm.tracking import PointTracker, build_tracker, make_queries
from arfm.tracking.base import QueryLayout
from arfm.tracking.lk import LKConfig

TrackerName = Literal["lk", "cotracker3", "bootstapir"]


@dataclass
class LabelConfig:
    """Options of ``arfm label <input> <output>``.

    Attributes:
        input: folder of videos / frame folders, a single video, or a CALVIN dataset root.
        output: dataset root to create or complete.
        format: ``auto`` detects CALVIN by its annotation file and LeRobot by ``meta/info.json``;
            ``folder``, ``calvin`` or ``lerobot`` force one.
        tracker: ``lk`` (CPU default), ``cotracker3`` or ``bootstapir`` (need a checkpoint).
        tracker_checkpoint: local weights of a learned tracker.
        device: torch device of a learned tracker (default: CUDA when available).
        num_points: query points per clip (paper: a large number; 1000 as in the §4.2 filter).
        num_query_frames: frames the queries are spread over (evenly spaced, frame 0 first);
            tracks run both ways, so later queries cover content that appears later.
        query_layout: ``grid`` (regular, seeded choice of cells) or ``random``.
        resize: ``center_crop``, ``letterbox`` or ``resize`` to reach 256 x 256.
        max_frames: keep at most this many frames per clip (0 = all).
        frame_stride: keep every n-th frame (the fps is divided accordingly).
        min_frames: clips with fewer frames are skipped.
        default_fps: fps when neither the container nor a caption file gives one.
        captions: CSV of captions (columns path, caption[, fps]); default ``<input>/captions.csv``.
        caption_from_filename: caption clips that have none by their file name.
        calvin_camera: ``rgb_static`` or ``rgb_gripper`` for CALVIN input.
        camera: LeRobot video key to label (default: the first video feature in meta/info.json).
        val_fraction: share of clips put in the ``val`` split (stable hash of the clip id).
        overwrite: relabel clips already present instead of skipping them.
        frames_codec: how frames are stored: ``h264`` (near-lossless, about 21 times smaller than
            raw), ``h264-lossless`` (exact, about 4 times smaller) or ``npy`` (raw arrays).
        shard: ``i/n`` labels only the i-th of n disjoint subsets of the clips (a hash of the
            clip id) into ``<output>/shards/<i>-of-<n>/``; ``env`` takes i and n from ``RANK``
            and ``WORLD_SIZE`` (torchrun, accelerate launch). The last shard to finish merges
            the index; ``arfm label --merge <output>`` merges by hand.
        seed: seed of the query placement.
        lk: settings of the LK tracker.
    """

    input: Annotated[Path, tyro.conf.arg(metavar="INPUT")]
    output: Annotated[Path, tyro.conf.arg(metavar="OUTPUT")]
    format: SourceFormat = "auto"
    tracker: TrackerName = "lk"
    tracker_checkpoint: str | None = None
    device: str | None = None
    num_points: int = 1000
    num_query_frames: int = 4
    query_layout: QueryLayout = "grid"
    resize: ResizeMode = "center_crop"
    max_frames: int = 0
    frame_stride: int = 1
    min_frames: int = 2
    default_fps: float = 30.0
    captions: Path | None = None
    caption_from_filename: bool = False
    calvin_camera: Camera = "rgb_static"
    camera: str | None = None
    val_fraction: float = 0.0
    overwrite: bool = False
    frames_codec: FramesCodec = "h264"
    shard: str | None = None
    seed: int = 0
    lk: LKConfig = field(default_factory=LKConfig)

    def __post_init__(self) -> None:
        checks = [
            (self.num_points >= 1, "num_points", "must be >= 1"),
            (self.num_query_frames >= 1, "num_query_frames", "must be >= 1"),
            (self.max_frames >= 0, "max_frames", "must be >= 0"),
            (self.frame_stride >= 1, "frame_stride", "must be >= 1"),
            (self.min_frames >= 2, "min_frames", "must be >= 2 (a track needs a step)"),
            (self.default_fps > 0, "default_fps", "must be > 0"),
            (0.0 <= self.val_fraction <= 1.0, "val_fraction", "must lie in [0, 1]"),
            (self.tracker in ("lk", "cotracker3", "bootstapir"), "tracker", f"unknown tracker {self.tracker!r}"),
            (self.resize in ("center_crop", "letterbox", "resize"), "resize", f"unknown mode {self.resize!r}"),
            (self.format in ("auto", "folder", "calvin", "lerobot"), "format", f"unknown format {self.format!r}"),
            (self.frames_codec in FRAMES_CODECS, "frames_codec", f"unknown codec {self.frames_codec!r}, use one of {FRAMES_CODECS}"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise ValueError(f"invalid label config field '{name}': {message}")
        if self.shard is not None:
            try:
                parse_shard(self.shard)
            except ValueError as exc:
                raise ValueError(f"invalid label config field 'shard': {exc}") from None
        self.input, self.output = Path(self.input), Path(self.output)
        if self.captions is not None:
            self.captions = Path(self.captions)


@dataclass
class LabelSummary:
    """What a labelling run did."""

    labelled: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    label_seconds: float = 0.0
    dataset_clips: int = 0
    dataset_tracks: int = 0
    mean_visibility: float = float("nan")
    shard: str = ""
    assigned: int = 0
    merged_clips: int | None = None

    def format(self) -> str:
        """A few lines for the terminal."""
        per_clip = self.label_seconds / len(self.labelled) if self.labelled else 0.0
        lines = [
            f"labelled {len(self.labelled)} clips, {len(self.already_present)} already present, {len(self.failed)} failed "
            f"in {self.seconds:.1f} s ({per_clip:.2f} s per labelled clip)",
            f"{'shard ' + self.shard if self.shard else 'dataset'}: {self.dataset_clips} clips, {self.dataset_tracks} tracks, "
            f"mean visibility {self.mean_visibility:.3f}",
        ]
        if self.shard:
            lines.append(
                f"merged all shards: {self.merged_clips} clips in the index" if self.merged_clips is not None
                else "other shards have not finished: the last one merges the index (or run `arfm label --merge OUTPUT`)"
            )
        lines += [f"  skipped {name}: {reason}" for name, reason in self.failed]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def clip_seed(seed: int, clip_id: str) -> int:
    """Per-clip query seed: independent of which other clips exist or their order."""
    return int(hashlib.sha1(f"{seed}:{clip_id}".encode()).hexdigest()[:8], 16)


# Per-clip failures that are reported and skipped; ValueError covers a tracker returning bad
# tracks for one clip (write_clip names the clip), so one bad clip never ends a long run.
_READ_ERRORS = (VideoReadError, CalvinFormatError, cv2.error, OSError, EOFError, ValueError)


def label_clip(source: ClipSource, cfg: LabelConfig, tracker: PointTracker, warnings: list[str] | None = None) -> Path | str:
    """Decode, track and write one clip; return its directory, or a reason it was skipped.

    A video cut mid-stream is labelled with the frames it has; the reason goes to ``warnings``
    and to the clip's ``meta.json`` (``cut_short``), which the manifest repeats.
    """
    frames, fps, info = source.load(cfg.resize, cfg.max_frames, cfg.frame_stride, cfg.default_fps, cfg.calvin_camera)
    if "cut_short" in info and warnings is not None:
        warnings.append(f"{source.clip_id}: {info['cut_short']['reason']}")
    if len(frames) < cfg.min_frames:
        return f"only {len(frames)} frames (min_frames={cfg.min_frames})"
    queries = make_queries(
        cfg.num_points, len(frames), frames.shape[2], cfg.num_query_frames, cfg.query_layout, clip_seed(cfg.seed, source.clip_id)
    )
    tracks, visible = tracker.track(frames, queries)
    extra = {
        "kind": source.kind,
        "tracker": cfg.tracker,
        "tracker_settings": dataclasses.asdict(cfg.lk) if cfg.tracker == "lk" else {"checkpoint": cfg.tracker_checkpoint},
        "queries": {"num_points": cfg.num_points, "num_query_frames": cfg.num_query_frames, "layout": cfg.query_layout, "seed": cfg.seed},
        "query_frames": sorted({int(t) for t in queries[:, 0]}),
        **info,
    }
    return write_clip(
        cfg.output, source.clip_id, frames, tracks, visible, fps, source.caption, source.source, extra,
        overwrite=cfg.overwrite, frames_codec=cfg.frames_codec,
    )


def label_dataset(cfg: LabelConfig, tracker: PointTracker | None = None, progress: bool = True) -> LabelSummary:
    """Label every clip under ``cfg.input`` into ``cfg.output`` (resumable).

    Args:
        cfg: the run's options.
        tracker: use this tracker instead of building ``cfg.tracker``.
        progress: show a tqdm bar over clips.

    Raises:
        FileNotFoundError / ValueError: the input is missing, empty or malformed as a whole.
        OutputInUseError: another labelling process is writing to ``cfg.output``.
    """
    start_time = time.perf_counter()
    discovery = discover_sources(cfg.input, cfg.format, cfg.captions, cfg.caption_from_filename, cfg.camera)
    if cfg.shard is None:
        if shard_dirs(cfg.output):
            raise ValueError(f"output {cfg.output} was labelled in shards: label it with --shard i/n too, or use another output")
        # Held for the whole run: the cleanup below would delete another live run's clips in progress.
        with OutputLock(cfg.output):
            return _label_locked(cfg, discovery, tracker, progress, start_time)
    index, count = parse_shard(cfg.shard)
    if _has_flat_clips(cfg.output):
        raise ValueError(f"output {cfg.output} holds unsharded clips in {CLIPS_DIR}/: label it without --shard, or use another output")
    discovery = dataclasses.replace(discovery, sources=[s for s in discovery.sources if shard_of(s.clip_id, count) == index])
    shard_cfg = dataclasses.replace(cfg, output=shard_root(cfg.output, index, count), shard=None)
    if shard_cfg.device is None and cfg.tracker != "lk" and "LOCAL_RANK" in os.environ:
        shard_cfg.device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per rank under torchrun / accelerate
    with OutputLock(shard_cfg.output):  # shards lock separately: n runs go ahead side by side
        summary = _label_locked(shard_cfg, discovery, tracker, progress, start_time)
    summary.shard, summary.assigned = f"{index}/{count}", len(discovery.sources)
    merged = try_merge_shards(cfg.output)
    summary.merged_clips = None if merged is None else len(merged["clips"])
    return summary


def _has_flat_clips(output: Path) -> bool:
    """Whether ``output/clips`` holds any clip (complete or partial)."""
    clips = output / CLIPS_DIR
    return clips.is_dir() and any(clips.iterdir())


def _labelled_sources(output: Path) -> dict[str, str]:
    """Real source path -> clip id of the clips on disk, so a dataset labelled under another
    id scheme (before ids kept the extension) resumes instead of labelling its clips twice."""
    return {str(Path(e["source"]).resolve()): e["clip_id"] for e in scan_clips(output) if e.get("source")}


def _label_locked(cfg: LabelConfig, discovery: Discovery, tracker: PointTracker | None, progress: bool, start_time: float) -> LabelSummary:
    summary = LabelSummary(warnings=list(discovery.warnings))
    for name in remove_partial_clips(cfg.output):
        summary.warnings.append(f"removed the leftover of an interrupted write: {name}")
    if tracker is None:
        tracker = build_tracker(cfg.tracker, cfg.tracker_checkpoint, cfg.device, cfg.lk)
    on_disk = {} if cfg.overwrite else _labelled_sources(cfg.output)
    bar = tqdm(discovery.sources, desc="labelling", unit="clip", disable=not progress)
    for source in bar:
        bar.set_postfix_str(source.clip_id[-40:])
        if clip_exists(cfg.output, source.clip_id) and not cfg.overwrite:
            summary.already_present.append(source.clip_id)
            continue
        legacy_id = on_disk.get(str(source.path.resolve())) if source.kind in ("video", "frames") else None
        if legacy_id:  # one file, one clip: only plain videos and frame folders can match this way
            summary.already_present.append(legacy_id)
            continue
        clip_start = time.perf_counter()
        try:
            result = label_clip(source, cfg, tracker, summary.warnings)
        except _READ_ERRORS as exc:
            summary.failed.append((source.source, str(exc)))
            continue
        if isinstance(result, str):
            summary.failed.append((source.source, result))
            continue
        summary.label_seconds += time.perf_counter() - clip_start
        summary.labelled.append(source.clip_id)
    bar.close()
    run = {"input": str(cfg.input), "format": discovery.format, "tracker": cfg.tracker, "failed": [list(f) for f in summary.failed]}
    manifest = write_manifest(cfg.output, cfg.val_fraction, extra={"last_run": run})
    entries = manifest["clips"]
    summary.dataset_clips = len(entries)
    summary.dataset_tracks = sum(int(e["num_tracks"]) for e in entries)
    if entries:
        weights = np.array([e["num_tracks"] * e["num_frames"] for e in entries], dtype=np.float64)
        values = np.array([e["mean_visibility"] for e in entries], dtype=np.float64)
        summary.mean_visibility = float((weights * values).sum() / weights.sum())
    summary.seconds = time.perf_counter() - start_time
    return summary


def open_output(cfg: LabelConfig) -> LabelledDataset:
    """The dataset a run wrote (all splits)."""
    return LabelledDataset(cfg.output, "all")
