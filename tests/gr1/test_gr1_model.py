"""GR-1 policy: track token (start + every shift matter, permutation invariance), causal masking,
query tokens, backbone loading errors, checkpoints (paper §3.5, §4.4)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from integrations.gr1.configuration_gr1 import GR1Config, tiny_gr1_config
from arfm.backbones.text import hashed_word_ids
from integrations.gr1.encoders_gr1 import build_vision_encoder
from integrations.gr1.modeling_gr1 import GR1Policy, gr1_loss, normalize_patches, patchify

B, T, N = 2, 4, 6


def make_policy(**overrides) -> GR1Policy:
    """Tiny policy with unit-gain random weights: GPT-2's 0.02 init makes one token's influence
    ~1e-5 of the output, too faint to tell real dependence from float noise."""
    torch.manual_seed(0)
    policy = GR1Policy(tiny_gr1_config(window=T, **overrides)).eval()
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.startswith("vision."):
                continue
            if p.ndim == 2 and "query" not in name and "queries" not in name:
                p.normal_(0, p.shape[1] ** -0.5)
            elif "quer" in name or name.endswith("no_tracks") or "embed_timestep" in name:
                p.normal_(0, 1.0)
    return policy


def inputs(policy: GR1Policy, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    return {
        "static": torch.randn(B, T, 1 + c.num_patches, policy.vision.embed_dim, generator=g),
        "gripper": torch.randn(B, T, 1 + c.num_patches, policy.vision.embed_dim, generator=g),
        "text": policy.encode_text(["open the drawer", "lift the red block"]),
        "robot_obs": torch.randn(B, T, 15, generator=g),
        "tracks": torch.rand(B, T, N, c.track_len, 2, generator=g) * 200,
    }


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` differ by more than float noise relative to their scale
    (fresh heads output values near 1e-3, so an absolute tolerance would hide real changes)."""
    return bool((a - b).abs().max() > 1e-4 * a.abs().max())


def run(policy: GR1Policy, x: dict, tracks: torch.Tensor | None = None, valid: torch.Tensor | None = None):
    tokens = policy.encode_tracks(tracks, batch_shape=(B, T)) if policy.config.use_tracks else None
    with torch.no_grad():
        return policy(x["static"], x["gripper"], x["text"], x["robot_obs"], tokens, valid)


def test_token_layout_matches_published_gr1() -> None:
    c = GR1Config()
    assert (c.hidden, c.layers, c.heads, c.inner, c.window) == (384, 12, 12, 1536, 10)
    assert (c.resampler_depth, c.resampler_latents, c.video_offset, c.num_patches) == (3, 9, 3, 196)
    # [lang, state, track, 9 + CLS, 9 + CLS, ACT, 10 OBS, 10 OBS_HAND]
    assert c.tokens_per_step == 1 + 1 + 1 + 10 + 10 + 1 + 10 + 10
    assert dataclasses.replace(c, use_tracks=False).tokens_per_step == 43
    policy = make_policy()
    assert policy.step_is_query.tolist() == [False] * 23 + [True] * 21


def test_start_position_and_every_shift_change_the_action() -> None:
    """A track encoder that dropped the shifts (the official release's typo) fails here."""
    policy = make_policy()
    x = inputs(policy)
    base = run(policy, x, x["tracks"]).arm
    moved = x["tracks"].clone()
    moved[:, :, 0] += torch.tensor([5.0, -3.0])  # whole first track translated: start changes, shifts do not
    assert differs(run(policy, x, moved).arm, base)
    base_tokens = policy.encode_tracks(x["tracks"])
    for step in range(1, policy.config.track_len):
        bent = x["tracks"].clone()
        bent[:, :, 2, step:] += torch.tensor([2.0, 1.0])  # changes exactly one shift of track 2
        assert differs(policy.encode_tracks(bent), base_tokens), f"shift {step - 1} does not reach the track token"
        assert differs(run(policy, x, bent).arm, base), f"shift {step - 1} does not reach the action"


def test_track_token_is_invariant_to_track_order() -> None:
    policy = make_policy()
    x = inputs(policy)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    a = run(policy, x, x["tracks"])
    b = run(policy, x, x["tracks"][:, :, perm])
    torch.testing.assert_close(a.arm, b.arm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.video_static, b.video_static, atol=1e-5, rtol=1e-5)


def test_no_tracks_uses_learned_embedding_and_differs_from_tracks() -> None:
    policy = make_policy()
    x = inputs(policy)
    none_tokens = policy.encode_tracks(None, batch_shape=(B, T))
    assert torch.equal(none_tokens, policy.no_tracks.expand(B, T, -1))
    assert differs(run(policy, x, None).arm, run(policy, x, x["tracks"]).arm)
    # has_tracks=False on one sample gives exactly the no-tracks token there
    has = torch.tensor([[True] * T, [False] * T])
    mixed = policy.encode_tracks(x["tracks"], has_tracks=has)
    assert torch.equal(mixed[1], none_tokens[1]) and differs(mixed[0], none_tokens[0])
    with pytest.raises(ValueError, match="tracks must be"):
        policy.encode_tracks(x["tracks"][..., :5, :])


@pytest.mark.parametrize("what", ["static", "gripper", "robot_obs", "tracks"])
def test_changing_step_t_plus_1_leaves_outputs_up_to_t_unchanged(what: str) -> None:
    policy = make_policy()
    x = inputs(policy)
    base = run(policy, x, x["tracks"])
    t = 1
    changed = {k: v.clone() for k, v in x.items()}
    changed[what][:, t + 1] += 5.0 * torch.randn(changed[what][:, t + 1].shape, generator=torch.Generator().manual_seed(1))
    out = run(policy, changed, changed["tracks"])
    for name in ("arm", "gripper_logit", "video_static", "video_gripper"):
        before, after = getattr(base, name), getattr(out, name)
        torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=1e-6, rtol=1e-6)
        assert differs(after[:, t + 1 :], before[:, t + 1 :]), f"{what} at t+1 does not reach {name}"


def test_query_tokens_are_not_attended_by_later_tokens() -> None:
    policy = make_policy()
    x = inputs(policy)
    base = run(policy, x, x["tracks"])
    with torch.no_grad():
        policy.obs_queries.add_(torch.randn_like(policy.obs_queries))  # not a constant: LayerNorm would erase it
        policy.obs_hand_queries.add_(torch.randn_like(policy.obs_hand_queries))
    out = run(policy, x, x["tracks"])  # ACT of this and later steps never reads the OBS queries
    torch.testing.assert_close(out.arm, base.arm, atol=1e-6, rtol=1e-6)
    assert differs(out.video_static, base.video_static)
    with torch.no_grad():
        policy.action_query.add_(torch.randn_like(policy.action_query))
    out2 = run(policy, x, x["tracks"])  # the OBS queries never read ACT either
    torch.testing.assert_close(out2.video_static, out.video_static, atol=1e-6, rtol=1e-6)
    mask = policy.attention_mask(torch.ones(1, T, dtype=torch.bool))[0, 0]
    k = policy.config.tokens_per_step
    query_cols = policy.step_is_query.repeat(T)
    assert not mask[:, query_cols].any()
    assert not mask[0, 1:].any() and mask[k + 3, : k + 3][~query_cols[: k + 3]].all()


def test_padded_steps_do_not_change_valid_outputs() -> None:
    policy = make_policy()
    x = inputs(policy)
    valid = torch.tensor([[True, True, False, False]] * B)
    a = run(policy, x, x["tracks"], valid)
    changed = {k: v.clone() for k, v in x.items()}
    changed["static"][:, 2:] = 0
    b = run(policy, changed, changed["tracks"], valid)
    torch.testing.assert_close(a.arm[:, :2], b.arm[:, :2])
    with pytest.raises(ValueError, match="valid"):
        run(policy, x, x["tracks"], torch.zeros(B, T, dtype=torch.bool))


def test_policy_without_tracks_and_loss_parts() -> None:
    policy = make_policy(use_tracks=False)
    x = inputs(policy)
    out = run(policy, x)
    assert out.arm.shape == (B, T, 6) and out.gripper_logit.shape == (B, T)
    assert out.video_static.shape == (B, T, 16, 8 * 8 * 3)
    with pytest.raises(ValueError, match="use_tracks=False"):
        policy.encode_tracks(None, batch_shape=(B, T))
    batch = {
        "rgb_static": torch.randint(0, 255, (B, T, 3, 40, 40), dtype=torch.uint8),
        "rgb_gripper": torch.randint(0, 255, (B, T, 3, 20, 20), dtype=torch.uint8),
        "future_static": torch.randint(0, 255, (B, T, 3, 40, 40), dtype=torch.uint8),
        "future_gripper": torch.randint(0, 255, (B, T, 3, 20, 20), dtype=torch.uint8),
        "robot_obs": x["robot_obs"], "actions": torch.rand(B, T, 7) * 2 - 1,
        "valid": torch.ones(B, T, dtype=torch.bool), "future_valid": torch.ones(B, T, dtype=torch.bool),
        "instruction": ["a", "b"],
    }
    loss, parts = gr1_loss(policy, batch)
    expected = 100 * parts["arm"] + parts["gripper"] + parts["video_static"] + parts["video_gripper"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_patchify_and_patch_normalisation_by_hand() -> None:
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    patches = patchify(img, 2)  # (2, 4, 12)
    assert patches.shape == (2, 4, 12)
    # patch 1 = rows 0-1, cols 2-3; first entry = pixel (0, 2) channel 0, then channels 1, 2
    assert patches[0, 1, :3].tolist() == [img[0, 0, 0, 2].item(), img[0, 1, 0, 2].item(), img[0, 2, 0, 2].item()]
    norm = normalize_patches(patches)
    torch.testing.assert_close(norm.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.var(-1), torch.ones(2, 4), atol=1e-3, rtol=0)


def test_save_and_load_round_trip(tmp_path) -> None:
    policy = make_policy()
    x = inputs(policy)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = GR1Policy.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == policy.config
    torch.testing.assert_close(run(loaded, x, x["tracks"]).arm, run(policy, x, x["tracks"]).arm)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        (tmp_path / "ckpt" / "model.safetensors").unlink()
        GR1Policy.from_pretrained(tmp_path / "ckpt")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="'hidden'"):
        GR1Config(hidden=100, heads=12)
    with pytest.raises(ValueError, match="'track_encoder'"):
        GR1Config(track_len=8)
    with pytest.raises(ValueError, match="'text_encoder'"):
        tiny_gr1_config(text_encoder="bert")
    assert tiny_gr1_config(track_len=8).track_encoder.num_steps == 8
    with pytest.raises(ValueError, match="unknown fields: bogus"):
        GR1Config.from_dict({**GR1Config().to_dict(), "bogus": 1})
    assert GR1Config.from_dict(tiny_gr1_config().to_dict()) == tiny_gr1_config()


def test_vision_checkpoint_loading_and_errors(tmp_path) -> None:
    kwargs = dict(model="vit_tiny_patch16_224", image_size=32, patch_size=8, overrides={"embed_dim": 48, "depth": 1, "num_heads": 2})
    with pytest.raises(FileNotFoundError, match="mae_pretrain_vit_base.pth"):
        build_vision_encoder(checkpoint=str(tmp_path / "missing.pth"), **kwargs)
    torch.manual_seed(1)
    source = build_vision_encoder(checkpoint=None, **kwargs)
    mae = {"model": {**source.state_dict(), "decoder_embed.weight": torch.zeros(2, 2)}, "args": "namespace"}
    torch.save(mae, tmp_path / "mae.pth")
    gr1 = {"state_dict": {f"model_mae.{k}": v for k, v in source.state_dict().items()} | {"transformer.w": torch.zeros(1)}}
    torch.save(gr1, tmp_path / "gr1.pth")
    for name in ("mae.pth", "gr1.pth"):
        torch.manual_seed(2)
        loaded = build_vision_encoder(checkpoint=str(tmp_path / name), **kwargs)
        for k, v in source.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), (name, k)
    torch.save({"model": {"cls_token": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="lacks"):
        build_vision_encoder(checkpoint=str(tmp_path / "bad.pth"), **kwargs)


def test_clip_checkpoint_missing_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="clip.bin"):
        GR1Policy(tiny_gr1_config(text_encoder="clip", clip_checkpoint=str(tmp_path / "clip.bin")))


def test_hashed_words_are_stable() -> None:
    assert hashed_word_ids("Open the drawer!", 4096) == hashed_word_ids("open THE drawer", 4096)
    assert len(hashed_word_ids("push the red block left", 4096)) == 5


@pytest.mark.slow
def test_published_size_policy_builds_with_196_patches() -> None:
    policy = GR1Policy(GR1Config()).eval()
    feats = policy.encode_images(torch.rand(1, 1, 3, 200, 200))
    assert feats.shape == (1, 1, 197, 768)
    assert policy.encode_text(["open the drawer"]).shape == (1, 512)
    assert not any(p.requires_grad for p in policy.vision.parameters())


# ----- official-compatibility modes (issue 12; parity itself: tests/gr1/test_official_gr1.py) -----


def official_tiny(**overrides) -> dict:
    from track_encoder import official_track_encoder_config

    te = official_track_encoder_config(num_steps=16, dim=32, depth=1, heads=2)
    return dict(compat="arfm_robotics", action_chunk=3, gpt_activation="relu", track_encoder=te, **overrides)


def test_official_config_validation_and_token_layout() -> None:
    with pytest.raises(ValueError, match="'compat'"):
        tiny_gr1_config(compat="openai")
    with pytest.raises(ValueError, match="'use_tracks'"):
        tiny_gr1_config(compat="bytedance")
    with pytest.raises(ValueError, match="'action_chunk'"):
        tiny_gr1_config(action_chunk=10)
    with pytest.raises(ValueError, match="'max_positions'"):
        tiny_gr1_config(**official_tiny(max_positions=100))
    c = tiny_gr1_config(**official_tiny())
    # [lang, state, 9 + CLS, 9 + CLS, track] + 3 action-chunk queries + 10 + 10 obs queries
    assert (c.obs_tokens_per_step, c.tokens_per_step) == (23, 46)
    # bytedance's released evaluation (act_pred only): 1+1+9+1+9+1 + 1 action query = 23, no obs queries
    assert tiny_gr1_config(compat="bytedance", use_tracks=False, predict_video=False).tokens_per_step == 23
    assert GR1Config.from_dict(c.to_dict()) == c


def test_official_mode_is_causal_chunked_and_masks_its_queries() -> None:
    policy = make_policy(**official_tiny())
    assert not hasattr(policy, "no_tracks") and policy.wpe.shape == (1024, 64)
    x = inputs(policy)
    base = run(policy, x, x["tracks"])
    assert base.arm_chunk.shape == (B, T, 3, 6) and base.gripper_chunk.shape == (B, T, 3)
    torch.testing.assert_close(base.arm, base.arm_chunk[:, :, 0])
    changed = {k: v.clone() for k, v in x.items()}
    changed["static"][:, 2] += 5.0
    out = run(policy, changed, changed["tracks"])
    torch.testing.assert_close(out.arm_chunk[:, :2], base.arm_chunk[:, :2], atol=1e-6, rtol=1e-6)
    assert differs(out.arm_chunk[:, 2:], base.arm_chunk[:, 2:])
    with torch.no_grad():
        policy.obs_queries.add_(torch.randn_like(policy.obs_queries))
    torch.testing.assert_close(run(policy, x, x["tracks"]).arm_chunk, base.arm_chunk, atol=1e-6, rtol=1e-6)
    # no learned "no tracks" token: one all-zero track (the official empty slot), not the given tracks
    none = policy.encode_tracks(None, batch_shape=(B, T))
    zero = policy.encode_tracks(torch.zeros(1, 1, 1, 16, 2))
    torch.testing.assert_close(none, zero.expand(B, T, -1))
    assert differs(run(policy, x, None).arm, base.arm)


def test_official_shared_decoder_and_language_norm() -> None:
    policy = make_policy(**official_tiny())
    assert hasattr(policy, "decoder") and not hasattr(policy, "decoder_static")
    x = inputs(policy)
    a = run(policy, x, x["tracks"])
    scaled = dict(x, text=x["text"] * 7.0)  # the official forward L2-normalises the CLIP embedding
    torch.testing.assert_close(run(policy, scaled, x["tracks"]).arm, a.arm, atol=1e-5, rtol=1e-5)
    assert a.video_static.shape == a.video_gripper.shape == (B, T, 16, 8 * 8 * 3)
