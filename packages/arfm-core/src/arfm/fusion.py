"""Feature fusion transformer (paper §3.2, Fig. 2).

Input is a grid of tokens ``x (B, S, P, D)``: ``S`` timesteps (rows) by ``P`` spatial tokens
(``N`` track points followed by ``G`` global image tokens). Layers alternate, as in the
published model (12 layers = 6 + 6):

1. even layers: causal attention along time (per spatial token, rotary positions),
2. odd layers: bidirectional attention across the spatial tokens of one timestep,

both pre-norm, then a final norm. Norm and MLP are LayerNorm / GELU (ours) or RMSNorm / SwiGLU
(the release), see :mod:`arfm.layers`. The text tokens are prepended on the time axis and, in the paper, repeated
across the spatial axis. A repeated column stays identical through every layer (spatial
attention over identical tokens returns that token, and text rows only see text rows), so we
run the text through the layers once as a single column and use its keys/values as a shared
prefix of every column's temporal attention: the result is exactly the paper's, at a fraction
of the cost.

Because temporal attention is causal, :meth:`FeatureFusionTransformer.step` advances one (or
more) timesteps at a time from a :class:`FusionCache` of past keys/values, which is how
sampling and online horizon updates avoid recomputing the prefix. Padded text tokens are
masked as keys (``text_mask``).

:meth:`FeatureFusionTransformer.forward_grid` is the release's own computation, kept as the
reference for exact compatibility: text replicated in every column, a per-column key mask
added as the most negative float (so a column whose keys are all masked attends uniformly,
as the release's does), no shared prefix. It equals the cached path whenever no column is
fully padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from arfm.layers import MultiHeadAttention, RotaryEmbedding, make_mlp, make_norm


@dataclass
class FusionCache:
    """Keys/values of everything the fusion module has seen, per layer.

    Attributes:
        prefix_k, prefix_v: text prefix per temporal layer, ``(B, H, Lt, hd)`` (kept for ever).
        k, v: past timesteps per temporal layer, ``(B * P, H, S_past, hd)``.
        next_position: rotary position of the next timestep (text occupies ``0 .. Lt-1``).
        window: most past timesteps kept (0 = unbounded); older ones slide out.
        prefix_mask: ``(B, Lt)`` bool, False for padded text tokens (None = all real).
    """

    prefix_k: list[torch.Tensor]
    prefix_v: list[torch.Tensor]
    k: list[torch.Tensor | None] = field(default_factory=list)
    v: list[torch.Tensor | None] = field(default_factory=list)
    next_position: int = 0
    window: int = 0
    prefix_mask: torch.Tensor | None = None

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
        return FusionCache(list(self.prefix_k), list(self.prefix_v), list(self.k), list(self.v), self.next_position, window, self.prefix_mask)

    def nbytes(self) -> int:
        tensors = [t for t in [*self.prefix_k, *self.prefix_v, *self.k, *self.v] if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


class TemporalBlock(nn.Module):
    """Pre-norm causal attention along time, per spatial token, with a shared text prefix."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, norm: str = "layernorm", mlp: str = "gelu", mlp_hidden: int = 0) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = make_norm(norm, dim)
        self.mlp = make_mlp(mlp, dim, mlp_ratio, mlp_hidden)
        self.rotary = RotaryEmbedding(dim // heads)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        prefix_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend causally over ``[prefix, past, x]``.

        Args:
            x: ``(B, S, P, D)`` new timesteps.
            positions: ``(S,)`` rotary positions of the new timesteps.
            prefix: text ``(k, v)`` each ``(B, H, Lt, hd)``, shared by all ``P`` columns.
            past: cached ``(k, v)`` each ``(B * P, H, S_past, hd)``.
            prefix_mask: ``(B, Lt)`` bool, False for padded text keys.
            attn_mask: replaces the causal mask entirely (``(B * P, 1, S, keys)``, bool or
                additive float), for :meth:`FeatureFusionTransformer.forward_grid`.

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
        mask = attn_mask
        if mask is None:
            # Query i (the i-th new step) sees the prefix, every past step and new steps <= i.
            key_index = torch.arange(num_keys, device=x.device)
            query_limit = num_keys - s + torch.arange(s, device=x.device)  # last key index each query may see
            mask = key_index[None, :] <= query_limit[:, None]  # (S, keys)
            if prefix_mask is not None and prefix is not None:
                # (B, Lt) -> (B*P, 1, 1, Lt); keys after the prefix are real steps.
                text_keys = prefix_mask[:, None, :].expand(b, p, -1).reshape(b * p, 1, 1, -1)
                rest = text_keys.new_ones(b * p, 1, 1, num_keys - text_keys.shape[-1])
                mask = mask[None, None] & torch.cat([text_keys, rest], dim=-1)  # (B*P, 1, S, keys)
        out = self.attn.attend(q, keys, values, mask)  # (B*P, S, D)
        x = x + out.view(b, p, s, d).permute(0, 2, 1, 3)
        x = x + self.mlp(self.norm2(x))
        return x, k, v


class SpatialBlock(nn.Module):
    """Pre-norm bidirectional attention across the spatial tokens of each timestep."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, norm: str = "layernorm", mlp: str = "gelu", mlp_hidden: int = 0) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = make_norm(norm, dim)
        self.mlp = make_mlp(mlp, dim, mlp_ratio, mlp_hidden)

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
    """Alternating causal-temporal / spatial transformer producing per-point features.

    Args:
        dim, heads, mlp_ratio: widths.
        depth: layers; even ones temporal, odd ones spatial (``temporal[i]`` is layer ``2i``,
            ``spatial[i]`` is layer ``2i + 1``).
        norm, mlp, mlp_hidden: block flavour (:func:`arfm.layers.make_norm` / ``make_mlp``).
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, norm: str = "layernorm", mlp: str = "gelu", mlp_hidden: int = 0) -> None:
        super().__init__()
        kinds = dict(norm=norm, mlp=mlp, mlp_hidden=mlp_hidden)
        self.temporal = nn.ModuleList(TemporalBlock(dim, heads, mlp_ratio, **kinds) for _ in range((depth + 1) // 2))
        self.spatial = nn.ModuleList(SpatialBlock(dim, heads, mlp_ratio, **kinds) for _ in range(depth // 2))
        self.norm = make_norm(norm, dim)
        self.depth = depth

    def _layers(self) -> list[tuple[str, int]]:
        return [("temporal" if layer % 2 == 0 else "spatial", layer // 2) for layer in range(self.depth)]

    def start(self, text: torch.Tensor, window: int = 0, text_mask: torch.Tensor | None = None) -> FusionCache:
        """Run the text column through every layer and return a cache holding it as prefix.

        Args:
            text: ``(B, Lt, D)`` projected text tokens.
            window: most past timesteps a streaming cache keeps (0 = all).
            text_mask: ``(B, Lt)`` bool, False for padded text tokens (masked as keys).
        """
        b, length, d = text.shape
        x = text.view(b, length, 1, d)
        positions = torch.arange(length, device=text.device)
        attn_mask = None
        if text_mask is not None:
            causal = torch.ones(length, length, dtype=torch.bool, device=text.device).tril()
            attn_mask = causal[None, None] & text_mask[:, None, None, :]  # (B, 1, Lt, Lt)
        prefix_k, prefix_v = [], []
        for kind, i in self._layers():
            if kind == "temporal":
                x, k, v = self.temporal[i](x, positions, prefix=None, past=None, attn_mask=attn_mask)  # k, v: (B*1, H, Lt, hd)
                prefix_k.append(k)
                prefix_v.append(v)
            else:
                x = self.spatial[i](x, key_mask=None)
        n = len(self.temporal)
        return FusionCache(prefix_k, prefix_v, [None] * n, [None] * n, next_position=length, window=window, prefix_mask=text_mask)

    def step(self, x: torch.Tensor, cache: FusionCache, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Process new timesteps ``x (B, S_new, P, D)`` after everything in ``cache`` (updated in place).

        Returns:
            ``(B, S_new, P, D)`` fused features (final norm applied).
        """
        s = x.shape[1]
        positions = torch.arange(cache.next_position, cache.next_position + s, device=x.device)
        for kind, i in self._layers():
            if kind == "spatial":
                x = self.spatial[i](x, key_mask)
                continue
            past = None if cache.k[i] is None else (cache.k[i], cache.v[i])
            x, k, v = self.temporal[i](x, positions, prefix=(cache.prefix_k[i], cache.prefix_v[i]), past=past, prefix_mask=cache.prefix_mask)
            if cache.window and k.shape[2] > cache.window:
                k, v = k[:, :, -cache.window :], v[:, :, -cache.window :]
            cache.k[i], cache.v[i] = k, v
        cache.next_position += s
        return self.norm(x)

    def forward(self, text: torch.Tensor, x: torch.Tensor, key_mask: torch.Tensor | None, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full (training) pass: text ``(B, Lt, D)`` then all timesteps ``x (B, S, P, D)`` at once."""
        cache = self.start(text, window=0, text_mask=text_mask)
        return self.step(x, cache, key_mask)

    def forward_grid(self, x: torch.Tensor, time_mask: torch.Tensor, spatial_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The release's computation over a full grid (module docstring).

        Args:
            x: ``(B, L, P, D)``: the time axis holds the text tokens first (replicated in every
                column), then the steps.
            time_mask: ``(B, P, L)`` 1 = real key, 0 = padding, per column.
            spatial_mask: ``(B, P)`` bool key mask of the spatial layers (None: the release's
                no-op masks).

        Returns:
            ``(B, L, P, D)`` after the final norm.
        """
        b, length, p, _ = x.shape
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None, None] & time_mask.reshape(b * p, 1, 1, length).bool()
        # Masked logits become exactly the most negative float, as in the release, so a
        # fully masked column attends uniformly instead of producing NaN.
        attn_mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, torch.finfo(x.dtype).min)
        positions = torch.arange(length, device=x.device)
        for kind, i in self._layers():
            if kind == "temporal":
                x, _, _ = self.temporal[i](x, positions, prefix=None, past=None, attn_mask=attn_mask)
            else:
                x = self.spatial[i](x, spatial_mask)
        return self.norm(x)
