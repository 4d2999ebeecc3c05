"""Building blocks of the GR-1 policy (ARFM paper §4.4; Wu et al. 2023): GPT-2 block, video decoders, patch targets.

- :class:`Block`: the GPT-2 block (pre-norm, fused qkv, LayerNorm eps 1e-5, scale 1/sqrt(head dim)),
  with the MLP activation as a switch (ours: tanh GELU; the released GR-1 configs: ReLU). With
  its ``nn.Linear`` weights transposed from GPT-2's ``Conv1D`` it computes what HF ``GPT2Model``
  and bytedance's ``trajectory_gpt2`` compute (a boolean mask equals their additive
  ``finfo.min`` / ``-1e4`` masks whenever a row keeps at least one key, which GR-1's always do).
- :class:`VideoDecoder`: our per-camera future-frame decoder.
- :class:`SharedVideoDecoder`: the official one: one decoder for both cameras, timm ViT blocks
  (exact GELU, qkv bias), a stored 2-D sin-cos table and a mask token (``compat`` modes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from integrations.gr1.configuration_gr1 import GR1Config

ACTIVATIONS = {"gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU}


class Block(nn.Module):
    """GPT-2 block: pre-norm self-attention (optionally masked) + MLP."""

    def __init__(self, dim: int, heads: int, inner: int, dropout: float, activation: str = "gelu_tanh") -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, inner), ACTIVATIONS[activation](), nn.Linear(inner, dim), nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, S, D); mask: (B, 1, S, S) bool, True = may attend
        b, s, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.resid_drop(self.c_proj(attn.transpose(1, 2).reshape(b, s, d)))
        return x + self.mlp(self.ln_2(x))


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(grid * grid, dim)`` (MAE decoder style)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    parts = [f(c.reshape(-1, 1) * omega) for c in (xs, ys) for f in (torch.sin, torch.cos)]
    emb = torch.cat(parts, dim=1)  # (P, 4 * quarter)
    return F.pad(emb, (0, dim - emb.shape[1]))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(M, 3, H, W)`` -> ``(M, P, patch * patch * 3)``, patches in row-major order."""
    m, c, h, w = images.shape
    x = images.view(m, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(m, (h // patch) * (w // patch), patch * patch * c)


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch zero mean, unit variance (MAE ``norm_pix_loss`` target)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def official_patch_targets(images: torch.Tensor, patch: int) -> torch.Tensor:
    """The official GR-1 video targets of ImageNet-normalised images ``(M, 3, H, W)``:
    ``(x - mean) / (std_unbiased + 1e-6)`` per patch (ours puts the epsilon under the root)."""
    patches = patchify(images, patch)
    return (patches - patches.mean(-1, keepdim=True)) / (patches.var(-1, keepdim=True).sqrt() + 1e-6)


class VideoDecoder(nn.Module):
    """OBS query outputs ``(M, Q, D)`` -> predicted patches ``(M, P, patch^2 * 3)``."""

    def __init__(self, config: "GR1Config") -> None:
        super().__init__()
        d = config.hidden
        self.embed = nn.Linear(d, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos", sincos_2d(config.image_size // config.patch_size, d)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(d, config.decoder_heads, 4 * d, 0.0) for _ in range(config.decoder_depth))
        self.norm = nn.LayerNorm(d)
        self.pred = nn.Linear(d, config.patch_size**2 * 3)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        m, q, _ = queries.shape
        x = torch.cat([self.embed(queries), self.mask_token.expand(m, self.pos.shape[1], -1) + self.pos], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x[:, q:]))


class SharedVideoDecoder(nn.Module):
    """The official GR-1 decoder (one for both cameras): ``(M, Q, D)`` -> ``(M, P, patch^2 * 3)``.

    The mask tokens plus a fixed 2-D sin-cos table (stored in official checkpoints, so it is a
    frozen parameter here) follow the embedded queries through timm ViT blocks; the outputs at the
    mask tokens are the patches.
    """

    def __init__(self, config: "GR1Config") -> None:
        super().__init__()
        from timm.models.vision_transformer import Block as VitBlock  # lazy, as the ViT backbone

        d = config.hidden
        self.embed = nn.Linear(d, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(sincos_2d(config.image_size // config.patch_size, d)[None], requires_grad=False)
        # the official decoder blocks take torch's LayerNorm (eps 1e-5); timm's default is 1e-6
        blocks = (VitBlock(d, config.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(config.decoder_depth))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)
        self.pred = nn.Linear(d, config.patch_size**2 * 3)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        m, q, _ = queries.shape
        masks = (self.mask_token + self.pos_embed).expand(m, -1, -1)  # (M, P, D)
        x = torch.cat([self.embed(queries), masks], dim=1)  # (M, Q + P, D)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, q:]
