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

**Official compatibility.** :func:`official_track_encoder_config` switches on the behaviour of
the released ARFM track encoder (``modeling_track_encoder.py``, see
``../shared/fixtures/official/README.md`` item 16), each as a named field of
:class:`TrackEncoderConfig`: linear-frequency start features computed in pixels of the 256 x 256
model frame (``start_encoding="official"``), both feature halves read from x
(``start_reads_x_only``), shifts replaced by zeros so that their projection adds only its bias
(``zero_shifts``), exact GELU, and qkv without bias. The input stays normalised in every mode.

The encoder is trained with the downstream model on ground-truth tracks; at evaluation any
predictor's tracks go in unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from track_encoder.configuration import (  # noqa: F401  (re-exported: the config lived here before)
    MAX_OCTAVE_BANDS,
    OFFICIAL_FRAME_SIZE,
    OFFICIAL_FREQUENCIES,
    TrackEncoderConfig,
    official_track_encoder_config,
    tiny_track_encoder_config,
)


def fourier_features(points: torch.Tensor, bands: int) -> torch.Tensor:
    """``points (..., 2)`` in ``[-1, 1]`` -> ``(..., 4 * bands)`` of sin/cos at octave frequencies."""
    freqs = (2.0 ** torch.arange(bands, device=points.device, dtype=points.dtype)) * math.pi  # (bands,)
    angles = points[..., None] * freqs  # (..., 2, bands)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def official_fourier_features(pixels: torch.Tensor) -> torch.Tensor:
    """Official start features of one coordinate ``(...)`` in pixels -> ``(..., 257)``:
    ``[p / 256, sin(pi k p), cos(pi k p)]`` for ``k = linspace(0, 0.5, 128)``."""
    k = torch.linspace(0.0, 0.5, OFFICIAL_FREQUENCIES, device=pixels.device, dtype=pixels.dtype)
    angles = math.pi * k * pixels[..., None]  # (..., 128)
    return torch.cat([pixels[..., None] / OFFICIAL_FRAME_SIZE, angles.sin(), angles.cos()], dim=-1)


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional self-attention + MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, gelu: str = "tanh", qkv_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        act = nn.GELU(approximate="tanh" if gelu == "tanh" else "none")
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), act, nn.Linear(hidden, dim))

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
        self.config = c = config
        self.start_proj = nn.Linear(c.start_features, c.dim)
        self.shift_proj = nn.Linear(2 * (c.num_steps - 1), c.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(c.dim, c.heads, c.mlp_ratio, c.gelu, c.qkv_bias, c.norm_eps) for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """ViT-style init: truncated-normal linears, small random CLS token."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def start_features(self, start: torch.Tensor) -> torch.Tensor:
        """Features ``(B, N, start_features)`` of normalised start positions ``(B, N, 2)``."""
        c = self.config
        if c.start_encoding == "octave":
            if c.start_reads_x_only:
                start = start[..., :1].expand_as(start)
            return fourier_features(start, c.fourier_bands)
        pixels = (start + 1.0) * (OFFICIAL_FRAME_SIZE / 2)  # arfm.coords.normalized_to_pixels at 256 px
        x, y = pixels[..., 0], pixels[..., 1]
        return torch.cat([official_fourier_features(x), official_fourier_features(x if c.start_reads_x_only else y)], dim=-1)

    def forward(
        self, tracks: torch.Tensor, point_mask: torch.Tensor | None = None, return_tokens: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode tracks.

        Args:
            tracks: ``(B, N, L, 2)`` normalised positions, ``L == config.num_steps``.
            point_mask: ``(B, N)`` bool, True for real tracks (padding is ignored). Every sample
                needs at least one real track.
            return_tokens: also return the per-track outputs (as the official forward does).

        Returns:
            ``(B, dim)``: the [CLS] output; with ``return_tokens``, also ``(B, N, dim)``.
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
        if point_mask.shape != (b, n):
            raise ValueError(f"TrackEncoder point_mask must be (B, N) = {(b, n)}, got {tuple(point_mask.shape)}")
        point_mask = point_mask.bool()
        if not point_mask.any(dim=1).all():
            raise ValueError("TrackEncoder: a sample has no real tracks in point_mask")

        start = self.start_features(tracks[:, :, 0])  # (B, N, start_features)
        shifts = (tracks[:, :, 1:] - tracks[:, :, :-1]).flatten(2) * self.config.shift_gain  # (B, N, 2(L-1))
        if self.config.zero_shifts:
            shifts = torch.zeros_like(shifts)
        tokens = self.start_proj(start) + self.shift_proj(shifts)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, 1 + N, D)
        key_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), point_mask], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        if return_tokens:
            x = self.norm(x)
            return x[:, 0], x[:, 1:]
        return self.norm(x[:, 0])
