"""Small models and batches shared by the core tests."""

import torch

from arfm.config import tiny_model_config
from arfm.data.batch import collate_windows
from arfm.data.synthetic import MovingShapesDataset
from arfm.model import TrackShiftFlowPredictor


def perturbed_model(seed: int = 0, **overrides) -> TrackShiftFlowPredictor:
    """A tiny model whose zero-initialised parts (adaLN-Zero, output layer) are made non-zero,
    so that every path through the network matters in the test."""
    torch.manual_seed(seed)
    model = TrackShiftFlowPredictor(tiny_model_config(**overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def small_batch(num_cond: int = 3, horizon: int = 6, points: int = 12, seed: int = 0):
    ds = MovingShapesDataset(length=2, num_points=points, horizon=horizon, max_cond_frames=num_cond, seed=seed, fixed_cond_frames=num_cond)
    return collate_windows([ds[0], ds[1]])
