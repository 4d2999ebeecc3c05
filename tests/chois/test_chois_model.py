"""CHOIS model: config validation, zero-initialised track branch, sampling, training, checkpoints, eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from integrations.chois.checkpointing import load_checkpoint, load_training_state, save_checkpoint
from integrations.chois.configuration_chois import ChoisConfig, tiny_chois_config
from integrations.chois.data.fbm_dataset import FbmWindowDataset, collate_items
from integrations.chois.modeling_chois import ChoisModel, cosine_alphas_cumprod
from test_chois_data import _write_fbm


@pytest.fixture(scope="module")
def fbm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fbm")
    _write_fbm(root, subjects=(3, 4, 16), frames=60)
    return root


@pytest.fixture(scope="module")
def batch(fbm_root: Path) -> dict:
    ds = FbmWindowDataset(fbm_root, "train", tiny_chois_config(), stride=10)
    return collate_items([ds[i] for i in range(4)])


def test_config_defaults_and_validation():
    cfg = ChoisConfig()
    assert cfg.motion_dim == 220 and cfg.window == 120 and cfg.d_model == 512 and cfg.num_layers == 4 and cfg.num_heads == 4
    assert cfg.diffusion_steps == 1000 and cfg.bps_points == 1024 and cfg.track_horizon == 50 and cfg.track_stride == 3
    with pytest.raises(ValueError, match="'d_model'"):
        ChoisConfig(d_model=510)
    with pytest.raises(ValueError, match="'track_encoder'"):
        tiny_chois_config(track_horizon=20)
    with pytest.raises(ValueError, match="'text_encoder'"):
        tiny_chois_config(text_encoder="bert")


def test_clip_weights_missing_path_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="clip_b32.bin"):
        ChoisModel(ChoisConfig(clip_checkpoint=str(tmp_path / "clip_b32.bin")))


def test_cosine_schedule_is_monotone():
    ab = cosine_alphas_cumprod(1000)
    assert ab.shape == (1000,) and 0.99 < float(ab[0]) < 1.0 and float(ab[-1]) < 1e-3
    assert bool((ab[1:] < ab[:-1]).all())


def test_zero_initialised_track_branch_keeps_output(batch: dict):
    torch.manual_seed(0)
    plain = ChoisModel(tiny_chois_config(use_tracks=False)).eval()
    with_tracks = ChoisModel(tiny_chois_config(use_tracks=True)).eval()
    missing, unexpected = with_tracks.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("denoiser.track_") for k in missing)
    x = torch.randn(4, 40, 220)
    t = torch.tensor([0, 5, 10, 19])
    cond = plain._inputs(batch["motion"])
    args = (x, t, cond, batch["bps"])
    ref = plain.denoiser(*args, plain.denoiser.encode_context(batch["caption"]))
    branch = with_tracks.denoiser
    assert torch.equal(branch(*args, branch.encode_context(batch["caption"], batch["tracks"])), ref)
    assert torch.equal(branch(*args, branch.encode_context(batch["caption"])), ref)
    with pytest.raises(ValueError, match="use_tracks=False"):
        plain.denoiser.encode_context(batch["caption"], batch["tracks"])
    # once the projection is non-zero the tracks do change the prediction
    torch.nn.init.normal_(branch.track_proj.weight)
    assert not torch.allclose(branch(*args, branch.encode_context(batch["caption"], batch["tracks"])), ref)


def test_context_to_frames_reaches_each_frame_token_and_keeps_the_weights(batch: dict):
    torch.manual_seed(0)
    leading = ChoisModel(tiny_chois_config()).eval()
    frames = ChoisModel(tiny_chois_config(context_to_frames=True)).eval()
    frames.load_state_dict(leading.state_dict())  # the same parameters: only where the vector is added differs
    x, t = torch.randn(4, 40, 220), torch.tensor([0, 5, 10, 19])
    args = (x, t, leading._inputs(batch["motion"]), batch["bps"])
    context = leading.denoiser.encode_context(batch["caption"])
    assert not torch.allclose(frames.denoiser(*args, context), leading.denoiser(*args, context))
    # a zero context adds nothing anywhere: both layouts agree exactly
    zero = torch.zeros_like(context)
    torch.testing.assert_close(frames.denoiser(*args, zero), leading.denoiser(*args, zero), rtol=0, atol=0)
    # the zero-initialised track branch still changes nothing until it is trained
    den = frames.denoiser
    assert torch.equal(den(*args, den.encode_context(batch["caption"], batch["tracks"])), den(*args, context))


def test_short_sampling_run(batch: dict):
    torch.manual_seed(0)
    model = ChoisModel(tiny_chois_config()).eval()
    out = model.sample(batch, batch["tracks"], torch.Generator().manual_seed(1))
    again = model.sample(batch, batch["tracks"], torch.Generator().manual_seed(1))
    assert out.shape == (4, 40, 220) and torch.isfinite(out).all()
    assert torch.equal(out, again)
    unguided = model.sample(batch, batch["tracks"], torch.Generator().manual_seed(1), guidance=False)
    assert not torch.equal(out, unguided)  # guidance acts on the last steps


def test_training_steps_reduce_loss(batch: dict):
    torch.manual_seed(0)
    model = ChoisModel(tiny_chois_config())
    model.set_normalizer(batch["motion"])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        parts = model.loss(batch, batch["tracks"], torch.Generator().manual_seed(0))  # same noise: a pure fit
        assert all(torch.isfinite(v) for v in parts.values())
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(float(parts["total"].detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_checkpoint_round_trip_and_branch_added_on_load(tmp_path: Path, batch: dict):
    torch.manual_seed(0)
    model = ChoisModel(tiny_chois_config(use_tracks=False)).eval()
    model.set_normalizer(batch["motion"])
    save_checkpoint(tmp_path / "ckpt", model, torch.optim.AdamW(model.parameters()), step=7)
    assert load_training_state(tmp_path / "ckpt")["step"] == 7
    loaded = load_checkpoint(tmp_path / "ckpt", use_tracks=True)
    assert torch.equal(loaded.motion_std, model.motion_std)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(loaded.sample(batch, batch["tracks"], gen()), model.sample(batch, None, gen()))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "nowhere")


def test_train_resume_and_eval_cli(tmp_path: Path, fbm_root: Path):
    from integrations.chois import eval as chois_eval
    from integrations.chois.train import TrainArgs, run_training

    args = TrainArgs(data=fbm_root, out=tmp_path / "run", steps=3, batch_size=2, save_every=2, log_every=1, context_to_frames=True)
    ckpt, losses = run_training(args)
    assert load_checkpoint(ckpt).config.context_to_frames  # the layout is saved with the weights
    assert len(losses) == 3 and all(map(torch.isfinite, torch.tensor(losses)))
    assert load_training_state(ckpt)["step"] == 3
    ckpt, more = run_training(TrainArgs(data=fbm_root, out=tmp_path / "run", steps=5, batch_size=2, resume=True))
    assert len(more) == 2 and load_training_state(ckpt)["step"] == 5
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("training_state")) == ["training_state.json", "training_state.safetensors"]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):  # never a silent fresh start
        run_training(TrainArgs(data=fbm_root, out=tmp_path / "empty", steps=1, batch_size=2, resume=True))
    results = chois_eval.main(["--checkpoint", str(ckpt), "--data", str(fbm_root), "--tracks", "none", "gt", "no-movement", "--out", str(tmp_path / "eval")])
    assert set(results) == {"none", "gt", "no-movement"} and results["gt"]["R_prec"] == "skipped"
    saved = json.loads((tmp_path / "eval" / "table2.json").read_text())
    assert saved["results"]["none"]["MPJPE"] == pytest.approx(results["none"]["MPJPE"])
    assert "| gt |" in (tmp_path / "eval" / "table2.md").read_text()
    with pytest.raises(KeyError, match="unknown track predictor"):
        chois_eval.main(["--checkpoint", str(ckpt), "--data", str(fbm_root), "--tracks", "oracle", "--out", str(tmp_path / "eval")])
