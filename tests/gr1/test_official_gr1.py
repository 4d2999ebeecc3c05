"""Official GR-1 checkpoints load exactly (issue 12): ARFM robotics GR-1 and bytedance GR-1.

Fixtures: ``../shared/fixtures/official/{arfm_robotics_gr1,bytedance_gr1}.*`` (random weights,
reduced sizes, every intermediate and output computed by the official code; README items 17-18).
Each is converted with :mod:`integrations.gr1.convert`, fed the fixture's ``in.*`` tensors, and
compared with its ``mid.*`` / ``out.*`` tensors.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch

from integrations.gr1.convert import OfficialSizes, config_from_official, convert_official_gr1, convert_state_dict, load_checkpoint, main, map_key
from integrations.gr1.layers_gr1 import official_patch_targets
from integrations.gr1.modeling_gr1 import GR1Policy
from integrations.gr1.policy_runner import GR1Runner
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "official"
ATOL = 1e-5
# reduced fixture sizes that the weights do not record (config.json of each fixture)
ARFM_SIZES = OfficialSizes(heads=4, resampler_heads=2, track_heads=4, vit_heads=4, text_encoder="hashed", track_frame_size=256)
BYTEDANCE_SIZES = OfficialSizes(heads=4, resampler_heads=2, vit_heads=4, text_encoder="hashed")


def load(name: str):
    safetensors = pytest.importorskip("safetensors.torch")
    if not (FIXTURES / f"{name}.safetensors").is_file():
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    return safetensors.load_file(FIXTURES / f"{name}.safetensors"), safetensors.load_file(FIXTURES / f"{name}.io.safetensors")


def robot_obs(io: dict) -> torch.Tensor:
    """CALVIN ``robot_obs (B, T, 15)`` from the fixture's arm state and gripper one-hot ([0, 1] = open = +1)."""
    b, t = io["in.arm_state"].shape[:2]
    obs = torch.zeros(b, t, 15)
    obs[..., :6] = io["in.arm_state"]
    obs[..., 14] = io["in.gripper_state"][..., 1] * 2 - 1
    return obs


def run(policy: GR1Policy, io: dict) -> tuple[dict, object]:
    """Forward the fixture inputs, capturing our counterparts of the official intermediates."""
    b, t = io["in.attention_mask"].shape
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        policy.embed_ln.register_forward_hook(lambda m, i, o: captured.__setitem__("gpt_inputs_embeds", o)),
        policy.ln_f.register_forward_hook(lambda m, i, o: captured.__setitem__("gpt_last_hidden_state", o)),
    ]
    with torch.no_grad():
        for cam, key in (("static", "in.rgb"), ("hand", "in.hand_rgb")):
            feats = policy.vision.forward_features(io[key].flatten(0, 1))  # fixture images are already normalised
            captured[f"mae_{cam}_cls"], captured[f"mae_{cam}_patches"] = feats[:, 0], feats[:, 1:]
            captured[f"resampler_{cam}"] = policy.resampler(feats[:, 1:])[:, None]
            captured[f"feats_{cam}"] = feats.view(b, t, *feats.shape[1:])
        tokens = None
        if policy.config.use_tracks:
            tracks = io["in.future_tracks"]
            captured["track_encoder_cls"] = policy.track_encoder(tracks.flatten(0, 1) / 128 - 1)
            tokens = policy.encode_tracks(tracks)
        out = policy(captured["feats_static"], captured["feats_hand"], io["in.clip_text_features"], robot_obs(io), tokens, io["in.attention_mask"].bool())
    for h in hooks:
        h.remove()
    return captured, out


def check_parity(policy: GR1Policy, io: dict) -> None:
    captured, out = run(policy, io)
    for key in [k for k in io if k.startswith("mid.") and k != "mid.gpt_attention_mask"]:
        torch.testing.assert_close(captured[key.removeprefix("mid.")], io[key], atol=ATOL, rtol=0, msg=lambda m: f"{key}: {m}")
    arm, grip = io["out.arm_action_preds"], io["out.gripper_action_preds"][..., 0]
    if arm.ndim == 3:  # bytedance: one action per step
        arm, grip = arm[:, :, None], grip[:, :, None]
    torch.testing.assert_close(out.arm_chunk, arm, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.gripper_chunk, grip, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.arm, arm[:, :, 0], atol=ATOL, rtol=0)
    # 768 pixel outputs of order 10 through a 16-head decoder: relative tolerance
    torch.testing.assert_close(out.video_static, io["out.obs_preds"], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(out.video_gripper, io["out.obs_hand_preds"], atol=ATOL, rtol=1e-5)
    b, t = io["in.attention_mask"].shape
    for key, images in (("out.obs_targets", "in.rgb"), ("out.obs_hand_targets", "in.hand_rgb")):
        targets = official_patch_targets(io[images].flatten(0, 1), policy.config.patch_size).view(b, t, -1, io[key].shape[-1])
        torch.testing.assert_close(targets, io[key], atol=ATOL, rtol=1e-5)
    # the GPT-2 attention mask: the step mask over observation tokens, 0 for every query token
    k = policy.config.tokens_per_step
    keys = (~policy.step_is_query).repeat(t)[None] & io["in.attention_mask"].bool().repeat_interleave(k, dim=1)
    assert torch.equal(keys.long(), io["mid.gpt_attention_mask"])


@pytest.fixture(scope="module")
def arfm():
    state, io = load("arfm_robotics_gr1")
    policy, notes = convert_official_gr1(state, None, ARFM_SIZES)
    return state, io, policy.eval(), notes


def test_arfm_robotics_config_is_read_from_the_weights(arfm):
    _, _, policy, _ = arfm
    c = policy.config
    assert (c.compat, c.hidden, c.layers, c.window, c.action_chunk, c.max_positions) == ("arfm_robotics", 64, 2, 3, 4, 128)
    assert (c.resampler_latents, c.video_queries, c.image_size, c.patch_size, c.track_len) == (3, 4, 32, 16, 4)
    assert c.tokens_per_step == 23  # 1+1+3+1+3+1+1 + 4 + 4 + 4, as the fixture's GPT-2 input
    assert c.track_encoder.start_encoding == "official" and c.track_encoder.dim == 48


def test_arfm_robotics_gr1_matches_the_official_forward(arfm):
    _, io, policy, _ = arfm
    check_parity(policy, io)


def test_bytedance_gr1_matches_the_official_forward():
    state, io = load("bytedance_gr1")
    policy, notes = convert_official_gr1(state, None, BYTEDANCE_SIZES)
    assert policy.config.compat == "bytedance" and not hasattr(policy, "wpe") and policy.config.tokens_per_step == 19
    assert any("attn.masked_bias: dropped" in n for n in notes)
    check_parity(policy.eval(), io)


def test_parity_depends_on_the_absolute_positions(arfm):
    """Guards against a parity that would also hold without the wpe table (it must matter)."""
    _, io, policy, _ = arfm
    _, reference = run(policy, io)
    with torch.no_grad():
        saved = policy.wpe.clone()
        policy.wpe.zero_()
        _, without = run(policy, io)
        policy.wpe.copy_(saved)
    assert (without.arm_chunk - reference.arm_chunk).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["arfm_robotics_gr1", "bytedance_gr1"])
def test_full_size_official_keys_are_all_accounted_for(name):
    path = FIXTURES / f"{name}.full_keys.txt"
    if not path.is_file():
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    shapes = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            shapes[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    assert len(shapes) == int(re.search(r"# (\d+) tensors", path.read_text()).group(1))
    config = config_from_official(shapes, OfficialSizes(text_encoder="hashed"))
    assert (config.hidden, config.layers, config.window, config.image_size, config.resampler_latents) == (384, 12, 10, 224, 9)
    with torch.device("meta"):
        ours = GR1Policy(config).state_dict()
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    converted, notes = convert_state_dict(fake, ours)
    assert set(converted) == {k for k in ours if not k.startswith("text.")}
    assert len(notes) == len(shapes)  # every official key is mapped or dropped with a reason


def test_unknown_missing_and_absent_mae_keys_are_named(arfm):
    state, _, policy, _ = arfm
    with pytest.raises(KeyError, match="decoder_extra"):
        map_key("decoder_extra.weight")
    expected = policy.state_dict()
    with pytest.raises(KeyError, match="pred_gripper.bias"):
        convert_state_dict({k: v for k, v in state.items() if k != "pred_gripper_act.bias"}, expected)
    no_mae = {k: v for k, v in state.items() if not k.startswith("model_mae.")}
    with pytest.raises(KeyError, match="--mae"):
        convert_official_gr1(no_mae, None, ARFM_SIZES)


def test_cli_converts_a_main_py_checkpoint_and_the_mae_then_round_trips(arfm, tmp_path):
    """Main.py saves without model_mae.*: the MAE comes from its own (pickled) checkpoint."""
    state, io, policy, _ = arfm
    policy_file, mae_file = tmp_path / "robotics.pth", tmp_path / "mae.pth"
    torch.save({"module." + k: v for k, v in state.items() if not k.startswith("model_mae.")}, policy_file)
    mae = {k.removeprefix("model_mae."): v for k, v in state.items() if k.startswith("model_mae.")}
    torch.save({"model": {**mae, "decoder_pred.weight": torch.zeros(3, 3), "mask_token": torch.zeros(1, 1, 64)}}, mae_file)
    out = main([
        "--official", str(policy_file), "--mae", str(mae_file), "--out", str(tmp_path / "converted"), "--heads", "4",
        "--resampler-heads", "2", "--track-heads", "4", "--vit-heads", "4", "--text-encoder", "hashed", "--track-frame-size", "256",
    ])
    assert {"config.json", "model.safetensors", "conversion.json"} <= {p.name for p in out.iterdir()}
    loaded = GR1Policy.from_pretrained(out).eval()
    assert loaded.config.compat == "arfm_robotics"
    _, expected = run(policy, io)
    _, got = run(loaded, io)
    torch.testing.assert_close(got.arm_chunk, expected.arm_chunk, atol=0, rtol=0)
    torch.testing.assert_close(got.arm_chunk, io["out.arm_action_preds"], atol=ATOL, rtol=0)


def test_load_checkpoint_refuses_untrusted_pickles(tmp_path):
    path = tmp_path / "snapshot.pt"
    torch.save({"state_dict": {"_orig_mod.a": torch.ones(2)}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(ValueError, match="--allow-pickle"):
        load_checkpoint(path)
    assert torch.equal(load_checkpoint(path, allow_pickle=True)["a"], torch.ones(2))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_converted_policy_runs_in_the_calvin_runner(arfm):
    """The evaluation drives a converted policy unchanged: window, tracks and 'no tracks' steps."""
    _, _, policy, _ = arfm
    runner = GR1Runner(policy)
    runner.reset("open the drawer")
    rng = np.random.default_rng(0)
    for step in range(policy.config.window + 1):  # one more than the window: it slides
        obs = {
            "rgb_obs": {"rgb_static": rng.integers(0, 255, (200, 200, 3), dtype=np.uint8), "rgb_gripper": rng.integers(0, 255, (84, 84, 3), dtype=np.uint8)},
            "robot_obs": rng.normal(size=15),
        }
        tracks = None if step == 1 else torch.rand(5, policy.config.track_len, 2) * 200
        action = runner.act(obs, tracks)
        assert action.shape == (7,) and np.isfinite(action).all() and abs(action[6]) == 1
    assert len(runner.static) == policy.config.window


def test_dropped_causal_mask_buffers_are_checked():
    state, _ = load("bytedance_gr1")
    policy, _ = convert_official_gr1(state, None, BYTEDANCE_SIZES)
    broken = dict(state, **{"transformer.h.0.attn.masked_bias": torch.tensor(-1e9)})
    with pytest.raises(ValueError, match="masked_bias"):
        convert_state_dict(broken, policy.state_dict())
