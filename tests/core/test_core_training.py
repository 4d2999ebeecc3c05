"""Training: overfitting one batch, checkpoint round trip, exact resume."""

import json

import pytest
import torch

from arfm.checkpoint import load_model, save_checkpoint
from arfm.config import tiny_model_config, tiny_train_config
from arfm.data.batch import collate_windows
from arfm.data.synthetic import MovingShapesDataset
from arfm.model import TrackShiftFlowPredictor
from arfm.train import run_training


@pytest.mark.parametrize("objective", ["flow", "regression"])
def test_tiny_model_overfits_one_batch(objective):
    torch.manual_seed(0)
    model = TrackShiftFlowPredictor(tiny_model_config(objective=objective))
    ds = MovingShapesDataset(length=4, num_points=24, horizon=6, max_cond_frames=2)
    batch = collate_windows([ds[i] for i in range(4)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(120):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < first / 10, (first, last)


def test_checkpoint_round_trip(tmp_path):
    model = TrackShiftFlowPredictor(tiny_model_config(horizon=7)).eval()
    with torch.no_grad():
        model.head.final.linear.weight.normal_()
    save_checkpoint(tmp_path / "ckpt", model, step=5)
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["step"] == 5 and meta["model"]["horizon"] == 7
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert not list(tmp_path.glob(".ckpt*")), "temporary directories must not be left behind"


def test_save_over_existing_checkpoint_replaces_it(tmp_path):
    m1 = TrackShiftFlowPredictor(tiny_model_config())
    save_checkpoint(tmp_path / "ckpt", m1, step=1)
    save_checkpoint(tmp_path / "ckpt", m1, step=2)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["step"] == 2


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path / "empty")


def _losses_from_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = {}
    for path in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        if "train/loss" not in acc.Tags()["scalars"]:
            continue  # e.g. the hparams file
        for event in acc.Scalars("train/loss"):
            values[event.step] = event.value
    return values


def test_resume_continues_exactly(tmp_path):
    model_cfg = tiny_model_config(horizon=4, max_points=16, depth=2, dim=64)
    dataset = MovingShapesDataset(length=12, num_points=16, horizon=4, max_cond_frames=2)
    kwargs = dict(show_progress=False)
    straight = tiny_train_config(steps=6, batch_size=4, log_every=1, save_every=100, max_cond_frames=2)
    run_training(model_cfg, straight, dataset, tmp_path / "straight", **kwargs)
    half = tiny_train_config(steps=3, batch_size=4, log_every=1, save_every=100, max_cond_frames=2)
    run_training(model_cfg, half, dataset, tmp_path / "resumed", **kwargs)
    run_training(model_cfg, straight, dataset, tmp_path / "resumed", resume=True, **kwargs)

    a, b = _losses_from_events(tmp_path / "straight"), _losses_from_events(tmp_path / "resumed")
    assert sorted(a) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):  # steps after the resume (epoch boundary at 3: 12 windows / batch 4)
        assert b[step] == pytest.approx(a[step], rel=1e-5)
    final_a = load_model(tmp_path / "straight" / "checkpoint", use_ema=False)
    final_b = load_model(tmp_path / "resumed" / "checkpoint", use_ema=False)
    for (name, pa), (_, pb) in zip(final_a.state_dict().items(), final_b.state_dict().items()):
        assert torch.allclose(pa, pb, atol=1e-6), name
