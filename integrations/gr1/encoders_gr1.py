"""Observation encoders of GR-1 (ARFM paper §4.4; Wu et al. 2023): frozen ViT, text, perceiver resampler.

- :func:`build_vision_encoder`: a timm ViT (``vit_base_patch16_224`` = MAE ViT-B/16 by default)
  returning CLS + patch features; weights from a local MAE or GR-1 checkpoint, or random.
- text: :class:`arfm.backbones.text.ClipTextEncoder` (frozen CLIP ViT-B/32, as in GR-1) or
  :class:`arfm.backbones.text.HashedTextEncoder` (the CPU stand-in).
- :class:`PerceiverResampler`: Flamingo-style resampler turning the 196 patch features into a
  few latents (GR-1: depth 3, 9 latents).

Nothing here downloads anything: missing local weights raise ``FileNotFoundError`` naming the
path and where the file comes from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CHECKPOINT_HELP = (
    "GR-1 uses MAE ViT-B/16 weights: download `mae_pretrain_vit_base.pth` from the MAE repository "
    "(facebookresearch/mae) or a GR-1 checkpoint (bytedance/GR-1, its `model_mae.*` weights) and pass its local path"
)


def _unwrap_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the ViT weights inside an MAE checkpoint (``{'model': sd}``) or a GR-1 one (``model_mae.*``)."""
    state = raw
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"vision checkpoint {path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("model_mae.") for k in state):
        state = {k.removeprefix("model_mae."): v for k, v in state.items() if k.startswith("model_mae.")}
    return state


def load_vision_checkpoint(vit: nn.Module, path: str | Path) -> None:
    """Load local MAE / GR-1 ViT weights into ``vit``; every ViT weight must be found.

    Raises:
        FileNotFoundError: the file does not exist (the message says how to obtain it).
        ValueError: the file lacks some of the ViT's weights or has mismatched shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vision checkpoint not found: {path}. {_CHECKPOINT_HELP}")
    # MAE checkpoints pickle their argparse namespace, so weights_only loading would refuse them;
    # this is a local file the user chose.
    raw = torch.load(path, map_location="cpu", weights_only=False)
    state = _unwrap_state_dict(raw, path)
    own = vit.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"vision checkpoint {path} lacks {len(missing)} ViT weights, e.g. {missing[:4]}")
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ValueError(f"vision checkpoint {path} has mismatched shapes for {bad[:4]} (wrong ViT size?)")
    vit.load_state_dict({k: state[k] for k in own})


def build_vision_encoder(model: str, image_size: int, patch_size: int, checkpoint: str | None, overrides: dict[str, Any]) -> nn.Module:
    """A timm ViT without a classifier whose ``forward_features`` gives ``(B, 1 + P, D)`` (CLS first)."""
    import timm  # lazy: only needed when a policy is built

    vit = timm.create_model(model, pretrained=False, num_classes=0, img_size=image_size, patch_size=patch_size, **overrides)
    if getattr(vit, "num_prefix_tokens", 1) != 1:
        raise ValueError(f"vit_model {model!r} has {vit.num_prefix_tokens} prefix tokens; GR-1 expects exactly one CLS token")
    if checkpoint is not None:
        load_vision_checkpoint(vit, checkpoint)
    return vit


class _PerceiverAttention(nn.Module):
    """Latents attend to ``[media, latents]`` (Flamingo)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        # media: (M, P, D), latents: (M, L, D)
        media, latents = self.norm_media(media), self.norm_latents(latents)
        m, n_lat, _ = latents.shape
        q = self.to_q(latents).view(m, n_lat, self.heads, -1).transpose(1, 2)  # (M, h, L, dh)
        kv = self.to_kv(torch.cat([media, latents], dim=1))
        k, v = kv.view(m, kv.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # 2 x (M, h, P + L, dh)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(m, n_lat, -1))


class PerceiverResampler(nn.Module):
    """``(M, P, D)`` patch features -> ``(M, num_latents, D)`` learned latents."""

    def __init__(
        self, dim: int, depth: int, num_latents: int, heads: int, dim_head: int, ff_mult: int = 4, media_pos_emb: bool = False
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        # flamingo_pytorch adds a learned embedding per media frame; GR-1 passes one frame, so one
        # vector added to every patch (kept only where an official checkpoint has it).
        self.media_pos_emb = nn.Parameter(torch.zeros(1, 1, dim)) if media_pos_emb else None
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    _PerceiverAttention(dim, heads, dim_head),
                    nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ff_mult * dim, bias=False), nn.GELU(), nn.Linear(ff_mult * dim, dim, bias=False)),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        if self.media_pos_emb is not None:
            media = media + self.media_pos_emb
        latents = self.latents.expand(media.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = latents + attn(media, latents)
            latents = latents + ff(latents)
        return self.norm(latents)
