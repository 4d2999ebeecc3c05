"""Encode a set of point tracks into one conditioning vector (ARFM paper §3.5)."""

from track_encoder.model import TrackEncoder, TrackEncoderConfig, tiny_track_encoder_config

__all__ = ["TrackEncoder", "TrackEncoderConfig", "tiny_track_encoder_config"]
