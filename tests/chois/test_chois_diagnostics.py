"""The CHOIS track-sensitivity check: zero while the track branch is zero, positive once it is not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_chois_data import _write_fbm  # noqa: E402

from integrations.chois.configuration_chois import tiny_chois_config  # noqa: E402
from integrations.chois.data.fbm_dataset import FbmWindowDataset  # noqa: E402
from integrations.chois.diagnostics import track_sensitivity  # noqa: E402
from integrations.chois.modeling_chois import ChoisModel  # noqa: E402


def test_sensitivity_is_zero_for_a_zero_track_branch_and_positive_otherwise(tmp_path: Path) -> None:
    _write_fbm(tmp_path, subjects=(16, 17), frames=90)
    cfg = tiny_chois_config()
    dataset = FbmWindowDataset(tmp_path, "test", cfg)
    assert len(dataset) == 4
    torch.manual_seed(0)
    model = ChoisModel(cfg)
    model.set_normalizer(torch.stack([dataset[i]["motion"] for i in range(len(dataset))]))
    zero = track_sensitivity(model, dataset)  # the projection is zero-initialised: tracks cannot matter
    assert zero["change_gt_vs_none"] == 0.0 and zero["feature_ratio"] == 0.0
    assert zero["error_gt"] == zero["error_none"] > 0
    with torch.no_grad():
        model.denoiser.track_proj.weight.normal_(std=0.5)
    used = track_sensitivity(model, dataset)
    assert used["change_gt_vs_none"] > 1e-3 and used["feature_ratio"] > 0.1
    assert used["error_none"] == pytest.approx(zero["error_none"])  # same noise, same no-track path
    with pytest.raises(ValueError, match="no track branch"):
        track_sensitivity(ChoisModel(tiny_chois_config(use_tracks=False)), dataset)
