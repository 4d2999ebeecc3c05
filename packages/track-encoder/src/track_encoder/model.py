"""Track encoder (paper §3.5): Fourier start position + per-step shifts -> ViT with a [CLS] token.

For tracks ``T`` of shape ``(N, L, 2)``:

1. the start ``T[:, 0]`` is the track's "positional" embedding: 2-D Fourier features
   projected to ``dim``;
2. the shifts ``T[:, 1:] - T[:, :-1]`` are flattened to ``(N, 2(L-1))`` and projected to ``dim``;
3. the two are summed into one token per track, a learned [CLS] token is prepended, and a
   bidirectional pre-norm transformer (no positional embedding over tracks, so the result
   is invariant to the order of the tracks) mixes them; the [CLS] output is the encoding.

Coordinates are normalised to ``[-1, 1]`` (``arfm.coords.pixels_to_normalized``). Shifts in
those units are small (one pixel at 256 px is 0.0078), so they are multiplied by the fixed
``shift_gain`` before projection: a 1 px/step motion then enters as 0.25.

The encoder is trained with the downstream model on ground-truth tracks; at evaluation any
predictor's tracks go in unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TrackEncoderConfig:
    """Sizes of the track encoder (defaults: ViT-Base, as in the paper).

    Attributes:
        num_steps: track length ``L`` (positions per track, so ``L-1`` shifts).
        dim, depth, heads, mlp_ratio: transformer sizes.
        fourier_bands: frequencies per axis of the start-position features.
        shift_gain: fixed multiplier on normalised shifts (see module docstring).
    """

    num_steps: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    fourier_bands: int = 32
    shift_gain: float = 32.0

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError("invalid config field 'num_steps': a track needs at least 2 positions to have a shift")
        if self.dim % self.heads != 0:
            raise ValueError(f"invalid config field 'dim': {self.dim} is not divisible by heads={self.heads}")
        if self.fourier_bands < 1:
            raise ValueError("invalid config field 'fourier_bands': must be >= 1")


def tiny_track_encoder_config(**overrides: Any) -> TrackEncoderConfig:
    """CPU preset."""
    return dataclasses.replace(TrackEncoderConfig(dim=64, depth=2, heads=4, fourier_bands=8), **overrides)


def fourier_features(points: torch.Tensor, bands: int) -> torch.Tensor:
    """``points (..., 2)`` in ``[-1, 1]`` -> ``(..., 4 * bands)`` of sin/cos at octave frequencies."""
    freqs = (2.0 ** torch.arange(bands, device=points.device, dtype=points.dtype)) * math.pi  # (bands,)
    angles = points[..., None] * freqs  # (..., 2, bands)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional self-attention + MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # x: (B, 1 + N, D); key_mask: (B, 1 + N) True where a token may be attended to
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TrackEncoder(nn.Module):
    """Tracks ``(B, N, L, 2)`` in ``[-1, 1]`` -> one vector ``(B, dim)`` per sample."""

    def __init__(self, config: TrackEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.start_proj = nn.Linear(4 * config.fourier_bands, config.dim)
        self.shift_proj = nn.Linear(2 * (config.num_steps - 1), config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.blocks = nn.ModuleList(EncoderBlock(config.dim, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """ViT-style init: truncated-normal linears, small random CLS token."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tracks: torch.Tensor, point_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode tracks.

        Args:
            tracks: ``(B, N, L, 2)`` normalised positions, ``L == config.num_steps``.
            point_mask: ``(B, N)`` bool, True for real tracks (padding is ignored). Every sample
                needs at least one real track.

        Returns:
            ``(B, dim)``: the [CLS] output.
        """
        if tracks.ndim != 4 or tracks.shape[-1] != 2:
            raise ValueError(f"TrackEncoder expects tracks (B, N, L, 2), got {tuple(tracks.shape)}")
        b, n, steps, _ = tracks.shape
        if steps != self.config.num_steps:
            raise ValueError(f"TrackEncoder was built for tracks of {self.config.num_steps} steps, got {steps}")
        if n == 0:
            raise ValueError("TrackEncoder got zero tracks; use a 'none' predictor path instead of an empty track set")
        if not torch.isfinite(tracks).all():
            raise ValueError("TrackEncoder got NaN or Inf tracks")
        if point_mask is None:
            point_mask = torch.ones(b, n, dtype=torch.bool, device=tracks.device)
        if not point_mask.any(dim=1).all():
            raise ValueError("TrackEncoder: a sample has no real tracks in point_mask")

        start = fourier_features(tracks[:, :, 0], self.config.fourier_bands)  # (B, N, 4 * bands)
        shifts = (tracks[:, :, 1:] - tracks[:, :, :-1]).flatten(2) * self.config.shift_gain  # (B, N, 2(L-1))
        tokens = self.start_proj(start) + self.shift_proj(shifts)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1 + N, D)
        key_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), point_mask], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        return self.norm(x[:, 0])
