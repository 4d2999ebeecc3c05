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

from typing import TypeVar

import numpy as np
import torch

MODEL_FRAME_SIZE = 256
"""Side of the square frame the model sees (paper: all videos sized to 256 x 256)."""

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


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
