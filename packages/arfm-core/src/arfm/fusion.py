"""Feature fusion transformer (paper §3.2, Fig. 2).

Input is a grid of tokens ``x (B, S, P, D)``: ``S`` timesteps (rows) by ``P`` spatial tokens
(``N`` track points followed by ``G`` global image tokens). Each layer alternates

1. causal attention along time (per spatial token, rotary positions), then
2. bidirectional attention across the spatial tokens of one timestep,

both pre-norm. The text tokens are prepended on the time axis and, in the paper, repeated
across the spatial axis. A repeated column stays identical through every layer (spatial
attention over identical tokens returns that token, and text rows only see text rows), so we
run the text through the layers once as a single column and use its keys/values as a shared
prefix of every column's temporal attention: the result is exactly the paper's, at a fraction
of the cost.

Because temporal attention is causal, :meth:`FeatureFusionTransformer.step` advances one (or
more) timesteps at a time from a :class:`FusionCache` of past keys/values, which is how
sampling and online horizon updates avoid recomputing the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from arfm.layers import Mlp, MultiHeadAttention, RotaryEmbedding


@dataclass
class FusionCache:
    """Keys/values of everything the fusion module has seen, per layer.

    Attributes:
        prefix_k, prefix_v: text prefix per layer, ``(B, H, Lt, hd)`` (kept for ever).
        k, v: past timesteps per layer, ``(B * P, H, S_past, hd)``.
        next_position: rotary position of the next timestep (text occupies ``0 .. Lt-1``).
        window: most past timesteps kept (0 = unbounded); older ones slide out.
    """

    prefix_k: list[torch.Tensor]
    prefix_v: list[torch.Tensor]
    k: list[torch.Tensor | None] = field(default_factory=list)
    v: list[torch.Tensor | None] = field(default_factory=list)
    next_position: int = 0
    window: int = 0

    @property
    def num_past(self) -> int:
        return 0 if not self.k or self.k[0] is None else int(self.k[0].shape[2])

    def drop_last(self, num: int) -> None:
        """Forget the newest ``num`` timesteps (speculative rows of a horizon about to be re-rolled)."""
        if num <= 0:
            return
        if num > self.num_past:
            raise ValueError(f"cannot drop {num} timesteps from a cache holding {self.num_past}")
        keep = self.num_past - num
        self.k = [None if k is None or keep == 0 else k[:, :, :keep] for k in self.k]
        self.v = [None if v is None or keep == 0 else v[:, :, :keep] for v in self.v]
        self.next_position -= num

    def clone(self, window: int | None = None) -> "FusionCache":
        """A cache that shares the stored tensors but can grow independently (optionally another window)."""
        window = self.window if window is None else window
        return FusionCache(list(self.prefix_k), list(self.prefix_v), list(self.k), list(self.v), self.next_position, window)

    def nbytes(self) -> int:
        tensors = [t for t in [*self.prefix_k, *self.prefix_v, *self.k, *self.v] if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


class TemporalBlock(nn.Module):
    """Pre-norm causal attention along time, per spatial token, with a shared text prefix."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)
        self.rotary = RotaryEmbedding(dim // heads)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend causally over ``[prefix, past, x]``.

        Args:
            x: ``(B, S, P, D)`` new timesteps.
            positions: ``(S,)`` rotary positions of the new timesteps.
            prefix: text ``(k, v)`` each ``(B, H, Lt, hd)``, shared by all ``P`` columns.
            past: cached ``(k, v)`` each ``(B * P, H, S_past, hd)``.

        Returns:
            ``(x_out, k, v)`` where ``k, v`` are past + new keys/values (already rotated).
        """
        b, s, p, d = x.shape
        cols = self.norm1(x).permute(0, 2, 1, 3).reshape(b * p, s, d)  # (B*P, S, D)
        q, k, v = self.attn.project(cols)  # (B*P, H, S, hd)
        q, k = self.rotary(q, positions), self.rotary(k, positions)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        keys, values = k, v
        if prefix is not None:
            # (B, H, Lt, hd) -> (B*P, H, Lt, hd): every column sees the same text.
            pk = prefix[0].unsqueeze(1).expand(-1, p, -1, -1, -1).flatten(0, 1)
            pv = prefix[1].unsqueeze(1).expand(-1, p, -1, -1, -1).flatten(0, 1)
            keys, values = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        num_keys = keys.shape[2]
        # Query i (the i-th new step) sees the prefix, every past step and new steps <= i.
        key_index = torch.arange(num_keys, device=x.device)
        query_limit = num_keys - s + torch.arange(s, device=x.device)  # last key index each query may see
        mask = key_index[None, :] <= query_limit[:, None]  # (S, keys)
        out = self.attn.attend(q, keys, values, mask)  # (B*P, S, D)
        x = x + out.view(b, p, s, d).permute(0, 2, 1, 3)
        x = x + self.mlp(self.norm2(x))
        return x, k, v


class SpatialBlock(nn.Module):
    """Pre-norm bidirectional attention across the spatial tokens of each timestep."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """``x (B, S, P, D)``; ``key_mask (B, P)`` bool, True for tokens that may be attended to."""
        b, s, p, d = x.shape
        rows = self.norm1(x).reshape(b * s, p, d)
        q, k, v = self.attn.project(rows)
        mask = None
        if key_mask is not None:
            mask = key_mask[:, None, :].expand(b, s, p).reshape(b * s, 1, 1, p)
        x = x + self.attn.attend(q, k, v, mask).view(b, s, p, d)
        return x + self.mlp(self.norm2(x))


class FeatureFusionTransformer(nn.Module):
    """Alternating causal-temporal / spatial transformer producing per-point features."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.temporal = nn.ModuleList(TemporalBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.spatial = nn.ModuleList(SpatialBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def start(self, text: torch.Tensor, window: int = 0) -> FusionCache:
        """Run the text column through every layer and return a cache holding it as prefix.

        Args:
            text: ``(B, Lt, D)`` projected text tokens.
            window: most past timesteps a streaming cache keeps (0 = all).
        """
        b, length, d = text.shape
        x = text.view(b, length, 1, d)
        positions = torch.arange(length, device=text.device)
        prefix_k, prefix_v = [], []
        for temporal, spatial in zip(self.temporal, self.spatial):
            x, k, v = temporal(x, positions, prefix=None, past=None)  # k, v: (B*1, H, Lt, hd)
            prefix_k.append(k)
            prefix_v.append(v)
            x = spatial(x, key_mask=None)
        depth = len(self.temporal)
        return FusionCache(prefix_k, prefix_v, [None] * depth, [None] * depth, next_position=length, window=window)

    def step(self, x: torch.Tensor, cache: FusionCache, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Process new timesteps ``x (B, S_new, P, D)`` after everything in ``cache`` (updated in place).

        Returns:
            ``(B, S_new, P, D)`` fused features (final LayerNorm applied).
        """
        s = x.shape[1]
        positions = torch.arange(cache.next_position, cache.next_position + s, device=x.device)
        for i, (temporal, spatial) in enumerate(zip(self.temporal, self.spatial)):
            past = None if cache.k[i] is None else (cache.k[i], cache.v[i])
            x, k, v = temporal(x, positions, prefix=(cache.prefix_k[i], cache.prefix_v[i]), past=past)
            if cache.window and k.shape[2] > cache.window:
                k, v = k[:, :, -cache.window :], v[:, :, -cache.window :]
            cache.k[i], cache.v[i] = k, v
            x = spatial(x, key_mask)
        cache.next_position += s
        return self.norm(x)

    def forward(self, text: torch.Tensor, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Full (training) pass: text ``(B, Lt, D)`` then all timesteps ``x (B, S, P, D)`` at once."""
        cache = self.start(text, window=0)
        return self.step(x, cache, key_mask)
