"""Released CHOIS checkpoint: converter key accounting and parity with the official code's outputs.

The fixture (``../shared/fixtures/official/chois_denoiser.*``, see its README) is a reduced, randomly
initialised official ``ObjectCondGaussianDiffusion`` with the inputs given to it and every tensor the
official code computed: the BPS / CLIP encoders, all 10 denoiser calls of a DDPM ``sample()`` with
its recorded noise, the sample, and two direct denoiser calls.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from tests.conftest import SHARED
from safetensors.torch import load_file

from integrations.chois import convert
from integrations.chois.checkpointing import load_checkpoint
from integrations.chois.configuration_chois import chois_config_from_dict, official_chois_config
from integrations.chois.modeling_chois import ChoisModel, cosine_alphas_cumprod, official_step_embedding, sinusoid_table
from track_encoder import tiny_track_encoder_config

FIXTURES = SHARED / "fixtures" / "official"
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not (FIXTURES / "chois_denoiser.safetensors").is_file(), reason=f"official fixtures not found at {FIXTURES}")


def _release_layout(state: dict[str, torch.Tensor]) -> dict:
    """The released ``model-10.pt`` layout: ``{step, model, ema: {ema_model.*, online_model.*, initted, step}, scaler}``."""
    ema = {f"ema_model.{k}": v for k, v in state.items()}
    ema.update({f"online_model.{k}": v for k, v in state.items()})
    ema.update({"initted": torch.tensor([True]), "step": torch.tensor([123])})
    return {"step": 10, "model": dict(state), "ema": ema, "scaler": {"scale": 65536.0}}


def _load_without_clip(ckpt: Path, **overrides) -> ChoisModel:
    """Our model from a converted folder, with a hashed text encoder in place of the CLIP tower.

    The fixture's boundary is the CLIP text *feature* (``in.clip_text_features``), so the tower is
    never run; building a random open_clip model would only cost time. Every other tensor must load.
    """
    config = dataclasses.replace(chois_config_from_dict(json.loads((ckpt / "config.json").read_text())), text_encoder="hashed", **overrides)
    model = ChoisModel(config)
    missing, unexpected = model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
    assert not unexpected
    assert set(missing) <= {"denoiser.text.embedding.weight"} | {k for k in missing if k.startswith("denoiser.track_")}
    return model.eval()


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "chois_denoiser.io.safetensors"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("chois_official")
    torch.save(_release_layout(load_file(str(FIXTURES / "chois_denoiser.safetensors"))), tmp / "model-10.pt")
    return convert.main(["--official", str(tmp / "model-10.pt"), "--out", str(tmp / "ckpt"), "--num-heads", "2"])


@pytest.fixture(scope="module")
def model(converted: Path) -> ChoisModel:
    return _load_without_clip(converted)


def _conditions(io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fixture inputs in our conventions: cond mask 1 = given, padding (B, W) over frames, BPS flat."""
    padding = io["in.padding_mask"][:, 0]  # (B, W + 1); position 0 is the condition token
    assert bool(padding[:, 0].all())
    return {
        "motion": io["in.x_start"], "bps": io["in.bps"][:, 0], "cond_mask": 1.0 - io["in.cond_mask"],
        "padding_mask": padding[:, 1:], "text_features": io["in.clip_text_features"],
    }  # fmt: skip


def test_converted_config_and_files(converted: Path):
    assert {p.name for p in converted.iterdir()} == {"model.safetensors", "config.json"}
    cfg = chois_config_from_dict(json.loads((converted / "config.json").read_text()))
    assert (cfg.variant, cfg.num_heads, cfg.d_k, cfg.d_v, cfg.num_layers, cfg.d_model) == ("official", 2, 24, 20, 2, 64)
    assert (cfg.window, cfg.bps_points, cfg.bps_hidden, cfg.bps_feature_dim, cfg.ffn_dim, cfg.text_dim, cfg.diffusion_steps) == (8, 1024, 16, 256, 64, 512, 10)
    assert cfg.clamp_x0 and not cfg.use_tracks and cfg.text_encoder == "clip"
    weights = load_file(str(converted / "model.safetensors"))
    official = load_file(str(FIXTURES / "chois_denoiser.safetensors"))
    # the stored position table is copied, not recomputed (the fixture's is random)
    assert torch.equal(weights["denoiser.position_table"], official["denoise_fn.motion_transformer.position_vec.weight"])
    assert torch.equal(weights["denoiser.blocks.1.ffn.2.weight"], official["denoise_fn.motion_transformer.layer_stack.1.pos_ffn.w_2.weight"][..., 0])
    assert torch.equal(weights["motion_mean"], torch.zeros(220)) and torch.equal(weights["motion_std"], torch.ones(220))


def test_condition_encoders_match(model: ChoisModel, io: dict[str, torch.Tensor]):
    d, c = model.denoiser, _conditions(io)
    with torch.no_grad():
        torch.testing.assert_close(d.bps_mlp(c["bps"]), io["mid.bps_encoder_out"][:, 0], atol=ATOL, rtol=0)
        torch.testing.assert_close(d.encode_context(None, text_features=c["text_features"]), io["mid.language_embedding"], atol=ATOL, rtol=0)
        torch.testing.assert_close(d.time_embedding(io["in.direct.t"]), io["mid.direct.time_embedding"], atol=ATOL, rtol=0)
        torch.testing.assert_close(d.time_embedding(io["mid.sample.t"].flatten()), io["mid.sample.time_embedding"].flatten(0, 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(model._inputs(c["motion"], c["cond_mask"]), io["mid.x_cond"][..., 256:], atol=0, rtol=0)


def test_direct_denoiser_calls_match(model: ChoisModel, io: dict[str, torch.Tensor]):
    d, c = model.denoiser, _conditions(io)
    cond = model._inputs(c["motion"], c["cond_mask"])
    x_t, t = io["in.direct.x_t"], io["in.direct.t"]
    with torch.no_grad():
        lang = d.encode_context(None, text_features=c["text_features"])
        padded = d(x_t, t, cond, c["bps"], lang, c["padding_mask"])
        plain = d(x_t, t, cond, c["bps"], torch.zeros_like(lang))
    torch.testing.assert_close(padded, io["out.direct.denoiser_out"], atol=ATOL, rtol=0)
    torch.testing.assert_close(plain, io["out.direct_no_language_no_padding.denoiser_out"], atol=ATOL, rtol=0)
    # sample 1 has 2 padded frames: padding zeroes their hidden states but they stay keys,
    # so every frame's output changes (a test that ignored padding would fail here)
    with torch.no_grad():
        unpadded = d(x_t, t, cond, c["bps"], lang)
    assert (unpadded[1] - padded[1]).abs().amax(dim=-1).min() > 1e-3
    torch.testing.assert_close(unpadded[0], padded[0], atol=ATOL, rtol=0)


def test_every_sampling_call_and_the_sample_match(model: ChoisModel, io: dict[str, torch.Tensor]):
    c = _conditions(io)
    steps = io["mid.sample.t"]
    assert steps[:, 0].tolist() == list(reversed(range(10)))
    cond = model._inputs(c["motion"], c["cond_mask"])
    with torch.no_grad():
        lang = model.denoiser.encode_context(None, text_features=c["text_features"])
        for k in range(steps.shape[0]):
            out = model.denoiser(io["mid.sample.x_t"][k], steps[k], cond, c["bps"], lang, c["padding_mask"])
            torch.testing.assert_close(out, io["mid.sample.denoiser_out"][k], atol=ATOL, rtol=0, msg=lambda m: f"call {k}: {m}")
    sample = model.sample(c, guidance=False, noise=io["in.sample.noise"])
    torch.testing.assert_close(sample, io["out.sample"], atol=ATOL, rtol=0)
    assert float(io["mid.sample.denoiser_out"].abs().max()) > 1.0  # the clamp to [-1, 1] is exercised
    with pytest.raises(ValueError, match="noise must be"):
        model.sample(c, guidance=False, noise=io["in.sample.noise"][1:])


def test_zero_track_branch_keeps_official_parity(converted: Path, io: dict[str, torch.Tensor]):
    with_tracks = _load_without_clip(converted, use_tracks=True, track_horizon=5, track_encoder=tiny_track_encoder_config(num_steps=6))
    c = _conditions(io)
    tracks = torch.rand(2, 7, 6, 2) * 256
    with torch.no_grad():
        context = with_tracks.denoiser.encode_context(None, tracks, text_features=c["text_features"])
        out = with_tracks.denoiser(io["in.direct.x_t"], io["in.direct.t"], with_tracks._inputs(c["motion"], c["cond_mask"]), c["bps"], context, c["padding_mask"])
    torch.testing.assert_close(out, io["out.direct.denoiser_out"], atol=ATOL, rtol=0)


def _full_size_checkpoint() -> dict:
    """A released-layout checkpoint with every key and shape of ``chois_denoiser.full_keys.txt`` (zeros; real cosine schedule)."""
    ab = cosine_alphas_cumprod(1000)
    state = {}
    for line in (FIXTURES / "chois_denoiser.full_keys.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, _dtype, _role = line.split("\t")
        state[key] = torch.zeros(tuple(int(s) for s in shape.strip("()").split(",") if s.strip()))
    state["alphas_cumprod"] = ab.float()
    state["alphas_cumprod_prev"] = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]).float()
    return _release_layout(state)


def test_full_size_keys_are_all_accounted_for():
    checkpoint = _full_size_checkpoint()
    state = convert.ema_state(checkpoint)
    assert len(state) == 92
    mapped = {k: convert.map_key(k) for k in state}
    dropped = sorted(k for k, v in mapped.items() if v is None)
    assert dropped == sorted(convert.DROPPED)  # every drop has a reason and is present in the release
    config = convert.infer_config(state)
    assert config == official_chois_config()
    weights = convert.convert_state_dict(state, config)
    assert set(weights) == {v for v in mapped.values() if v is not None} | set(convert.NOT_FROM_CHECKPOINT)
    assert weights["denoiser.blocks.3.ffn.0.weight"].shape == (512, 512) and weights["denoiser.position_table"].shape == (122, 512)


def test_unknown_missing_and_misshapen_keys_are_errors():
    checkpoint = _full_size_checkpoint()
    extra = dict(checkpoint, ema={**checkpoint["ema"], "ema_model.denoise_fn.extra_head.weight": torch.zeros(3)})
    with pytest.raises(KeyError, match="denoise_fn.extra_head.weight"):
        convert.convert_state_dict(convert.ema_state(extra), official_chois_config())
    state = convert.ema_state(checkpoint)
    missing = {k: v for k, v in state.items() if k != "denoise_fn.linear_out.bias"}
    with pytest.raises(KeyError, match="denoiser.out.bias"):
        convert.convert_state_dict(missing, official_chois_config())
    bad = dict(state, **{"clip_encoder.0.bias": torch.zeros(7)})
    with pytest.raises(ValueError, match="clip_encoder.0.bias"):
        convert.convert_state_dict(bad, official_chois_config())
    with pytest.raises(KeyError, match="optimizer"):
        convert.ema_state(dict(checkpoint, optimizer={}))
    with pytest.raises(KeyError, match="'ema'"):
        convert.ema_state({"model": checkpoint["model"]})
    with pytest.raises(ValueError, match="alphas_cumprod"):
        convert.convert_state_dict(dict(state, alphas_cumprod=torch.linspace(1, 0.01, 1000)), official_chois_config())
    with pytest.raises(ValueError, match="num_heads=3"):
        convert.infer_config(state, num_heads=3)


def test_missing_official_file_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        convert.main(["--official", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "out")])


def test_official_tables_and_step_embedding_hand_computed():
    table = sinusoid_table(3, 4)
    assert torch.equal(table[0], torch.zeros(4))
    torch.testing.assert_close(table[2], torch.tensor([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)]))
    # half = 2 frequencies: exp(-ln(1e4) * i / (half - 1)) = 1, 1e-4; order [sin, cos]
    torch.testing.assert_close(official_step_embedding(torch.tensor([3]), dim=4)[0], torch.tensor([math.sin(3), math.sin(3e-4), math.cos(3), math.cos(3e-4)]))


def test_padding_mask_needs_the_official_variant(io: dict[str, torch.Tensor]):
    from integrations.chois.configuration_chois import tiny_chois_config

    tiny = ChoisModel(tiny_chois_config(use_tracks=False, window=8)).eval()
    x = torch.zeros(1, 8, 220)
    with pytest.raises(ValueError, match="official variant"):
        tiny.denoiser(x, torch.zeros(1, dtype=torch.long), x, torch.zeros(1, 3 * 64), torch.zeros(1, 64), torch.ones(1, 8, dtype=torch.bool))


@pytest.mark.slow
def test_eval_loader_reads_the_converted_checkpoint(converted: Path, io: dict[str, torch.Tensor]):
    """``load_checkpoint`` as ``eval.py`` calls it (CLIP tower built, random: no weights here)."""
    model = load_checkpoint(converted, use_tracks=True)
    c = _conditions(io)
    with torch.no_grad():
        context = model.denoiser.encode_context(None, text_features=c["text_features"])
        out = model.denoiser(io["in.direct.x_t"], io["in.direct.t"], model._inputs(c["motion"], c["cond_mask"]), c["bps"], context, c["padding_mask"])
    torch.testing.assert_close(out, io["out.direct.denoiser_out"], atol=ATOL, rtol=0)


def test_official_variant_config_validation_and_training_step():
    from integrations.chois.configuration_chois import ChoisConfig

    with pytest.raises(ValueError, match="'variant'"):
        ChoisConfig(variant="chois")
    with pytest.raises(ValueError, match="'d_k'"):
        official_chois_config(d_k=0)
    cfg = official_chois_config(
        window=8, bps_points=16, bps_hidden=8, bps_feature_dim=8, object_points=8, d_model=32, num_heads=2, d_k=12, d_v=10, ffn_dim=32,
        text_encoder="hashed", text_dim=16, hashed_vocab=64, diffusion_steps=10, waypoint_every=4,
    )  # fmt: skip
    assert cfg.head_dims == (12, 10) and official_chois_config().head_dims == (256, 256)
    model = ChoisModel(cfg)
    assert model.denoiser.position_table.shape == (10, 32) and not hasattr(model.denoiser, "transformer")
    torch.testing.assert_close(model.denoiser.position_table, sinusoid_table(10, 32))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 220, generator=gen)
    t = torch.tensor([3, 9])
    out = model.denoiser(x, t, x, torch.randn(2, 48, generator=gen), torch.zeros(2, 32))
    out.abs().sum().backward()
    assert out.shape == (2, 8, 220) and all(p.grad is not None for p in model.denoiser.blocks.parameters())
    with pytest.raises(ValueError, match="position table covers at most 8"):
        model.denoiser(torch.zeros(1, 9, 220), t[:1], torch.zeros(1, 9, 220), torch.zeros(1, 48), torch.zeros(1, 32))
