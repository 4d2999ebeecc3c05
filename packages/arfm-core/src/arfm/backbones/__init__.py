"""Feature backbones behind one interface (:class:`FeatureBackbone`), chosen by config."""

from arfm.backbones.base import FeatureBackbone, FrameFeatures, TextFeatures
from arfm.config import BackboneConfig


def build_backbone(config: BackboneConfig) -> FeatureBackbone:
    """``"sam2-clip"`` (paper) or ``"tiny"`` (CPU preset)."""
    if config.kind == "tiny":
        from arfm.backbones.tiny import TinyBackbone

        return TinyBackbone(config)
    from arfm.backbones.sam2_clip import Sam2ClipBackbone

    return Sam2ClipBackbone(config)


__all__ = ["BackboneConfig", "FeatureBackbone", "FrameFeatures", "TextFeatures", "build_backbone"]
