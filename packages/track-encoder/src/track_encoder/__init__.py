"""Encode a set of point tracks into one conditioning vector (ARFM paper §3.5)."""

from track_encoder.convert import load_official_track_encoder
from track_encoder.model import TrackEncoder, TrackEncoderConfig, official_track_encoder_config, tiny_track_encoder_config

__all__ = [
    "TrackEncoder",
    "TrackEncoderConfig",
    "load_official_track_encoder",
    "official_track_encoder_config",
    "tiny_track_encoder_config",
]
