"""Input tokens of the published ARFM release (paper §3.2, ``ModelConfig.variant="official"``).

The release builds the fusion grid differently from our variant; this module reproduces it
so converted weights give the release's outputs:

- **Local features** (352-d): SAM 2's FPN levels 0 / 1 go through SAM 2's own
  ``conv_s0`` (256 -> 32) / ``conv_s1`` (256 -> 64) reductions, level 2 stays 256 wide; the
  point reads the cell ``floor(clip(coord, 0, size - 1) / (size / grid))`` of each level. A
  1 x 1 convolution is a per-cell linear map, so we apply it after the lookup (only at the
  tracked cells). A learned visibility embedding (352-d) is added, then a linear projection.
- **Global tokens**: CLIP's patch tokens (before its post-layernorm) plus a learned
  "visible" embedding (and a "not visible" one for steps past the frames), then a projection.
- **Text**: CLIP's per-token states and its EOT state, each projected; a caption-less row
  gets learned mask tokens (all unmasked) and a learned pooled token.
- **Camera motion**: a class embedding (static, moving, unknown) added to the flow head's
  conditioning with the pooled text.

The release's index quirks are switches of :class:`arfm.config.OfficialQuirks`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from arfm.backbones.base import TextFeatures
from arfm.config import OfficialQuirks

REDUCED_CHANNELS = (32, 64)
"""Widths of SAM 2's ``conv_s0`` / ``conv_s1`` (fixed by SAM 2, hence the 352-d local feature)."""


class OfficialEmbedding(nn.Module):
    """Everything between the frozen backbones and the fusion transformer, as released.

    Args:
        dim: fusion width.
        local_channels: channels of the three FPN levels (SAM 2: 256 each).
        global_channels: CLIP vision width.
        text_channels: CLIP text width.
        text_len: text tokens (release: 32).
        quirks: the release's index quirks.
    """

    def __init__(
        self,
        dim: int,
        local_channels: tuple[int, ...],
        global_channels: int,
        text_channels: int,
        text_len: int,
        quirks: OfficialQuirks,
    ) -> None:
        super().__init__()
        if len(local_channels) != 3:
            raise ValueError(f"the official variant needs three local levels, got {len(local_channels)}")
        self.quirks = quirks
        self.conv_s0 = nn.Conv2d(local_channels[0], REDUCED_CHANNELS[0], kernel_size=1)
        self.conv_s1 = nn.Conv2d(local_channels[1], REDUCED_CHANNELS[1], kernel_size=1)
        self.local_dim = sum(REDUCED_CHANNELS) + local_channels[2]
        self.local_proj = nn.Linear(self.local_dim, dim)
        self.visibility = nn.Embedding(2, self.local_dim)  # 0: not visible, 1: visible
        self.global_proj = nn.Linear(global_channels, dim)
        self.global_visibility = nn.Embedding(2, global_channels)
        self.text_proj = nn.Linear(text_channels, dim)
        self.text_pooled_proj = nn.Linear(text_channels, dim)
        self.text_mask_tokens = nn.Parameter(torch.zeros(text_len, dim))
        self.pooled_mask_token = nn.Parameter(torch.zeros(dim))
        self.camera = nn.Embedding(quirks.num_camera_classes, dim)
        self.text_len = text_len

    @property
    def null_camera_class(self) -> int:
        return self.quirks.num_camera_classes - 1

    def initialize_weights(self) -> None:
        """Small normal embeddings and projections (used when training from scratch)."""
        for module in (self.local_proj, self.global_proj, self.text_proj, self.text_pooled_proj):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        for param in (self.visibility.weight, self.global_visibility.weight, self.text_mask_tokens, self.pooled_mask_token, self.camera.weight):
            nn.init.normal_(param, std=0.02)

    def reduce_levels(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """SAM 2's ``forward_image`` reductions on whole maps: ``(B, F, C, h, w)`` per level."""
        out = []
        for level, conv in zip(levels, (self.conv_s0, self.conv_s1, None)):
            if conv is not None:
                b, f = level.shape[:2]
                level = conv(level.flatten(0, 1)).unflatten(0, (b, f))
            out.append(level)
        return out

    def point_tokens(
        self,
        levels: list[torch.Tensor],
        positions: torch.Tensor,
        frame_index: torch.Tensor,
        observed: torch.Tensor,
        num_frames: torch.Tensor,
        frame_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point tokens of rows.

        Args:
            levels: raw FPN levels ``(B, F_avail, C_i, h_i, w_i)``.
            positions: ``(B, S, N, 2)`` pixels of frames of ``frame_size = (width, height)``.
            frame_index: ``(B, S)`` frame each row reads (used without ``frame_by_point``).
            observed: ``(B, S)`` bool, the row has its own frame (used without ``visibility_by_point``).
            num_frames: ``(B,)`` conditioning frames ``F`` (the release's visibility index is ``n < F``).

        Returns:
            ``(tokens (B, S, N, D), local features + visibility embedding (B, S, N, 352))``.
        """
        b, s, n, _ = positions.shape
        device = positions.device
        points = torch.arange(n, device=device)
        if self.quirks.frame_by_point:  # point n reads frame min(n, F_avail - 1) at every step
            frames = torch.clamp(points, max=levels[0].shape[1] - 1).view(1, 1, n).expand(b, s, n)
        else:
            frames = frame_index.view(b, s, 1).expand(b, s, n)
        batch = torch.arange(b, device=device).view(b, 1, 1).expand(b, s, n)
        width, height = frame_size
        x = positions[..., 0].clamp(0, width - 1)
        y = positions[..., 1].clamp(0, height - 1)
        sampled = []
        for level, conv in zip(levels, (self.conv_s0, self.conv_s1, None)):
            h, w = level.shape[-2:]
            ix = torch.floor(x / (width / w)).long()
            iy = torch.floor(y / (height / h)).long()
            cells = level.permute(0, 1, 3, 4, 2)[batch, frames, iy, ix]  # (B, S, N, C)
            if conv is not None:  # 1 x 1 conv == linear map per cell
                cells = F.linear(cells, conv.weight.flatten(1), conv.bias)
            sampled.append(cells)
        if self.quirks.visibility_by_point:
            visible = (points[None, :] < num_frames[:, None]).view(b, 1, n).expand(b, s, n)
        else:
            visible = observed.view(b, s, 1).expand(b, s, n)
        features = torch.cat(sampled, dim=-1) + self.visibility(visible.long())
        return self.local_proj(features), features

    def global_tokens(self, tokens: torch.Tensor, frame_index: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global tokens of rows: ``tokens (B, F, G, Cg)`` -> ``((B, S, G, D), inputs (B, S, G, Cg))``."""
        b = tokens.shape[0]
        rows = tokens[torch.arange(b, device=tokens.device)[:, None], frame_index]  # (B, S, G, Cg)
        visible, hidden = self.global_visibility.weight[1], self.global_visibility.weight[0]
        unobserved = ~observed[:, :, None, None]
        if self.quirks.global_embed_both:  # release: past the frames, both embeddings are added
            inputs = rows + visible
            inputs = torch.where(unobserved, inputs + hidden, inputs)
        else:
            inputs = torch.where(unobserved, rows + hidden, rows + visible)
        return self.global_proj(inputs), inputs

    def text(self, text: TextFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens (B, Lt, D), key mask (B, Lt) bool, pooled (B, D))``; caption-less rows use the mask tokens."""
        tokens = self.text_proj(text.tokens)
        b, length = tokens.shape[:2]
        if length != self.text_len:
            raise ValueError(f"text has {length} tokens, the official model expects {self.text_len}")
        pooled = self.text_pooled_proj(text.pooled)
        mask = text.mask if text.mask is not None else torch.ones(b, length, dtype=torch.bool, device=tokens.device)
        present = text.present if text.present is not None else torch.ones(b, dtype=torch.bool, device=tokens.device)
        tokens = torch.where(present[:, None, None], tokens, self.text_mask_tokens.expand(b, -1, -1))
        pooled = torch.where(present[:, None], pooled, self.pooled_mask_token.expand(b, -1))
        mask = mask.bool() | ~present[:, None]
        return tokens, mask, pooled

    def camera_embedding(self, classes: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """``(B, D)`` embedding of camera classes (None = the null class: unknown camera motion)."""
        if classes is None:
            classes = torch.full((batch,), self.null_camera_class, dtype=torch.long, device=device)
        if classes.shape != (batch,):
            raise ValueError(f"camera classes must be ({batch},), got {tuple(classes.shape)}")
        if classes.min() < 0 or classes.max() >= self.quirks.num_camera_classes:
            raise ValueError(f"camera classes must lie in [0, {self.quirks.num_camera_classes}), got {classes.tolist()}")
        return self.camera(classes.long())

    def drop_camera(self, classes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The release's label drop (applied at inference too): each class becomes the null
        class with probability ``camera_drop_prob``."""
        p = self.quirks.camera_drop_prob
        if p <= 0:
            return classes
        drop = torch.rand(classes.shape, generator=generator, device=classes.device) < p
        return torch.where(drop, torch.full_like(classes, self.null_camera_class), classes)

