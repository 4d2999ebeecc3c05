"""Pre-training a track encoder alone (track_encoder.pretrain): it learns what the tracks determine,
is reproducible, round-trips through a file, and refuses bad input by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from track_encoder import TrackEncoder, tiny_track_encoder_config
from track_encoder.pretrain import fit_encoder, load_encoder_weights, save_encoder_weights

CONFIG = tiny_track_encoder_config(num_steps=6)


def motion_task(count: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks of 4 points moving with one velocity per sample; the target is that velocity."""
    g = torch.Generator().manual_seed(seed)
    velocity = torch.rand(count, 2, generator=g) * 0.1 - 0.05
    start = torch.rand(count, 4, 1, 2, generator=g) * 1.2 - 0.6
    points = start + velocity[:, None, None] * torch.arange(6.0)[None, None, :, None]
    return points, velocity / velocity.std()


def test_fit_learns_what_the_tracks_say_and_is_reproducible() -> None:
    points, target = motion_task()
    encoder, head, stats = fit_encoder(CONFIG, points, target, F.mse_loss, steps=80, batch_size=16, lr=2e-3, seed=0)
    assert stats["samples"] == 96 and stats["last_loss"] < stats["first_loss"]
    assert stats["final_loss_all"] < 0.3 * stats["mean_target_loss"]  # far better than predicting the mean
    with torch.no_grad():  # the returned head scores other data from the same task
        other_points, other_target = motion_task(seed=1)
        assert float(F.mse_loss(head(encoder(other_points)), other_target)) < 0.5 * float(other_target.var())
    again, _, _ = fit_encoder(CONFIG, points, target, F.mse_loss, steps=80, batch_size=16, lr=2e-3, seed=0)
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_fit_refuses_bad_input() -> None:
    points, target = motion_task(8)
    with pytest.raises(ValueError, match=r"points must be \(M, N, 6, 2\)"):
        fit_encoder(CONFIG, points[:, :, :5], target, F.mse_loss, 1, 4, 1e-3, 0)
    with pytest.raises(ValueError, match="targets must be"):
        fit_encoder(CONFIG, points, target[:5], F.mse_loss, 1, 4, 1e-3, 0)
    bad = points.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_encoder(CONFIG, bad, target, F.mse_loss, 1, 4, 1e-3, 0)
    with pytest.raises(ValueError, match="steps and batch_size"):
        fit_encoder(CONFIG, points, target, F.mse_loss, 0, 4, 1e-3, 0)


def test_weights_round_trip_and_load_errors_name_the_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = TrackEncoder(CONFIG)
    path = tmp_path / "sub" / "encoder.safetensors"
    save_encoder_weights(encoder, path, {"steps": 3})
    assert path.with_suffix(".json").read_text().strip().startswith("{") and not list(path.parent.glob("*.tmp"))
    fresh = TrackEncoder(CONFIG)
    load_encoder_weights(fresh, path, "the writer")
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0, msg=key)
    with pytest.raises(FileNotFoundError, match="write it with the writer"):
        load_encoder_weights(fresh, tmp_path / "missing.safetensors", "the writer")
    save_file({"cls_token": torch.zeros(1, 1, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors"):
        load_encoder_weights(fresh, tmp_path / "other.safetensors", "the writer")
