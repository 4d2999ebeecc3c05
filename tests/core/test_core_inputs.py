"""Bad input gets a clear error naming it; configs validate their fields."""

import pytest
import torch

from arfm.config import ModelConfig, TrainConfig, tiny_model_config
from arfm.data.batch import TrackWindow, collate_windows
from arfm.model import TrackShiftFlowPredictor


@pytest.fixture(scope="module")
def model():
    return TrackShiftFlowPredictor(tiny_model_config()).eval()


def test_window_rejects_bad_shapes_nans_and_empty_sets():
    frames = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="frames"):
        TrackWindow(torch.rand(3, 64, 64), torch.zeros(4, 5, 2), torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="zero points"):
        TrackWindow(frames, torch.zeros(0, 5, 2), torch.ones(0, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        TrackWindow(frames, torch.full((4, 5, 2), float("nan")), torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="visible"):
        TrackWindow(frames, torch.zeros(4, 5, 2), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="future step"):
        TrackWindow(torch.rand(5, 3, 64, 64), torch.zeros(4, 5, 2), torch.ones(4, 5, dtype=torch.bool))


def test_collate_rejects_mismatched_windows():
    a = TrackWindow(torch.rand(1, 3, 64, 64), torch.zeros(4, 5, 2), torch.ones(4, 5, dtype=torch.bool))
    b = TrackWindow(torch.rand(1, 3, 64, 64), torch.zeros(4, 6, 2), torch.ones(4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="same number of track steps"):
        collate_windows([a, b])
    with pytest.raises(ValueError, match="empty"):
        collate_windows([])


def test_sample_rejects_bad_inputs(model):
    frames = torch.rand(1, 1, 3, 256, 256)
    with pytest.raises(ValueError, match="observed_tracks must be"):
        model.sample(frames, torch.zeros(1, 4, 2), ["x"], horizon=2)
    with pytest.raises(ValueError, match="zero points"):
        model.sample(frames, torch.zeros(1, 0, 1, 2), ["x"], horizon=2)
    with pytest.raises(ValueError, match="NaN"):
        model.sample(frames, torch.full((1, 4, 1, 2), float("nan")), ["x"], horizon=2)
    with pytest.raises(ValueError, match="captions"):
        model.sample(frames, torch.zeros(1, 4, 1, 2), ["x", "y"], horizon=2)
    with pytest.raises(ValueError, match="frames must be"):
        model.sample(torch.rand(1, 3, 256, 256), torch.zeros(1, 4, 1, 2), ["x"], horizon=2)
    with pytest.raises(ValueError, match="NaN"):
        model.sample(torch.full((1, 1, 3, 256, 256), float("nan")), torch.zeros(1, 4, 1, 2), ["x"], horizon=2)


def test_configs_validate_fields():
    with pytest.raises(ValueError, match="'dim'"):
        ModelConfig(dim=100, heads=12)
    with pytest.raises(ValueError, match="'objective'"):
        ModelConfig(objective="diffusion")
    with pytest.raises(ValueError, match="'update_start_time'"):
        ModelConfig(update_start_time=1.5)
    with pytest.raises(ValueError, match="'lr'"):
        TrainConfig(lr=0)


def test_paper_defaults():
    cfg, train = ModelConfig(), TrainConfig()
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.flow_depth) == (768, 12, 12, 4)
    # The published layout: 12 alternating layers = 6 temporal + 6 spatial blocks.
    from arfm.fusion import FeatureFusionTransformer

    fusion = FeatureFusionTransformer(32, cfg.depth, 2, 1.0)
    assert (len(fusion.temporal), len(fusion.spatial)) == (6, 6)
    assert [kind for kind, _ in fusion._layers()][:3] == ["temporal", "spatial", "temporal"]
    assert (cfg.sample_steps, cfg.update_steps, cfg.update_start_time) == (16, 4, 0.8)
    assert (cfg.max_points, cfg.horizon) == (100, 50)
    assert (train.lr, train.batch_size, train.ema_decay, train.ema_update_every) == (5e-5, 16, 0.9999, 100)
    assert cfg.backbone.kind == "sam2-clip" and cfg.backbone.clip_model == "ViT-B-32"
