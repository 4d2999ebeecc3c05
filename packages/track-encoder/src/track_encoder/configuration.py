"""Sizes and switches of the track encoder (paper §3.5), apart from the network so that reading a
config (a checkpoint's ``config.json``, a script's ``--help``) does not import torch.

The model and the meaning of each switch are in :mod:`track_encoder.model`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

OFFICIAL_FRAME_SIZE = 256
"""Pixels per side of the frame the official start features are computed in (``arfm.coords.MODEL_FRAME_SIZE``)."""
OFFICIAL_FREQUENCIES = 128
"""Number of linear frequencies ``k = linspace(0, 0.5, 128)`` of the official start features."""
MAX_OCTAVE_BANDS = 32
"""The former default, still accepted so that older checkpoints load; beyond ~10 bands the top
octaves alias below a pixel of the 256 frame and only hash the start (see ``fourier_bands``)."""


@dataclass
class TrackEncoderConfig:
    """Sizes and switches of the track encoder (defaults: ViT-Base, as in the paper).

    Attributes:
        num_steps: track length ``L`` (positions per track, so ``L-1`` shifts).
        dim, depth, heads, mlp_ratio: transformer sizes.
        fourier_bands: octave frequencies ``pi * 2^k`` (k < bands) per axis of the start
            features (``start_encoding="octave"``). Coordinates span 2 normalised units over the
            256 px model frame, so band ``k`` has a period of ``256 / 2^k`` px: the default 8 stops
            at a 2 px period, which still tells apart starts one pixel apart (half a period) while
            no band wraps around within a pixel. More bands (the former default was 32, up to
            ``2^31 * pi``) make the features of nearby starts unrelated, i.e. a hash of the start
            that the transformer cannot generalise from; :data:`MAX_OCTAVE_BANDS` is accepted only
            so that checkpoints made with the former default still load.
        shift_gain: fixed multiplier on normalised shifts (see module docstring).
        start_encoding: ``"octave"`` (ours, on normalised coordinates) or ``"official"``
            (``[p/256, sin(pi k p), cos(pi k p)]`` for ``k = linspace(0, 0.5, 128)``, ``p`` in
            pixels of the 256 frame: ``2 * 257`` features).
        start_reads_x_only: official quirk: the y half of the start features is computed from x too.
        zero_shifts: official quirk: the shift input is identically zero (``x[1:] - x[1:]``), so
            the shift projection contributes only its bias.
        gelu: ``"tanh"`` (ours) or ``"exact"`` (official) GELU in the MLPs.
        qkv_bias: bias on the attention input projection (official: no bias).
        norm_eps: LayerNorm epsilon (1e-5 in both).
    """

    num_steps: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    fourier_bands: int = 8
    shift_gain: float = 32.0
    start_encoding: Literal["octave", "official"] = "octave"
    start_reads_x_only: bool = False
    zero_shifts: bool = False
    gelu: Literal["tanh", "exact"] = "tanh"
    qkv_bias: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError("invalid config field 'num_steps': a track needs at least 2 positions to have a shift")
        if self.dim % self.heads != 0:
            raise ValueError(f"invalid config field 'dim': {self.dim} is not divisible by heads={self.heads}")
        if not 1 <= self.fourier_bands <= MAX_OCTAVE_BANDS:
            raise ValueError(
                f"invalid config field 'fourier_bands': must be in [1, {MAX_OCTAVE_BANDS}] (octaves beyond ~10 already "
                f"alias below a pixel of the 256 frame), got {self.fourier_bands}"
            )
        if self.start_encoding not in ("octave", "official"):
            raise ValueError(f"invalid config field 'start_encoding': 'octave' or 'official', got {self.start_encoding!r}")
        if self.gelu not in ("tanh", "exact"):
            raise ValueError(f"invalid config field 'gelu': 'tanh' or 'exact', got {self.gelu!r}")
        if self.norm_eps <= 0:
            raise ValueError(f"invalid config field 'norm_eps': must be > 0, got {self.norm_eps}")

    @property
    def start_features(self) -> int:
        """Width of the start-position features."""
        if self.start_encoding == "official":
            return 2 * (1 + 2 * OFFICIAL_FREQUENCIES)
        return 4 * self.fourier_bands


def tiny_track_encoder_config(**overrides: Any) -> TrackEncoderConfig:
    """CPU preset."""
    return dataclasses.replace(TrackEncoderConfig(dim=64, depth=2, heads=4, fourier_bands=8), **overrides)


def official_track_encoder_config(**overrides: Any) -> TrackEncoderConfig:
    """The released ARFM track encoder (``TrackEncoder(track_length=16)``: ViT-Base, all quirks on)."""
    official = TrackEncoderConfig(
        start_encoding="official", start_reads_x_only=True, zero_shifts=True, gelu="exact", qkv_bias=False
    )
    return dataclasses.replace(official, **overrides)
