"""Pre-training CHOIS's track encoder (integrations.chois.pretrain_tracks): the regression targets
by hand, the written weights, and CHOIS training that starts from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from integrations.chois.configuration_chois import tiny_chois_config
from integrations.chois.data.fbm_dataset import FbmWindowDataset
from integrations.chois.pretrain_tracks import PretrainArgs, load_track_encoder, pretrain, track_displacement_pairs
from integrations.chois.representation import OBJ_POS
from test_chois_data import _write_fbm

FRAMES = 60


@pytest.fixture(scope="module")
def fbm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fbm_pretrain")
    _write_fbm(root, subjects=(3, 4, 16), frames=FRAMES)  # two training sequences, one test
    return root


def test_targets_are_the_displacements_the_tracks_show(fbm_root: Path) -> None:
    cfg = tiny_chois_config()
    dataset = FbmWindowDataset(fbm_root, "train", cfg, stride=10)
    tracks, displacement = track_displacement_pairs(dataset)
    steps = cfg.track_horizon + 1
    assert tracks.shape == (len(dataset), 40, steps, 2) and displacement.shape == (len(dataset), steps, 75)
    # _write_fbm: the body slides 1 m along x over the sequence, every joint with it; the object stands still
    frames = torch.clamp(cfg.track_stride * torch.arange(steps), max=cfg.window - 1).float()
    expected_x = frames / (FRAMES - 1)
    for joint in range(24):
        x = 3 + 3 * joint  # joint positions follow the object centre (3 numbers) in the target
        torch.testing.assert_close(displacement[:, :, x], expected_x.expand(len(dataset), -1), atol=1e-5, rtol=0)
        assert displacement[:, :, x + 1 : x + 3].abs().max() < 1e-5
    assert displacement[:, :, OBJ_POS].abs().max() < 1e-6 and displacement[:, 0].abs().max() == 0
    torch.testing.assert_close(tracks[0], dataset[0]["tracks"])


def test_pretrain_writes_weights_that_chois_training_starts_from(fbm_root: Path, tmp_path: Path) -> None:
    from integrations.chois.checkpointing import load_checkpoint
    from integrations.chois.train import TrainArgs, run_training

    weights = tmp_path / "enc.safetensors"
    stats = pretrain(PretrainArgs(out=str(weights), data=str(fbm_root), steps=3, batch_size=4))
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["windows"] == stats["windows"] > 0 and {"test_loss", "test_mean_target_loss", "mean_target_loss"} <= set(record)
    ckpt, _ = run_training(TrainArgs(data=fbm_root, out=tmp_path / "run", steps=1, batch_size=2, lr=1e-12, track_encoder_init=weights))
    loaded, saved = load_checkpoint(ckpt, use_ema=False).denoiser.track_encoder.state_dict(), load_file(weights)
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value, atol=1e-6, rtol=0, msg=key)
    model = load_checkpoint(ckpt, use_ema=False)
    with pytest.raises(FileNotFoundError, match="integrations.chois.pretrain_tracks"):
        load_track_encoder(model.denoiser.track_encoder, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="'steps'"):
        PretrainArgs(out="x", steps=0)
