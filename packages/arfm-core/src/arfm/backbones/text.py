"""Sentence encoders shared by the model and the integrations: CLIP's text tower and a
hashed-word stand-in for CPU presets.

- :func:`hashed_word_ids`: lower-cased words -> stable bucket ids (CRC-32, the same on every
  run and machine), ``1 .. vocab_size - 1`` (0 is left for padding).
- :class:`HashedTextEncoder`: mean of learned embeddings of those ids, ``list[str] -> (B, dim)``.
- :class:`ClipTextEncoder`: the frozen open_clip text tower, ``list[str] -> (B, embed_dim)``,
  weights from a local file only.
"""

from __future__ import annotations

import re
import zlib

import torch
import torch.nn as nn

from arfm.backbones.sam2_clip import build_clip

_WORD = re.compile(r"[a-z0-9]+")


def hashed_word_ids(text: str, vocab_size: int, max_words: int | None = None) -> list[int]:
    """Bucket ids in ``[1, vocab_size)`` of the (first ``max_words``) lower-cased words of ``text``."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    words = _WORD.findall(text.lower())[:max_words]
    return [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in words]


class HashedTextEncoder(nn.Module):
    """Mean of learned embeddings of hashed words (an empty caption maps to the padding row)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = [hashed_word_ids(t, self.vocab_size) or [0] for t in texts]
        device = self.embedding.weight.device
        flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long, device=device)
        offsets = torch.tensor([0] + [len(seq) for seq in ids[:-1]], dtype=torch.long, device=device).cumsum(0)
        return self.embedding(flat, offsets)


class ClipTextEncoder(nn.Module):
    """Frozen open_clip text tower (CLIP ViT-B/32 in the paper, GR-1 and CHOIS)."""

    def __init__(self, model_name: str = "ViT-B-32", checkpoint: str | None = None) -> None:
        super().__init__()
        import open_clip

        model = build_clip(model_name, checkpoint)
        model.visual = None  # only the text tower is used
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.embed_dim = int(model.text_projection.shape[-1])

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        return super().train(False)  # frozen: dropout stays off

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.model.token_embedding.weight.device)
        return self.model.encode_text(tokens).float()
