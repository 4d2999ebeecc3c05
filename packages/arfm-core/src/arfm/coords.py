"""The one coordinate convention of the project (every conversion goes through here).

- Points are ``(x, y)``: x grows to the right, y grows downwards, as in image arrays.
- **Pixels** at the edges (files, plots, metrics): a point ``(x, y)`` lies in a frame of
  ``width x height`` pixels when ``0 <= x < width`` and ``0 <= y < height``; pixel ``i``
  covers ``[i, i + 1)``, so the centre of the top-left pixel is ``(0.5, 0.5)``.
- **Normalised** inside the model: ``[-1, 1]`` across the frame, the left/top edge at -1
  and the right/bottom edge at +1. This matches ``torch.nn.functional.grid_sample`` with
  ``align_corners=False``, which is how features are read at track positions.
- The model frame is :data:`MODEL_FRAME_SIZE` pixels square (paper, App. B); per-step
  track shifts are expressed in pixels of that frame.
- Visibility is a ``bool`` array of shape ``(..., )`` aligned with the points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

MODEL_FRAME_SIZE = 256
"""Side of the square frame the model sees (paper: all videos sized to 256 x 256)."""

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

ResizeMode = Literal["center_crop", "letterbox", "resize"]
"""How a source frame of any size is brought to the square model frame (:class:`FrameTransform`)."""
RESIZE_MODES: tuple[str, ...] = ("center_crop", "letterbox", "resize")


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``(width, height)`` from an int (square) or a ``(width, height)`` pair."""
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(width), int(height)


def pixels_to_normalized(points: ArrayLike, size: int | tuple[int, int] = MODEL_FRAME_SIZE) -> ArrayLike:
    """Map pixel ``(x, y)`` to ``[-1, 1]`` (grid_sample, ``align_corners=False``).

    Args:
        points: ``(..., 2)`` pixel coordinates.
        size: frame size, an int for a square frame or ``(width, height)``.
    """
    width, height = _size_pair(size)
    scale = points.new_tensor([width, height]) if isinstance(points, torch.Tensor) else np.array([width, height], dtype=points.dtype)
    return points * (2.0 / scale) - 1.0


def normalized_to_pixels(points: ArrayLike, size: int | tuple[int, int] = MODEL_FRAME_SIZE) -> ArrayLike:
    """Inverse of :func:`pixels_to_normalized`."""
    width, height = _size_pair(size)
    scale = points.new_tensor([width, height]) if isinstance(points, torch.Tensor) else np.array([width, height], dtype=points.dtype)
    return (points + 1.0) * (scale / 2.0)


def rescale_pixels(points: ArrayLike, src_size: int | tuple[int, int], dst_size: int | tuple[int, int]) -> ArrayLike:
    """Move pixel coordinates from a frame of ``src_size`` to one of ``dst_size`` (a plain resize)."""
    return normalized_to_pixels(pixels_to_normalized(points, src_size), dst_size)


def inside_frame(points: ArrayLike, size: int | tuple[int, int] = MODEL_FRAME_SIZE) -> ArrayLike:
    """Boolean ``(...)``: whether each ``(x, y)`` pixel point lies inside the frame."""
    width, height = _size_pair(size)
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def tracks_to_shifts(tracks: ArrayLike) -> ArrayLike:
    """Per-step shifts ``T[:, 1:] - T[:, :-1]`` of tracks shaped ``(..., L, 2)`` -> ``(..., L-1, 2)``."""
    return tracks[..., 1:, :] - tracks[..., :-1, :]


def shifts_to_tracks(start: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Integrate shifts: ``start (..., 2)`` and ``shifts (..., H, 2)`` -> positions ``(..., H, 2)``
    after each shift (the start itself is not included)."""
    return start.unsqueeze(-2) + torch.cumsum(shifts, dim=-2)


@dataclass(frozen=True)
class FrameTransform:
    """Map frames of ``width x height`` source pixels onto the ``size x size`` model frame,
    and points between the two (the one implementation: ingestion, streaming and exports use it).

    Every mode is an axis-aligned affine map on points, ``model = source * scale + offset``,
    so :meth:`points_to_source` is the exact inverse of :meth:`points_to_model`:

    - ``"center_crop"`` (default): crop the largest centred square (offset rounded down to a
      whole pixel), then resize. No distortion and no artificial borders.
    - ``"letterbox"``: resize the long side to ``size`` and pad the short side with black
      (the resized side and the pad are whole pixels, so the scale is ``new_side / side``).
    - ``"resize"``: stretch to ``size x size`` (the aspect ratio changes).

    Attributes:
        width: source frame width in pixels.
        height: source frame height in pixels.
        mode: ``"center_crop"``, ``"letterbox"`` or ``"resize"``.
        size: side of the output (model) frame, :data:`MODEL_FRAME_SIZE` by default.
    """

    width: int
    height: int
    mode: ResizeMode = "center_crop"
    size: int = MODEL_FRAME_SIZE

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"FrameTransform needs a positive frame size, got {self.width}x{self.height}")
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"invalid FrameTransform mode {self.mode!r}: use 'center_crop', 'letterbox' or 'resize'")
        if self.size < 1:
            raise ValueError(f"FrameTransform size must be >= 1, got {self.size}")

    @classmethod
    def for_frame(cls, frame: np.ndarray, mode: ResizeMode = "center_crop", size: int = MODEL_FRAME_SIZE) -> "FrameTransform":
        """The transform for frames shaped like ``frame`` ``(H, W, ...)``."""
        return cls(width=int(frame.shape[1]), height=int(frame.shape[0]), mode=mode, size=size)

    @property
    def affine(self) -> tuple[float, float, float, float]:
        """``(scale_x, scale_y, offset_x, offset_y)`` with ``model = source * scale + offset``."""
        w, h, s = self.width, self.height, self.size
        if self.mode == "resize":
            return s / w, s / h, 0.0, 0.0
        if self.mode == "center_crop":
            side = min(w, h)
            crop_x, crop_y = (w - side) // 2, (h - side) // 2
            scale = s / side
            return scale, scale, -crop_x * scale, -crop_y * scale
        new_w, new_h = self._letterbox_size()
        return new_w / w, new_h / h, float((s - new_w) // 2), float((s - new_h) // 2)

    def _letterbox_size(self) -> tuple[int, int]:
        scale = self.size / max(self.width, self.height)
        return max(1, round(self.width * scale)), max(1, round(self.height * scale))

    def content_box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` model pixels that show source content (the whole frame except
        a letterbox's pad)."""
        sx, sy, ox, oy = self.affine
        x0, y0 = max(0.0, ox), max(0.0, oy)
        return x0, y0, min(float(self.size), self.width * sx + ox), min(float(self.size), self.height * sy + oy)

    def frame_to_model(self, frame: np.ndarray) -> np.ndarray:
        """Transform one ``(H, W)`` or ``(H, W, C)`` source frame to ``(size, size[, C])``."""
        frame = np.asarray(frame)
        if frame.ndim not in (2, 3) or frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"FrameTransform built for {self.width}x{self.height} got a frame of shape {frame.shape} (H, W, C)")
        s = self.size
        if self.mode == "center_crop":
            side = min(self.width, self.height)
            x0, y0 = (self.width - side) // 2, (self.height - side) // 2
            return resize_image(frame[y0 : y0 + side, x0 : x0 + side], s, s)
        if self.mode == "resize":
            return resize_image(frame, s, s)
        new_w, new_h = self._letterbox_size()
        out = np.zeros((s, s) + frame.shape[2:], dtype=frame.dtype)
        x0, y0 = (s - new_w) // 2, (s - new_h) // 2
        out[y0 : y0 + new_h, x0 : x0 + new_w] = resize_image(frame, new_w, new_h)
        return out

    __call__ = frame_to_model

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """Source pixel ``(..., 2)`` ``(x, y)`` -> model pixels (float64 kept, else float32)."""
        return self._map(points, inverse=False)

    def points_to_source(self, points: np.ndarray) -> np.ndarray:
        """Model pixel ``(..., 2)`` ``(x, y)`` -> source pixels; exact inverse of :meth:`points_to_model`."""
        return self._map(points, inverse=True)

    def _map(self, points: np.ndarray, inverse: bool) -> np.ndarray:
        points = np.asarray(points)
        if points.shape[-1:] != (2,):
            raise ValueError(f"points must be shaped (..., 2) as (x, y) pixels, got {points.shape}")
        dtype = np.float64 if points.dtype == np.float64 else np.float32
        sx, sy, ox, oy = self.affine
        scale, offset = np.array([sx, sy]), np.array([ox, oy])
        # float64 arithmetic so the round trip is exact to float32 precision
        out = (points - offset) / scale if inverse else points * scale + offset
        return out.astype(dtype)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Float32 :meth:`points_to_model` (the name ingestion code has used)."""
        return self.points_to_model(points).astype(np.float32)

    def invert_points(self, points: np.ndarray) -> np.ndarray:
        """Float32 :meth:`points_to_source` (the name ingestion code has used)."""
        return self.points_to_source(points).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: the fields plus the affine map they imply."""
        sx, sy, ox, oy = self.affine
        return {
            "width": self.width, "height": self.height, "mode": self.mode, "size": self.size,
            "scale": [sx, sy], "offset": [ox, oy], "formula": "model = source * scale + offset",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FrameTransform":
        """Inverse of :meth:`to_dict` (derived entries are ignored)."""
        return cls(width=int(data["width"]), height=int(data["height"]), mode=data["mode"], size=int(data["size"]))


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an ``(H, W[, C])`` image to ``width x height`` pixels (area average when shrinking)."""
    import cv2  # imported here: most users of this module never touch pixels

    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    shrinking = width < image.shape[1] or height < image.shape[0]
    # INTER_AREA averages when shrinking (no aliasing); linear is the usual choice to enlarge.
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)
