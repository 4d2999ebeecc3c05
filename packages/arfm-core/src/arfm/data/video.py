"""Reading videos and bringing them to the 256 x 256 model frame (paper §3.1, App. B).

The paper sizes every video to 256 x 256. How a non-square frame gets there is a choice the
paper leaves open; :class:`arfm.coords.FrameTransform` (re-exported here) makes it explicit
and applies the *same* map to frames and to point coordinates, so tracks computed at any
resolution land on the right pixel:

- ``"center_crop"`` (default): crop the largest centred square, then resize. No distortion and
  no artificial borders (padding would add static pixels the tracker happily "tracks").
- ``"letterbox"``: resize the long side to 256 and pad the short side with black.
- ``"resize"``: stretch to 256 x 256 (aspect ratio changes).

Decoders: PyAV (FFmpeg) for mp4/avi/webm/mov/mkv, so AV1 (LeRobot's default codec) and VP9
decode wherever FFmpeg has a decoder for them, with OpenCV as the fallback when PyAV cannot open
a file; Pillow for GIFs (it reads each frame's own duration, which OpenCV flattens into one
rate); OpenCV ``imread`` for folders of JPEG/PNG frames. Every failure raises
:class:`VideoReadError` naming the file. A video that ends before the frame count its
container states (cut mid-stream) still decodes, and :attr:`VideoClip.warning` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from arfm.coords import FrameTransform, ResizeMode  # re-exported: ingestion code imports them from here

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v")
GIF_EXTENSIONS = (".gif",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class VideoReadError(ValueError):
    """A video, GIF or frame folder could not be decoded; the message names the path."""


@dataclass
class VideoClip:
    """Decoded frames of one clip.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        fps: frames per second (from the container, the GIF durations or a fallback).
        source: path the frames came from.
        transform: the map applied to the frames (``None`` = source resolution kept).
        original_size: ``(width, height)`` of the decoded source frames.
        expected_frames: source frames the container announces (``0`` = it does not say).
        decoded_frames: source frames decoded before the end of the stream (before striding;
            ``0`` when ``max_frames`` stopped the read early).
        warning: why the clip is shorter than its container says ("" when it is not).
    """

    frames: np.ndarray
    fps: float
    source: str
    transform: "FrameTransform | None" = None
    original_size: tuple[int, int] = (0, 0)
    expected_frames: int = 0
    decoded_frames: int = 0
    warning: str = ""


@dataclass
class _StreamStatus:
    """Filled in while a stream is decoded: what the container announced, what went wrong."""

    expected_frames: int = 0
    error: str = ""


def _natural_key(name: str) -> list:
    """Sort ``frame2.png`` before ``frame10.png``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """JPEG/PNG files directly inside ``folder``, in natural order."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _iter_av(path: Path, status: _StreamStatus) -> tuple[Iterator[np.ndarray], float]:
    """Decode with PyAV; raises ``av.FFmpegError`` / ``ValueError`` when the file cannot be opened."""
    import av

    container = av.open(str(path))
    try:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        status.expected_frames = int(stream.frames or 0)
        decoded = container.decode(stream)
        # Decode the first frame now: a stream PyAV opens but cannot decode falls back to OpenCV.
        first = next(decoded, None)
    except BaseException:
        container.close()
        raise

    def frames() -> Iterator[np.ndarray]:
        try:
            if first is not None:
                yield first.to_ndarray(format="rgb24")
            for frame in decoded:
                yield frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, EOFError) as exc:  # corrupt data mid-stream: keep what decoded
            status.error = f"decoding stopped with an error: {exc}"
        finally:
            container.close()

    return frames(), fps


def _iter_cv2(path: Path, status: _StreamStatus) -> tuple[Iterator[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"cannot open video {path}: OpenCV found no decodable stream")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    status.expected_frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return frames(), fps


def _iter_container(path: Path, status: _StreamStatus) -> tuple[Iterator[np.ndarray], float]:
    """PyAV first (AV1, VP9, H.264, ...); OpenCV when PyAV cannot open the file at all."""
    try:
        import av
    except ImportError:  # PyAV is a dependency, but a trimmed environment may lack it
        return _iter_cv2(path, status)
    try:
        return _iter_av(path, status)
    except (av.FFmpegError, ValueError, OSError) as av_error:
        try:
            return _iter_cv2(path, status)
        except VideoReadError as cv_error:
            raise VideoReadError(f"cannot decode video {path}: PyAV: {av_error}; OpenCV: no decodable stream") from cv_error


def _iter_gif(path: Path) -> tuple[Iterator[np.ndarray], float]:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        # The rate needs every frame's duration: walk the frames once before yielding pixels.
        durations = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            durations.append(float(image.info.get("duration") or 0.0))
        image.seek(0)
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise VideoReadError(f"cannot decode GIF {path}: {exc}") from exc
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / float(np.mean(positive)) if positive else 0.0

    def frames() -> Iterator[np.ndarray]:
        try:
            for index in range(len(durations)):
                try:
                    image.seek(index)
                    yield np.asarray(image.convert("RGB"))
                except (OSError, EOFError) as exc:
                    raise VideoReadError(f"GIF {path} is truncated or corrupt at frame {index}: {exc}") from exc
        finally:
            image.close()

    return frames(), fps


def _iter_folder(path: Path) -> tuple[Iterator[np.ndarray], float]:
    files = list_frame_files(path)
    if not files:
        raise VideoReadError(f"frame folder {path} holds no JPEG/PNG files")

    def frames() -> Iterator[np.ndarray]:
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoReadError(f"cannot decode frame image {file}")
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    return frames(), 0.0


def iter_video(path: str | Path) -> tuple[Iterator[np.ndarray], float]:
    """Open a clip for streaming (see :func:`read_video` for the whole clip with its checks).

    Args:
        path: a video file, a GIF, or a folder of JPEG/PNG frames.

    Returns:
        ``(frames, fps)``: an iterator of ``(H, W, 3)`` uint8 RGB frames and the clip's rate
        (``0.0`` when the source does not say, e.g. a frame folder).

    Raises:
        VideoReadError: missing path, unknown type, or a stream that cannot be opened.
    """
    return _open(Path(path), _StreamStatus())


def _open(path: Path, status: _StreamStatus) -> tuple[Iterator[np.ndarray], float]:
    if not path.exists():
        raise VideoReadError(f"video path {path} does not exist")
    if path.is_dir():
        return _iter_folder(path)
    suffix = path.suffix.lower()
    if suffix in GIF_EXTENSIONS:
        return _iter_gif(path)
    if suffix in VIDEO_EXTENSIONS:
        return _iter_container(path, status)
    raise VideoReadError(
        f"unsupported file type {path.suffix!r} for {path}: expected one of "
        f"{VIDEO_EXTENSIONS + GIF_EXTENSIONS} or a folder of {IMAGE_EXTENSIONS} frames"
    )


def read_video(
    path: str | Path,
    transform: "FrameTransform | ResizeMode | None" = None,
    max_frames: int = 0,
    frame_stride: int = 1,
    default_fps: float = 30.0,
) -> VideoClip:
    """Decode a whole clip in one pass, transforming each frame as it is read.

    Args:
        path: video file, GIF or frame folder.
        transform: a :class:`FrameTransform`, a resize mode name (the transform is then built
            from the first frame's size: ``"center_crop"`` gives 256 x 256 model frames), or
            ``None`` to keep the source resolution. Transforming per frame keeps memory at the
            output size for large videos.
        max_frames: keep at most this many frames after striding (``0`` = all).
        frame_stride: keep every ``frame_stride``-th frame; the fps is divided accordingly.
        default_fps: rate used when the source does not give one.

    Raises:
        VideoReadError: undecodable input, frames of changing size, or a clip with no frames.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    status = _StreamStatus()
    iterator, fps = _open(Path(path), status)
    frames = []
    shape = None
    decoded, stopped_early = 0, False
    for index, frame in enumerate(iterator):
        decoded = index + 1
        if index % frame_stride:
            continue
        if shape is None:
            shape = frame.shape
            if isinstance(transform, str):
                transform = FrameTransform(width=shape[1], height=shape[0], mode=transform)
        elif frame.shape != shape:
            raise VideoReadError(f"{path}: frame {index} is {frame.shape}, earlier frames are {shape}")
        frames.append(transform(frame) if transform is not None else frame)
        if max_frames and len(frames) >= max_frames:
            stopped_early = True
            break
    if hasattr(iterator, "close"):
        iterator.close()  # releases the decoder when max_frames stopped early
    if not frames:
        reason = f": {status.error}" if status.error else " (empty or corrupt)"
        raise VideoReadError(f"{path} decoded to zero frames{reason}")
    warning = ""
    if not stopped_early and (status.error or decoded < status.expected_frames):
        announced = f" of the {status.expected_frames} its container announces" if status.expected_frames else ""
        warning = f"{path} is cut short: decoded {decoded} frames{announced}" + (f"; {status.error}" if status.error else "")
    fps = fps if fps > 0 else default_fps
    return VideoClip(
        frames=np.stack(frames),
        fps=fps / frame_stride,
        source=str(path),
        transform=transform if isinstance(transform, FrameTransform) else None,
        original_size=(int(shape[1]), int(shape[0])),
        expected_frames=status.expected_frames,
        decoded_frames=0 if stopped_early else decoded,
        warning=warning,
    )


def write_mp4(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float = 10.0) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as H.264 MP4 (yuv420p, plays everywhere) with PyAV.

    Odd sizes are padded by one black row/column (4:2:0 chroma needs even sides). Written
    directly to ``path``; wrap it in :func:`arfm.atomic.atomic_path` for an atomic write.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"MP4 frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"MP4 fps must be a positive number, got {fps}")
    height, width = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    codec = next((name for name in ("libx264", "h264", "mpeg4") if name in av.codecs_available), None)
    if codec is None:
        raise ValueError(f"cannot write {path}: this PyAV build has no H.264 or MPEG-4 encoder")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            padded = np.zeros((height, width, 3), np.uint8)
            padded[: frame.shape[0], : frame.shape[1]] = frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return Path(path)
