"""The one small interface every feature backbone implements (paper §3.2, Fig. 2).

A backbone turns conditioning frames into

- local feature maps at several resolutions (sampled at track positions by the model),
- global image tokens (joined to the spatial axis of the fusion transformer),

and a caption into text tokens (prepended on the time axis) plus a pooled text vector
(which also conditions the flow head).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class FrameFeatures:
    """Features of ``F`` frames of ``B`` clips.

    Attributes:
        local: one map per level, each ``(B, F, C_i, h_i, w_i)``, finest first.
        global_tokens: ``(B, F, G, C_g)``.
    """

    local: list[torch.Tensor]
    global_tokens: torch.Tensor


@dataclass
class TextFeatures:
    """Text of ``B`` captions.

    Attributes:
        tokens: ``(B, Lt, C_t)``.
        pooled: ``(B, C_t)``.
        mask: ``(B, Lt)`` bool, False for padding tokens (None = all real).
        present: ``(B,)`` bool, False for an empty caption (None = all present); the official
            variant gives caption-less rows learned mask tokens.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor | None = None
    present: torch.Tensor | None = None


class FeatureBackbone(nn.Module, ABC):
    """Base class: subclasses set the attributes below and implement the two encoders.

    Attributes:
        local_channels: channels per local level.
        global_channels: channels of a global token.
        num_global_tokens: ``G``.
        text_channels: channels of a text token / the pooled text vector.
        text_len: ``Lt``.
    """

    local_channels: tuple[int, ...]
    global_channels: int
    num_global_tokens: int
    text_channels: int
    text_len: int

    @abstractmethod
    def encode_frames(self, frames: torch.Tensor) -> FrameFeatures:
        """``frames (B, F, 3, H, W)`` float in ``[0, 1]`` -> :class:`FrameFeatures`."""

    @abstractmethod
    def encode_text(self, captions: list[str]) -> TextFeatures:
        """``B`` captions -> :class:`TextFeatures`."""


def check_frames(frames: torch.Tensor) -> None:
    """Raise a clear error for frames that are not ``(B, F, 3, H, W)`` finite floats."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be (B, F, 3, H, W), got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be float in [0, 1], got dtype {frames.dtype}")
    if not torch.isfinite(frames).all():
        raise ValueError("frames contain NaN or Inf")
