"""Encode a set of point tracks into one conditioning vector (ARFM paper §3.5)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from track_encoder.configuration import TrackEncoderConfig, official_track_encoder_config, tiny_track_encoder_config

if TYPE_CHECKING:
    from track_encoder.convert import load_official_track_encoder
    from track_encoder.model import TrackEncoder

# The network needs torch; configs do not. Loading it on first use keeps reading a config (a
# downstream script's ``--help``, a checkpoint's config.json) free of torch's start-up cost.
_LAZY = {"TrackEncoder": "track_encoder.model", "load_official_track_encoder": "track_encoder.convert"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'track_encoder' has no attribute {name!r}")


__all__ = [
    "TrackEncoder",
    "TrackEncoderConfig",
    "load_official_track_encoder",
    "official_track_encoder_config",
    "tiny_track_encoder_config",
]
