"""Pseudo-labelling pipeline: videos or CALVIN episodes -> labelled track dataset (paper §3.1)."""

from arfm.labelling.pipeline import LabelConfig, LabelSummary, label_clip, label_dataset
from arfm.labelling.sources import ClipSource, Discovery, discover_sources

__all__ = ["LabelConfig", "LabelSummary", "label_clip", "label_dataset", "ClipSource", "Discovery", "discover_sources"]
