"""The published ARFM motion predictor, loaded exactly (issue 12).

``../shared/fixtures/official/arfm_motion_predictor.*`` holds a reduced, random-weight instance
of the release with the inputs given to it and what its own code computed: the converted
checkpoint must reproduce every intermediate and output (both weight copies, and a full
5-step rollout with its recorded noise), and the converter must account for every key of the
full-size published model.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from arfm import flow
from arfm.checkpoint import load_model
from arfm.cli import main as arfm_main
from arfm.config import OfficialQuirks, official_model_config
from arfm.convert.official import UNUSED_OURS, convert_official, model_config_from_official
from arfm.convert.official_keys import plan_conversion
from arfm.model import TrackShiftFlowPredictor
from arfm.official_reference import OfficialInputs, official_forward, official_rollout
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "official"
NAME = "arfm_motion_predictor"
CLIP = ("videos", "robot", "bridge_data_v1_berkeley_toykitchen1_put_banana_on_plate.mp4")
ATOL = 1e-5


@pytest.fixture(scope="module")
def fixture_dir():
    if not (FIXTURES / f"{NAME}.safetensors").is_file():
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="module")
def release_folder(fixture_dir, tmp_path_factory):
    """The fixture laid out as the release's HF folder: config.json + model.safetensors."""
    folder = tmp_path_factory.mktemp("release")
    meta = json.loads((fixture_dir / f"{NAME}.config.json").read_text())
    (folder / "config.json").write_text(json.dumps(meta["reduced_constructor"]["motion_predictor_config"]))
    (folder / "model.safetensors").symlink_to(fixture_dir / f"{NAME}.safetensors")
    return folder


@pytest.fixture(scope="module")
def io(fixture_dir):
    return load_file(str(fixture_dir / f"{NAME}.io.safetensors"))


@pytest.fixture(scope="module")
def converted(release_folder, tmp_path_factory):
    """``{"ema": dir, "online": dir}`` of our checkpoints, written by the CLI."""
    out = {}
    for weights in ("ema", "online"):
        ckpt = tmp_path_factory.mktemp("ckpt") / weights
        arfm_main(["convert", "--official", str(release_folder), "--out", str(ckpt), "--weights", weights])
        out[weights] = ckpt
    return out


def fixture_inputs(io: dict, call: str) -> OfficialInputs:
    p = f"in.{call}."
    return OfficialInputs(
        tracks=io[p + "input_ids"],
        step_mask=io[p + "attention_mask"],
        fpn=[io[p + f"fpn_level{i}"] for i in range(3)],
        clip_hidden=io[p + "clip_vision_last_hidden_state"],
        text_hidden=io[p + "clip_text_last_hidden_state"],
        text_pooled=io[p + "clip_text_pooler_output"],
        text_mask=io[p + "text_attention_mask"],
        text_present=~(io[p + "text_input_ids"] == -1).all(1),
    )


def close(name: str, ours: torch.Tensor, official: torch.Tensor, atol: float = ATOL) -> None:
    assert tuple(ours.shape) == tuple(official.shape), f"{name}: shape {tuple(ours.shape)} != {tuple(official.shape)}"
    err = float((ours.detach().float() - official.float()).abs().max())
    assert err <= atol, f"{name}: max abs difference {err:.3g} > {atol}"


@pytest.mark.parametrize("copy", ["ema", "online"])
def test_forward_matches_the_official_code(converted, io, copy):
    """Sampling-style call on the EMA copy (last step, shared t); training-style on the online copy."""
    model = load_model(converted[copy])
    assert model.config.variant == "official" and model.config.depth == 4 and model.config.mlp_hidden == 90
    mid = f"mid.fwd.{copy}."
    inputs = fixture_inputs(io, "fwd")
    out = official_forward(model, inputs, io[f"in.fwd.{copy}.noised"], io[f"in.fwd.{copy}.times"].reshape(-1), io[mid + "camera_motion_class_used"])
    levels = model.official.reduce_levels(inputs.fpn)
    for i in range(3):
        close(f"local_feature_level{i}", levels[i].permute(0, 1, 3, 4, 2), io[mid + f"local_feature_level{i}"])
    close("point_local_features", out.point_local_features, io[mid + "point_local_features"])
    close("point_tokens", out.point_tokens, io[mid + "point_tokens"])
    close("global_tokens_in", out.global_tokens_in, io[mid + "global_tokens_in"])
    close("global_tokens", out.global_tokens, io[mid + "global_tokens"])
    close("text_embedding", out.text_embedding, io[mid + "text_embedding"])
    close("text_attention_mask_after_drop", out.text_mask.float(), io[mid + "text_attention_mask_after_drop"])
    close("pooled_text_embedding", out.pooled_text, io[mid + "pooled_text_embedding"])
    close("camera_motion_embedding", out.camera_embedding, io[mid + "camera_motion_embedding"])
    close("head_global_conditioning", out.pooled_text + out.camera_embedding, io[mid + "head_global_conditioning"][:, 0])
    close("fusion_attention_mask", out.fusion_mask, io[mid + "fusion_attention_mask"])
    close("fusion_inputs_embeds", out.fusion_inputs, io[mid + "fusion_inputs_embeds"])
    close("fusion_last_hidden_state", out.fusion_output, io[mid + "fusion_last_hidden_state"])
    time_embedding = io[mid + "head_time_embedding"].flatten(0, 1)  # (1 or B, D)
    close("head_time_embedding", out.time_embedding[: len(time_embedding)], time_embedding)
    close("fused_point_features", out.fused_point_features, io[f"out.fwd.{copy}.fused_point_features"])
    close("velocity", out.velocity, io[f"out.fwd.{copy}.velocity"])


def test_visibility_quirk_indexes_points_and_can_be_switched_off(converted, io):
    """The release's visibility index is ``n < F`` (point axis); the switch restores ``s < F``."""
    model = load_model(converted["ema"])
    inputs = fixture_inputs(io, "fwd")
    vis = model.official.visibility.weight
    local = official_forward(model, inputs, io["in.fwd.ema.noised"], torch.tensor([0.3]), io["in.fwd.camera_motion"]).point_local_features
    index = io["mid.fwd.ema.visibility_index"]  # (B, N, T): 1 for the first F = 2 points
    assert index[:, :2].eq(1).all() and index[:, 2:].eq(0).all()
    fixed = dataclasses.replace(model.config.quirks, visibility_by_point=False)
    model.official.quirks = fixed
    local_fixed = official_forward(model, inputs, io["in.fwd.ema.noised"], torch.tensor([0.3]), io["in.fwd.camera_motion"]).point_local_features
    # Point 3 at step 0 is observed (s < F) but the release calls it not visible.
    torch.testing.assert_close(local_fixed[:, 3, 0] - local[:, 3, 0], (vis[1] - vis[0]).expand(2, -1), atol=1e-5, rtol=0)


def test_rollout_replays_the_official_sampler(converted, io):
    """5 autoregressive steps, 16-point grid stopping at 15/16, recorded noise and camera classes."""
    model = load_model(converted["ema"])
    out = official_rollout(
        model,
        fixture_inputs(io, "rollout"),
        horizon=5,
        camera=io["in.rollout.camera_motion"],
        num_steps=16,
        noise=io["in.rollout.noise"][:, :, :, 0],
        camera_schedule=io["mid.rollout.camera_motion_class_used"],
        time_grid="official",
    )
    close("ode_time_grid", out.head_t[:15], io["mid.rollout.ode_time_grid"][:15])
    close("head_t", out.head_t, io["mid.rollout.head_t"])
    assert len(out.head_t) == 75 and float(out.head_t.max()) == pytest.approx(14 / 16)
    close("head_x_t", out.head_x_t, io["mid.rollout.head_x_t"][:, :, :, 0])
    close("head_velocity", out.head_velocity, io["mid.rollout.head_velocity"][:, :, :, 0])
    close("ode_states", out.ode_states, io["mid.rollout.ode_states"][:, :, :, :, 0])
    # Positions reach ~210 px, where float32 values are 1.5e-5 apart: allow two such steps.
    close("tracks", out.tracks, io["out.rollout.tracks"], atol=2 * float(np.spacing(np.float32(256))))
    # Our exact grid integrates to t = 1 instead: same first 15 evaluations, one more step.
    exact = official_rollout(model, fixture_inputs(io, "rollout"), 1, io["in.rollout.camera_motion"], 16, io["in.rollout.noise"][:1, :, :, 0],
                             io["mid.rollout.camera_motion_class_used"], time_grid="exact")  # fmt: skip
    assert len(exact.head_t) == 16 and float(exact.head_t[-1]) == pytest.approx(15 / 16)
    close("exact grid, shared evaluations", exact.head_velocity[:15], io["mid.rollout.head_velocity"][:15, :, :, 0])


def test_cached_rollout_equals_the_official_recomputation(converted):
    """Our KV-cached sampler on the official variant (no padded points) == the release's full recomputation."""
    torch.manual_seed(0)
    model = load_model(converted["ema"])
    model.config = dataclasses.replace(model.config, time_grid="official")
    frames = torch.rand(1, 1, 3, 256, 256)
    queries = torch.rand(1, 7, 1, 2) * 256
    with torch.no_grad():
        feats, text = model.backbone.encode_frames(frames), model.backbone.encode_text(["put the banana on the plate"])
        cls = torch.zeros_like(feats.global_tokens[:, :, :1])
    inputs = OfficialInputs(queries, torch.ones(1, 7, 4), feats.local, torch.cat([cls, feats.global_tokens], 2), text.tokens, text.pooled, text.mask, text.present)
    gen = torch.Generator().manual_seed(3)
    noise = torch.stack([torch.randn(1, 7, 2, generator=gen) for _ in range(3)])  # as sample() draws it, step by step
    null = torch.full((1,), 2)
    reference = official_rollout(model, inputs, 3, null, noise=noise, camera_schedule=null.expand(3 * 15, 1))
    ours = model.sample(frames, queries, ["put the banana on the plate"], horizon=3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours[:, 0] - queries, reference.tracks[:, :, 1:] - queries, atol=1e-4, rtol=0)


def full_size_keys(fixture_dir) -> dict[str, tuple[tuple[int, ...], str]]:
    keys = {}
    for line in (fixture_dir / f"{NAME}.full_keys.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _, role = line.split("\t")
        keys[key] = (tuple(int(s) for s in re.findall(r"\d+", shape)), role)
    return keys


def full_size_state_shapes(cfg) -> dict[str, torch.Tensor]:
    """Our full-size state dict without allocating it: the model on the meta device with a
    stand-in backbone of the same widths, plus the real backbones' own keys (SAM 2's Hiera
    cannot be built on meta; CLIP is built from its open_clip config on meta)."""
    from open_clip.factory import get_model_config
    from open_clip.model import CLIP

    from arfm.backbones.sam2_clip import build_sam2_image_encoder

    stand_in = dataclasses.replace(cfg.backbone, kind="tiny", tiny_channels=(256, 256, 256), tiny_global_dim=768, tiny_text_dim=512)
    with torch.device("meta"):
        model = TrackShiftFlowPredictor(dataclasses.replace(cfg, backbone=stand_in))
        clip = CLIP(**get_model_config(cfg.backbone.clip_model))
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    ours.update({f"backbone.sam2.{k}": v for k, v in build_sam2_image_encoder(cfg.backbone.sam2_config, None).state_dict().items()})
    ours.update({f"backbone.clip.{k}": v for k, v in clip.state_dict().items()})
    return ours


@pytest.mark.parametrize("weights", ["ema", "online"])
def test_every_key_of_the_published_model_is_accounted_for(fixture_dir, weights):
    keys = full_size_keys(fixture_dir)
    plan = plan_conversion(keys, weights)
    mapped = {source for sources in plan.targets.values() for source in sources}
    assert mapped | set(plan.dropped) == set(keys) and not mapped & set(plan.dropped)
    own = "ema_model.ema_model." if weights == "ema" else "motion_predictor."
    for key, (_, role) in keys.items():
        used = role == "trained" or role.startswith("frozen")
        assert (key in mapped) == (used and key.startswith(own)), f"{key} ({role})"
    # Every mapped tensor has the shape of the key it fills in the full-size official variant.
    cfg = model_config_from_official({}, {k: s for k, (s, _) in keys.items()}, weights)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.flow_depth, cfg.mlp_hidden, cfg.backbone.kind) == (768, 12, 12, 4, 2046, "sam2-clip")
    ours = full_size_state_shapes(cfg)
    for target, sources in plan.targets.items():
        numel = sum(int(np.prod(keys[s][0])) for s in sources)
        assert target in ours and ours[target].numel() == numel, target
    assert set(ours) - set(plan.targets) == set(UNUSED_OURS)


def test_converter_names_unknown_missing_and_misshaped_keys(release_folder, tmp_path):
    state = load_file(str(release_folder / "model.safetensors"))
    config = (release_folder / "config.json").read_text()

    def attempt(mutated: dict, match: str) -> None:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "config.json").write_text(config)
        save_file(mutated, str(folder / "model.safetensors"))
        with pytest.raises(ValueError, match=match):
            convert_official(folder, tmp_path / "out")
        assert not (tmp_path / "out").exists()

    attempt({**state, "ema_model.ema_model.surprise.weight": torch.zeros(1)}, r"unknown official checkpoint key 'ema_model\.ema_model\.surprise\.weight'")
    missing = "ema_model.ema_model.track_predictor.layers.1.self_attn.k_proj.weight"
    attempt({k: v for k, v in state.items() if k != missing}, r"k_proj.*fusion\.spatial\.0\.attn\.qkv\.weight")
    gone = "ema_model.ema_model.track_predictor_head.predictor.linear.bias"
    attempt({k: v for k, v in state.items() if k != gone}, r"head\.final\.linear\.bias")
    bad = "ema_model.ema_model.camera_motion_embedder.embedding_table.weight"
    attempt({**state, bad: torch.zeros(3, 65)}, "camera_motion_embedder")


def test_official_time_grid_stops_one_step_short():
    x0 = torch.zeros(3)
    unit = lambda x, t: torch.ones_like(x)  # noqa: E731 - dx/dt = 1: the state is the time travelled
    assert float(flow.euler_sample(unit, x0, 16)[0]) == pytest.approx(1.0)
    assert float(flow.euler_sample(unit, x0, 16, grid="official")[0]) == pytest.approx(15 / 16)
    assert float(flow.euler_sample(unit, x0, 4, t_start=0.8, grid="official")[0]) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="grid"):
        flow.euler_sample(unit, x0, 4, grid="torchdiffeq")


def test_official_config_is_the_published_layout():
    cfg = official_model_config()
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.flow_depth, cfg.mlp_hidden, cfg.backbone.text_len, cfg.backbone.sam2_image_size) == (768, 12, 12, 4, 2046, 32, 512)
    assert cfg.time_grid == "exact" and cfg.quirks == OfficialQuirks()
    with pytest.raises(ValueError, match="camera_drop_prob"):
        OfficialQuirks(camera_drop_prob=2.0)
    with pytest.raises(ValueError, match="variant"):
        official_model_config(variant="unofficial")


def test_converted_fixture_runs_through_predict_and_stream(converted, tmp_path, shared_data):
    video = str(shared_data.joinpath(*CLIP))
    out = tmp_path / "pred" / "banana"
    arfm_main(["predict", "--checkpoint", str(converted["ema"]), "--video", video, "--out", str(out), "--num-points", "6", "--horizon", "3"])
    tracks = np.load(out.with_suffix(".npz"))["tracks"]
    assert tracks.shape == (1, 6, 3, 2) and np.isfinite(tracks).all()
    live = tmp_path / "live" / "banana"
    arfm_main(["stream", "--checkpoint", str(converted["ema"]), "--video", video, "--out", str(live), "--horizon", "3", "--max-frames", "2", "--num-points", "4"])
    data = np.load(live.with_suffix(".npz"))
    assert data["horizons"].shape == (2, 4, 3, 2) and np.isfinite(data["horizons"]).all()


@pytest.mark.slow  # imports transformers and builds SAM 2's image encoder: ~10-20 s
def test_hf_clip_weights_give_the_release_clip_features():
    """HF CLIP (the release's backbone) -> our open_clip backbone through the converter's rules:
    patch tokens before the post-layernorm, text states and the unprojected EOT state agree."""
    from transformers import CLIPConfig, CLIPModel

    from arfm.backbones.sam2_clip import Sam2ClipBackbone
    from arfm.config import BackboneConfig

    torch.manual_seed(0)
    hf = CLIPModel(CLIPConfig(
        text_config={"hidden_size": 40, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 64, "patch_size": 32},
        projection_dim=32,
    )).eval()  # fmt: skip
    arch = {
        "embed_dim": 32, "quick_gelu": True,
        "vision_cfg": {"image_size": 64, "layers": 1, "width": 48, "head_width": 24, "mlp_ratio": 64 / 48, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 40, "heads": 2, "layers": 1, "mlp_ratio": 64 / 40},
    }  # fmt: skip
    backbone = Sam2ClipBackbone(BackboneConfig(clip_tokens="hidden", clip_arch=arch, text_len=8))
    prefix = "ema_model.ema_model."
    release = {f"{prefix}global_video_encoder.image_model.image_model.{k}": v for k, v in hf.vision_model.state_dict().items()}
    release.update({f"{prefix}text_encoder.text_encoder.{k}": v for k, v in hf.text_model.state_dict().items()})
    plan = plan_conversion(release)
    state = {t[len("backbone.clip.") :]: torch.cat([release[s] for s in src]) for t, src in plan.targets.items()}
    current = backbone.clip.state_dict()
    state = {k: v.reshape(current[k].shape) for k, v in state.items()}
    assert set(current) - set(state) == {k[len("backbone.clip.") :] for k in UNUSED_OURS}
    backbone.clip.load_state_dict({**current, **state}, strict=True)

    frames = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        ours = backbone.encode_frames(frames).global_tokens  # (1, 2, 4, 48)
        pixels = (frames[0] - backbone.clip_mean) / backbone.clip_std
        official = hf.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]
        torch.testing.assert_close(ours[0], official, atol=1e-5, rtol=0)
        text = backbone.encode_text(["open the drawer", ""])
        ids = backbone.tokenizer(["open the drawer", ""])
        hf_text = hf.text_model(input_ids=ids, attention_mask=(ids > 0).long())
    real = int(text.mask[0].sum())  # <start> open the drawer <end>
    assert real == 5 and text.present.tolist() == [True, False]
    torch.testing.assert_close(text.tokens[0, :real], hf_text.last_hidden_state[0, :real], atol=1e-5, rtol=0)
    torch.testing.assert_close(text.pooled, hf_text.pooler_output, atol=1e-5, rtol=0)


def test_official_variant_trains_with_its_own_blocks():
    """The official variant is a full model of ours too: teacher-forced loss, gradients, no T_C input."""
    from tests.core.factories import small_batch

    torch.manual_seed(0)
    cfg = official_model_config(backbone=dataclasses.replace(official_model_config().backbone, kind="tiny", text_len=8), dim=32, depth=2, heads=2, flow_depth=1, mlp_hidden=40)
    model = TrackShiftFlowPredictor(cfg)
    assert model.head.input_proj.in_features == 2 + 32 and not hasattr(model, "shift_proj")
    assert type(model.fusion.norm).__name__ == "RMSNorm" and model.fusion.temporal[0].mlp.gate.out_features == 40
    with torch.no_grad():  # leave adaLN-Zero so the first step's gradients reach the inputs
        model.head.final.linear.weight.normal_(std=0.02)
        model.head.final.adaLN_modulation[-1].weight.normal_(std=0.02)
        for block in model.head.blocks:
            block.adaLN_modulation[-1].weight.normal_(std=0.02)
    loss = model.loss(small_batch())
    loss.backward()
    assert torch.isfinite(loss)
    for param in (model.official.local_proj.weight, model.official.visibility.weight, model.official.camera.weight, model.official.text_proj.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0


@pytest.mark.slow  # builds the 310 M-parameter published-size model and runs SAM 2 at 512 px on a CPU (~1-2 min)
def test_published_size_official_model_samples_with_real_backbones():
    torch.manual_seed(0)
    model = TrackShiftFlowPredictor(official_model_config(horizon=2, sample_steps=2)).eval()
    with torch.no_grad():
        feats = model.backbone.encode_frames(torch.rand(1, 1, 3, 256, 256))
        text = model.backbone.encode_text(["open the drawer"])
    assert [tuple(level.shape[-3:]) for level in feats.local] == [(256, 128, 128), (256, 64, 64), (256, 32, 32)]
    assert tuple(feats.global_tokens.shape) == (1, 1, 49, 768) and tuple(text.tokens.shape) == (1, 32, 512)
    assert int(text.mask.sum()) == 5 and tuple(text.pooled.shape) == (1, 512)
    out = model.sample(torch.rand(1, 1, 3, 256, 256), torch.rand(1, 4, 1, 2) * 256, ["open the drawer"], horizon=2)
    assert out.shape == (1, 1, 4, 2, 2) and torch.isfinite(out).all()
