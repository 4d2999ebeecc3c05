"""Load the official ARFM track encoder (``modeling_track_encoder.py``) into :class:`TrackEncoder`.

The official state dict (``TrackEncoder(track_length=16)`` as built by the robotics code; inside
a GR-1 checkpoint under the prefix ``track_encoder.``) maps one to one onto ours with
:func:`official_track_encoder_config` switched on; only names differ. Every official key is
renamed by :data:`RENAMES`; a key no rule covers, or one of ours left without a value, is an
error naming it. Shapes give every size except the number of heads, which the weights do not
record (the released model has 12).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from track_encoder.configuration import TrackEncoderConfig, official_track_encoder_config
from track_encoder.model import TrackEncoder

RENAMES: tuple[tuple[str, str], ...] = (
    (r"^track_embed\.starting_position_projection\.", "start_proj."),
    (r"^track_embed\.relative_shift_projection\.", "shift_proj."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"blocks.\1.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"blocks.\1.proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"blocks.\1.mlp.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"blocks.\1.mlp.2."),
    (r"^blocks\.(\d+)\.(norm1|norm2)\.", r"blocks.\1.\2."),
    (r"^(cls_token|norm\.weight|norm\.bias)$", r"\1"),
)
"""Official key pattern -> our key (regular-expression substitutions, tried in order)."""


def official_key_to_ours(key: str) -> str:
    """Our name of one official track-encoder key (without any ``track_encoder.`` prefix).

    Raises:
        KeyError: no rule covers ``key``.
    """
    for pattern, replacement in RENAMES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(f"unknown official track-encoder key {key!r}")


def config_from_official_shapes(shapes: Mapping[str, tuple[int, ...]], heads: int = 12) -> TrackEncoderConfig:
    """Official sizes read from key -> shape (prefix already removed); ``heads`` is not stored.

    Raises:
        KeyError: a key that fixes a size is missing (named in the message).
    """
    for key in ("cls_token", "track_embed.relative_shift_projection.weight", "blocks.0.mlp.fc1.weight"):
        if key not in shapes:
            raise KeyError(f"official track-encoder state lacks {key!r}")
    dim = int(shapes["cls_token"][-1])
    depth = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k)))
    return official_track_encoder_config(
        num_steps=int(shapes["track_embed.relative_shift_projection.weight"][1]) // 2 + 1,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_ratio=shapes["blocks.0.mlp.fc1.weight"][0] / dim,
        qkv_bias="blocks.0.attn.qkv.bias" in shapes,
    )


def convert_official_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict to ours and check it against ``expected`` (our state dict).

    Raises:
        KeyError: an official key is unknown, or one of ours gets no value.
        ValueError: a shape differs.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = official_key_to_ours(key)
        if ours not in expected:
            raise KeyError(f"official track-encoder key {key!r} maps to {ours!r}, which this TrackEncoder lacks (config mismatch?)")
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise ValueError(f"official track-encoder key {key!r}: shape {tuple(value.shape)} != ours {tuple(expected[ours].shape)}")
        out[ours] = value
    missing = sorted(set(expected) - set(out))
    if missing:
        raise KeyError(f"official track-encoder state gives no value for {missing}")
    return out


def load_official_track_encoder(state: Mapping[str, torch.Tensor], heads: int = 12) -> TrackEncoder:
    """Build a :class:`TrackEncoder` in official mode from an official state dict (no prefix)."""
    config = config_from_official_shapes({k: tuple(v.shape) for k, v in state.items()}, heads)
    model = TrackEncoder(config)
    model.load_state_dict(convert_official_state_dict(state, model.state_dict()))
    return model
