"""Observation encoders of GR-1 (ARFM paper §4.4; Wu et al. 2023): frozen ViT, text, perceiver resampler.

- :func:`build_vision_encoder`: a timm ViT (``vit_base_patch16_224`` = MAE ViT-B/16 by default)
  returning CLS + patch features; weights from a local MAE or GR-1 checkpoint, or random.
- :class:`ClipTextEncoder`: the frozen open_clip text tower (CLIP ViT-B/32 in GR-1).
- :class:`HashedTextEncoder`: a bag of hashed words, the CPU stand-in for CLIP.
- :class:`PerceiverResampler`: Flamingo-style resampler turning the 196 patch features into a
  few latents (GR-1: depth 3, 9 latents).

Nothing here downloads anything: missing local weights raise ``FileNotFoundError`` naming the
path and where the file comes from.
"""

from __future__ import annotations

import re
import zlib
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


def hashed_word_ids(text: str, vocab_size: int) -> list[int]:
    """Lower-cased words -> stable bucket ids (crc32, identical across processes and machines)."""
    words = re.findall(r"[a-z0-9]+", text.lower()) or [""]
    return [zlib.crc32(word.encode()) % vocab_size for word in words]


class HashedTextEncoder(nn.Module):
    """Mean of learned embeddings of hashed words: ``list[str] -> (B, dim)`` (CPU stand-in for CLIP)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.EmbeddingBag(vocab_size, dim, mode="mean")

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = [hashed_word_ids(t, self.vocab_size) for t in texts]
        flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long, device=self.embedding.weight.device)
        offsets = torch.tensor([0] + [len(seq) for seq in ids[:-1]], device=flat.device).cumsum(0)
        return self.embedding(flat, offsets)


class ClipTextEncoder(nn.Module):
    """Frozen open_clip text tower: ``list[str] -> (B, embed_dim)`` (GR-1: CLIP ViT-B/32, 512-d)."""

    def __init__(self, model_name: str, checkpoint: str | None) -> None:
        super().__init__()
        import open_clip  # lazy: heavy import

        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"CLIP checkpoint not found: {checkpoint}. Download the open_clip weights of {model_name} "
                "(e.g. the OpenAI ViT-B-32 `open_clip_pytorch_model.bin`) and pass its local path"
            )
        model = open_clip.create_model(model_name, pretrained=checkpoint)
        model.visual = None  # only the text tower is used; drop the image tower's memory
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.embed_dim = int(model.text_projection.shape[-1])

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        return super().train(False)  # frozen: dropout stays off

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.model.text_projection.device)
        return self.model.encode_text(tokens).float()


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

    def __init__(self, dim: int, depth: int, num_latents: int, heads: int, dim_head: int, ff_mult: int = 4) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
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
        latents = self.latents.expand(media.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = latents + attn(media, latents)
            latents = latents + ff(latents)
        return self.norm(latents)
