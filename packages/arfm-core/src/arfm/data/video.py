"""Reading videos and bringing them to the 256 x 256 model frame (paper §3.1, App. B).

The paper sizes every video to 256 x 256. How a non-square frame gets there is a choice the
paper leaves open; :class:`FrameTransform` makes it explicit and applies the *same* map to
frames and to point coordinates, so tracks computed at any resolution land on the right pixel:

- ``"center_crop"`` (default): crop the largest centred square, then resize. No distortion and
  no artificial borders (padding would add static pixels the tracker happily "tracks").
- ``"letterbox"``: resize the long side to 256 and pad the short side with black.
- ``"resize"``: stretch to 256 x 256 (aspect ratio changes).

Decoders: OpenCV for mp4/avi/webm/mov/mkv (one well-kept decoder, always returns RGB here),
Pillow for GIFs (it reads each frame's own duration, which OpenCV flattens into one rate),
OpenCV ``imread`` for folders of JPEG/PNG frames. Every failure raises :class:`VideoReadError`
naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import cv2
import numpy as np

from arfm.coords import MODEL_FRAME_SIZE

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v")
GIF_EXTENSIONS = (".gif",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ResizeMode = Literal["center_crop", "letterbox", "resize"]


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
    """

    frames: np.ndarray
    fps: float
    source: str
    transform: "FrameTransform | None" = None
    original_size: tuple[int, int] = (0, 0)


def _natural_key(name: str) -> list:
    """Sort ``frame2.png`` before ``frame10.png``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """JPEG/PNG files directly inside ``folder``, in natural order."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _iter_cv2(path: Path) -> tuple[Iterator[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"cannot open video {path}: OpenCV found no decodable stream")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

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
    """Open a clip for streaming.

    Args:
        path: a video file, a GIF, or a folder of JPEG/PNG frames.

    Returns:
        ``(frames, fps)``: an iterator of ``(H, W, 3)`` uint8 RGB frames and the clip's rate
        (``0.0`` when the source does not say, e.g. a frame folder).

    Raises:
        VideoReadError: missing path, unknown type, or a stream that cannot be opened.
    """
    path = Path(path)
    if not path.exists():
        raise VideoReadError(f"video path {path} does not exist")
    if path.is_dir():
        return _iter_folder(path)
    suffix = path.suffix.lower()
    if suffix in GIF_EXTENSIONS:
        return _iter_gif(path)
    if suffix in VIDEO_EXTENSIONS:
        return _iter_cv2(path)
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
    iterator, fps = iter_video(path)
    frames = []
    shape = None
    for index, frame in enumerate(iterator):
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
            break
    if hasattr(iterator, "close"):
        iterator.close()  # releases the decoder when max_frames stopped early
    if not frames:
        raise VideoReadError(f"{path} decoded to zero frames (empty or corrupt)")
    fps = fps if fps > 0 else default_fps
    return VideoClip(
        frames=np.stack(frames),
        fps=fps / frame_stride,
        source=str(path),
        transform=transform if isinstance(transform, FrameTransform) else None,
        original_size=(int(shape[1]), int(shape[0])),
    )


@dataclass(frozen=True)
class FrameTransform:
    """Map frames of ``(width, height)`` pixels onto a ``size`` x ``size`` square.

    The point map follows :mod:`arfm.coords` (pixel ``i`` covers ``[i, i + 1)``): a crop shifts
    points by the crop offset, a resize scales them by the size ratio, a letterbox adds the pad.

    Attributes:
        width: source frame width in pixels.
        height: source frame height in pixels.
        mode: ``"center_crop"`` (default), ``"letterbox"`` or ``"resize"``.
        size: output side (the model frame, 256).
    """

    width: int
    height: int
    mode: ResizeMode = "center_crop"
    size: int = MODEL_FRAME_SIZE

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"FrameTransform needs a positive frame size, got {self.width}x{self.height}")
        if self.mode not in ("center_crop", "letterbox", "resize"):
            raise ValueError(f"invalid FrameTransform mode {self.mode!r}: use 'center_crop', 'letterbox' or 'resize'")
        if self.size < 1:
            raise ValueError(f"FrameTransform size must be >= 1, got {self.size}")

    def _affine(self) -> tuple[float, float, float, float]:
        """``(scale_x, scale_y, offset_x, offset_y)`` with ``out = in * scale + offset``."""
        w, h, s = self.width, self.height, self.size
        if self.mode == "resize":
            return s / w, s / h, 0.0, 0.0
        if self.mode == "center_crop":
            side = min(w, h)
            crop_x, crop_y = (w - side) // 2, (h - side) // 2
            scale = s / side
            return scale, scale, -crop_x * scale, -crop_y * scale
        new_w, new_h = self._letterbox_size()
        # the resized image is pasted at integer offsets, and its size was rounded
        return new_w / w, new_h / h, float((s - new_w) // 2), float((s - new_h) // 2)

    def _letterbox_size(self) -> tuple[int, int]:
        scale = self.size / max(self.width, self.height)
        return max(1, round(self.width * scale)), max(1, round(self.height * scale))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Transform one ``(H, W, 3)`` uint8 frame to ``(size, size, 3)``."""
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"FrameTransform built for {self.width}x{self.height} got a frame of {frame.shape[1]}x{frame.shape[0]}")
        s = self.size
        if self.mode == "center_crop":
            side = min(self.width, self.height)
            x0, y0 = (self.width - side) // 2, (self.height - side) // 2
            frame = frame[y0 : y0 + side, x0 : x0 + side]
            return _resize(frame, s, s)
        if self.mode == "resize":
            return _resize(frame, s, s)
        new_w, new_h = self._letterbox_size()
        out = np.zeros((s, s, 3), dtype=np.uint8)
        x0, y0 = (s - new_w) // 2, (s - new_h) // 2
        out[y0 : y0 + new_h, x0 : x0 + new_w] = _resize(frame, new_w, new_h)
        return out

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Source pixel ``(..., 2)`` ``(x, y)`` -> output pixel coordinates."""
        sx, sy, ox, oy = self._affine()
        out = np.asarray(points, dtype=np.float64).copy()
        out[..., 0] = out[..., 0] * sx + ox
        out[..., 1] = out[..., 1] * sy + oy
        return out.astype(np.float32)

    def invert_points(self, points: np.ndarray) -> np.ndarray:
        """Output pixel coordinates -> source pixel coordinates (inverse of :meth:`apply_points`)."""
        sx, sy, ox, oy = self._affine()
        out = np.asarray(points, dtype=np.float64).copy()
        out[..., 0] = (out[..., 0] - ox) / sx
        out[..., 1] = (out[..., 1] - oy) / sy
        return out.astype(np.float32)


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.shape[1] == width and frame.shape[0] == height:
        return np.ascontiguousarray(frame)
    shrinking = width < frame.shape[1] or height < frame.shape[0]
    # INTER_AREA averages when shrinking (no aliasing); linear is the usual choice to enlarge.
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)
