"""The paper-size model (SAM 2.1 hiera-tiny + CLIP ViT-B/32 + ViT-Base fusion) builds, trains a
step and samples (slow on a CPU: `make test-slow`); missing weights are named."""

import pytest
import torch

from arfm.config import BackboneConfig, ModelConfig
from arfm.data.batch import collate_windows
from arfm.data.synthetic import MovingShapesDataset
from arfm.model import TrackShiftFlowPredictor


@pytest.mark.slow
def test_base_model_trains_a_step_and_samples():
    torch.manual_seed(0)
    model = TrackShiftFlowPredictor(ModelConfig(horizon=3))
    frozen = [n for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    assert frozen == []  # SAM 2.1 and CLIP are frozen foundation models
    assert model.backbone.local_channels == (256, 256, 256) and model.backbone.num_global_tokens == 49
    ds = MovingShapesDataset(length=1, num_points=8, horizon=3, fixed_cond_frames=1)
    batch = collate_windows([ds[0]])
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.head.input_proj.weight.grad is not None
    future = model.eval().sample(batch.frames, batch.tracks[:, :, :1], batch.captions, horizon=2, num_samples=2)
    assert future.shape == (1, 2, 8, 2, 2) and torch.isfinite(future).all()


def test_missing_backbone_checkpoints_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="sam2.1_hiera_tiny.pt"):
        TrackShiftFlowPredictor(ModelConfig(backbone=BackboneConfig(sam2_checkpoint=str(tmp_path / "sam2.1_hiera_tiny.pt"))))
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint"):
        TrackShiftFlowPredictor(ModelConfig(backbone=BackboneConfig(clip_checkpoint=str(tmp_path / "clip.bin"))))
