"""Small building blocks shared by the fusion transformer and the flow head (paper §3.2).

Two flavours of norm and feed-forward, chosen by :func:`make_norm` / :func:`make_mlp`:
ours (LayerNorm, GELU MLP) and the published release's (RMSNorm computed in float32,
SwiGLU with biases), so the same blocks load the official weights exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: ``x * (1 + scale) + shift`` with per-sample ``shift, scale (B, D)``, ``x (B, L, D)``."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Mlp(nn.Module):
    """Transformer feed-forward: Linear -> GELU -> Linear (``hidden = dim * ratio`` unless given)."""

    def __init__(self, dim: int, ratio: float, hidden: int = 0) -> None:
        super().__init__()
        hidden = hidden or int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SwiGLU(nn.Module):
    """Gated feed-forward of the published model: ``down(silu(gate(x)) * up(x))``, with biases."""

    def __init__(self, dim: int, ratio: float, hidden: int = 0) -> None:
        super().__init__()
        hidden = hidden or int(dim * ratio)
        self.gate = nn.Linear(dim, hidden)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale, computed in float32 (as the release does)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(kind: str, dim: int) -> nn.Module:
    """``"layernorm"`` (ours) or ``"rmsnorm"`` (published release, eps 1e-6)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "rmsnorm":
        return RMSNorm(dim)
    raise ValueError(f"unknown norm kind {kind!r} (expected 'layernorm' or 'rmsnorm')")


def make_mlp(kind: str, dim: int, ratio: float, hidden: int = 0) -> nn.Module:
    """``"gelu"`` (ours) or ``"swiglu"`` (published release)."""
    if kind == "gelu":
        return Mlp(dim, ratio, hidden)
    if kind == "swiglu":
        return SwiGLU(dim, ratio, hidden)
    raise ValueError(f"unknown mlp kind {kind!r} (expected 'gelu' or 'swiglu')")


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) over the time axis, rotate-half form."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``x (..., L, head_dim)`` by absolute ``positions (L,)``."""
        angles = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]  # (L, hd/2)
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(x.dtype)
        sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin


class MultiHeadAttention(nn.Module):
    """Self-attention split into ``project`` (q, k, v per head) and ``attend`` so callers can
    rotate, cache or prefix keys between the two."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (M, L, D)`` -> ``q, k, v`` each ``(M, heads, L, D / heads)``."""
        m, length, dim = x.shape
        qkv = self.qkv(x).view(m, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Scaled dot-product attention; ``mask`` is bool, True = may attend. Returns ``(M, Lq, D)``."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (M, H, Lq, hd)
        m, heads, length, head_dim = out.shape
        return self.proj(out.transpose(1, 2).reshape(m, length, heads * head_dim))


class TimestepEmbedder(nn.Module):
    """Flow time ``t in [0, 1]`` -> vector: sinusoidal features ``[cos, sin]`` then an MLP (as in DiT).

    Args:
        dim: output width.
        frequency_dim: sinusoid features (half cos, half sin).
        time_scale: ``t`` is multiplied by this first. Ours uses 1000 so the periods (up to
            10^4) resolve small time differences; the published release feeds ``t`` as is (1).
    """

    def __init__(self, dim: int, frequency_dim: int = 256, time_scale: float = 1000.0) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.time_scale = time_scale
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * self.time_scale)[:, None] * freqs[None]
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
