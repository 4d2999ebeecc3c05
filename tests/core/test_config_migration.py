"""Checkpoints saved before ``ModelConfig.variant`` existed still load, with the same outputs.

``tests/core/data/pre_variant_tiny`` was written by the code at commit ba4734c, whose ``depth``
counted (temporal + spatial) pairs: its config says ``depth=2`` for 4 alternating layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from arfm.config import model_config_from_dict
from arfm.model import TrackShiftFlowPredictor
from tests.core.factories import small_batch

OLD = Path(__file__).parent / "data" / "pre_variant_tiny"


def test_pre_variant_config_is_migrated_and_reproduces_its_fused_features() -> None:
    saved = json.loads((OLD / "config.json").read_text())["model"]
    assert "variant" not in saved and saved["depth"] == 2
    config = model_config_from_dict(saved)
    assert config.depth == 4 and config.variant == "arfm"
    model = TrackShiftFlowPredictor(config)
    model.load_state_dict(load_file(OLD / "model.safetensors"))  # strict: every old name still exists
    model.eval()
    with torch.no_grad():
        fused = model.fuse(small_batch(seed=1)).features
    torch.testing.assert_close(fused, load_file(OLD / "fused.safetensors")["features"], rtol=0, atol=1e-6)


def test_current_configs_are_not_migrated() -> None:
    config = model_config_from_dict({"variant": "arfm", "depth": 3, "dim": 32, "heads": 2})
    assert config.depth == 3
