"""A tiny trainable backbone so tests and the CPU demo run in seconds.

Local levels at strides 4, 8, 16 (like SAM 2's three FPN levels), 16 global tokens from a
stride-32 map pooled to 4 x 4 (like CLIP's patch tokens), and a hashed-word text embedding
(each lower-cased word hashed with CRC-32 into ``tiny_vocab_size`` buckets; stable across
runs and machines).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from arfm.backbones.base import FeatureBackbone, FrameFeatures, TextFeatures, check_frames
from arfm.backbones.text import hashed_word_ids
from arfm.config import BackboneConfig

def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=stride, stride=stride), nn.GroupNorm(4, cout), nn.GELU())


class TinyBackbone(FeatureBackbone):
    """Small conv net + hashed text embedding."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        c0, c1, c2 = config.tiny_channels
        g = config.tiny_global_dim
        self.stem = _conv(3, c0, 4)
        self.down1 = _conv(c0, c1, 2)
        self.down2 = _conv(c1, c2, 2)
        self.down3 = _conv(c2, g, 2)
        self.vocab_size = config.tiny_vocab_size
        text_dim = config.tiny_text_dim or g
        self.word_embed = nn.Embedding(config.tiny_vocab_size, text_dim, padding_idx=0)
        self.word_pos = nn.Parameter(torch.zeros(config.text_len, text_dim))
        nn.init.normal_(self.word_pos, std=0.02)
        self.local_channels = (c0, c1, c2)
        self.global_channels = g
        self.num_global_tokens = 16
        self.text_channels = text_dim
        self.text_len = config.text_len

    def encode_frames(self, frames: torch.Tensor) -> FrameFeatures:
        check_frames(frames)
        b, f = frames.shape[:2]
        x = (frames.flatten(0, 1) - 0.5) / 0.25
        l0 = self.stem(x)
        l1 = self.down1(l0)
        l2 = self.down2(l1)
        g = F.adaptive_avg_pool2d(self.down3(l2), 4).flatten(2).transpose(1, 2)  # (B*F, 16, g)
        local = [level.view(b, f, *level.shape[1:]) for level in (l0, l1, l2)]
        return FrameFeatures(local=local, global_tokens=g.reshape(b, f, *g.shape[1:]))

    def encode_text(self, captions: list[str]) -> TextFeatures:
        device = self.word_pos.device
        ids = torch.zeros(len(captions), self.text_len, dtype=torch.long, device=device)
        for i, caption in enumerate(captions):
            words = hashed_word_ids(caption, self.vocab_size, self.text_len)
            ids[i, : len(words)] = torch.tensor(words, dtype=torch.long, device=device)
        real = (ids > 0).unsqueeze(-1).float()
        tokens = self.word_embed(ids) + self.word_pos * real
        pooled = (tokens * real).sum(1) / real.sum(1).clamp(min=1.0)
        # Key mask: the words plus, for an empty caption, its first token (a row must see a key).
        mask = (ids > 0) | (torch.arange(self.text_len, device=device) == 0)
        return TextFeatures(tokens=tokens, pooled=pooled, mask=mask, present=(ids > 0).any(1))
