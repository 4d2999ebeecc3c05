"""Video-generator baselines of Table 1 (LARP, iVideoGPT, Cosmos) as track predictors (paper §4.2).

The paper scores a video generator by running the point tracker used for pseudo-labelling on
the frames it generated, starting from the query points on the conditioning frame. The
generators themselves are not part of this project; ``frames-to-tracks:<dir>`` scores any folder
of videos they produced, one entry per evaluation clip:

- ``<dir>/<clip_id>.<mp4|avi|webm|gif|...>`` — one generated video (deterministic), or
- ``<dir>/<clip_id>/`` — a folder of JPEG/PNG frames (one video), or a folder of video files,
  one per sample (sorted by name; stochastic when ``samples_per_clip > 1``).

An optional ``<dir>/frames_to_tracks.json`` says how the videos were made
(:class:`GeneratedVideoSettings`): whether frame 0 is the conditioning frame (Video2World
outputs include it; otherwise the real conditioning frame is put in front before tracking), a
frame stride to match the clip's frame rate, how frames are brought to 256 x 256, the tracker
name and the samples per clip. Clips are found through the request's ``clip_id``
(:class:`arfm.evaluation.protocol.ClipRequest` carries it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from arfm.coords import MODEL_FRAME_SIZE
from arfm.predictors.base import PredictionRequest, register_predictor
from arfm.tracking.base import PointTracker

SETTINGS_FILE = "frames_to_tracks.json"


@dataclass
class GeneratedVideoSettings:
    """How a folder of generated videos is read.

    Attributes:
        includes_conditioning_frame: frame 0 of each video is the conditioning frame.
        frame_stride: keep every ``frame_stride``-th generated frame (match the clip's rate).
        resize: ``"resize"`` (stretch), ``"center_crop"`` or ``"letterbox"`` to 256 x 256.
        tracker: point tracker name for :func:`arfm.tracking.build_tracker` (use the one the
            pseudo-labels were made with: ``"lk"``, ``"cotracker3"``, ``"bootstapir"``).
        tracker_checkpoint: local weights of a learned tracker.
        samples_per_clip: generated videos per clip (``> 1`` makes the predictor stochastic).
    """

    includes_conditioning_frame: bool = True
    frame_stride: int = 1
    resize: str = "resize"
    tracker: str = "lk"
    tracker_checkpoint: str | None = None
    samples_per_clip: int = 1

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ValueError(f"invalid {SETTINGS_FILE} field 'frame_stride': must be >= 1, got {self.frame_stride}")
        if self.resize not in ("resize", "center_crop", "letterbox"):
            raise ValueError(f"invalid {SETTINGS_FILE} field 'resize': use 'resize', 'center_crop' or 'letterbox', got {self.resize!r}")
        if self.samples_per_clip < 1:
            raise ValueError(f"invalid {SETTINGS_FILE} field 'samples_per_clip': must be >= 1, got {self.samples_per_clip}")

    @classmethod
    def from_folder(cls, folder: Path) -> "GeneratedVideoSettings":
        """Read ``folder/frames_to_tracks.json`` if present, else the defaults."""
        path = folder / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in ``[0, 1]`` -> ``(H, W, 3)`` uint8."""
    return (frame.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


class FramesToTracksPredictor:
    """Track points through generated videos.

    Args:
        folder: the folder of generated videos.
        tracker: a point tracker; by default the one the settings name.
    """

    def __init__(self, folder: str | Path, tracker: PointTracker | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frames-to-tracks: folder of generated videos {str(self.folder)!r} does not exist")
        self.settings = GeneratedVideoSettings.from_folder(self.folder)
        if tracker is None:
            from arfm.tracking import build_tracker

            tracker = build_tracker(self.settings.tracker, checkpoint=self.settings.tracker_checkpoint)
        self.tracker = tracker
        self.stochastic = self.settings.samples_per_clip > 1
        self.max_samples = self.settings.samples_per_clip
        self.name = "frames-to-tracks"

    def sample_paths(self, clip_id: str) -> list[Path]:
        """Generated videos of one clip (one path per sample)."""
        from arfm.data.video import GIF_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # OpenCV only when used

        extensions = VIDEO_EXTENSIONS + GIF_EXTENSIONS
        for suffix in extensions:
            candidate = self.folder / f"{clip_id}{suffix}"
            if candidate.is_file():
                return [candidate]
        folder = self.folder / clip_id
        if folder.is_dir():
            videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in extensions)
            if videos:
                return videos
            if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir()):
                return [folder]
        raise FileNotFoundError(
            f"frames-to-tracks: no generated video for clip {clip_id!r} in {str(self.folder)!r} "
            f"(looked for {clip_id}.<{'|'.join(s.lstrip('.') for s in extensions)}> and a folder {clip_id}/)"
        )

    def _load(self, path: Path, first_frame: np.ndarray, horizon: int) -> np.ndarray:
        """Generated frames at 256 x 256 with the conditioning frame first: ``(horizon + 1, 256, 256, 3)``."""
        from arfm.data.video import FrameTransform, read_video

        clip = read_video(path, frame_stride=self.settings.frame_stride)
        height, width = clip.frames.shape[1:3]
        transform = FrameTransform(width=width, height=height, mode=self.settings.resize, size=first_frame.shape[0])
        frames = np.stack([transform(frame) for frame in clip.frames])
        if not self.settings.includes_conditioning_frame:
            frames = np.concatenate([first_frame[None], frames], axis=0)
        if frames.shape[0] < horizon + 1:
            raise ValueError(
                f"frames-to-tracks: {path} gives {frames.shape[0]} frames (conditioning frame included, "
                f"stride {self.settings.frame_stride}), {horizon + 1} are needed for a horizon of {horizon}"
            )
        return frames[: horizon + 1]

    def predict(self, request: PredictionRequest) -> torch.Tensor:
        """Track the query points through each generated video of the request's clip.

        Returns:
            ``(num_samples, N, horizon, 2)`` pixel positions.
        """
        clip_id = getattr(request, "clip_id", "")
        if not clip_id:
            raise ValueError("frames-to-tracks needs the request's clip_id to find its generated video (use arfm.evaluation.protocol.ClipRequest)")
        first_frame = _to_uint8(request.frames[-1])
        if first_frame.shape[:2] != (MODEL_FRAME_SIZE, MODEL_FRAME_SIZE):
            raise ValueError(f"frames-to-tracks expects {MODEL_FRAME_SIZE}x{MODEL_FRAME_SIZE} conditioning frames, got {first_frame.shape[:2]}")
        paths = self.sample_paths(clip_id)
        wanted = request.num_samples if self.stochastic else 1
        if len(paths) < wanted:
            raise ValueError(f"frames-to-tracks: clip {clip_id!r} has {len(paths)} generated videos, {wanted} samples were asked for")
        start = request.observed_tracks[:, -1].double().cpu().numpy()  # (N, 2) on the conditioning frame
        queries = np.concatenate([np.zeros((start.shape[0], 1)), start], axis=1)  # [t=0, x, y]
        samples = []
        for path in paths[:wanted]:
            video = self._load(path, first_frame, request.horizon)
            tracks, _ = self.tracker.track(video, queries)  # lost points stay at their last position
            samples.append(torch.from_numpy(np.asarray(tracks[:, 1:], dtype=np.float32)))
        future = torch.stack(samples)  # (wanted, N, H, 2)
        return future.expand(request.num_samples, -1, -1, -1).clone() if wanted == 1 else future


@register_predictor("frames-to-tracks")
def _build_frames_to_tracks(argument: str | None) -> FramesToTracksPredictor:
    if not argument:
        raise ValueError("the 'frames-to-tracks' predictor needs a folder of generated videos: 'frames-to-tracks:<dir>'")
    return FramesToTracksPredictor(argument)
