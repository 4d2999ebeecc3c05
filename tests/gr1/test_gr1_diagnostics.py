"""The track-sensitivity check of a GR-1 policy: numbers that respond to the track token, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gr1_testdata import write_fake_calvin  # noqa: E402

from integrations.gr1.configuration_gr1 import tiny_gr1_config  # noqa: E402
from integrations.gr1.data import CalvinWindowDataset, collate_gr1  # noqa: E402
from integrations.gr1.diagnostics import track_sensitivity  # noqa: E402
from integrations.gr1.modeling_gr1 import GR1Policy  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> CalvinWindowDataset:
    return CalvinWindowDataset(write_fake_calvin(tmp_path_factory.mktemp("calvin") / "training"), max_points=64)


class TrackReadingPolicy:
    """A stand-in policy whose every arm action is the x pixel of point 0 at the last track step
    (0 without tracks), so the sensitivity numbers can be computed by hand."""

    config = SimpleNamespace(use_tracks=True, arm_dim=6)

    def eval(self):
        return self

    def encode_images(self, images):
        return images

    def encode_text(self, instructions):
        return instructions

    def encode_tracks(self, tracks, point_mask=None, has_tracks=None, batch_shape=None):
        if tracks is None:
            return torch.zeros(*batch_shape, 1)
        return tracks[:, :, 0, -1, :1]  # (B, T, 1)

    def __call__(self, static, gripper, text, robot_obs, tokens, valid):
        return SimpleNamespace(arm=tokens.expand(-1, -1, 6))


def test_sensitivity_numbers_match_a_hand_computed_policy(dataset):
    result = track_sensitivity(TrackReadingPolicy(), dataset, windows=len(dataset))  # every window, in some order
    batch = collate_gr1([dataset[i] for i in range(len(dataset))])
    valid = batch["valid"].bool()
    token = batch["tracks"][:, :, 0, -1, 0][valid]  # (valid steps,)
    target = batch["actions"][..., :6].float()[valid]  # (valid steps, 6)
    assert result["change_gt_vs_none"] == pytest.approx(float(token.abs().mean()), rel=1e-5)
    assert result["error_none"] == pytest.approx(result["action_scale"], rel=1e-6)
    assert result["action_scale"] == pytest.approx(float(target.abs().mean()), rel=1e-5)
    assert result["error_gt"] == pytest.approx(float((token[:, None] - target).abs().mean()), rel=1e-5)
    assert result["change_gt_vs_shuffled"] > 0  # windows' tracks differ


def test_sensitivity_rejects_a_policy_without_tracks(dataset):
    with pytest.raises(ValueError, match="without tracks"):
        track_sensitivity(GR1Policy(tiny_gr1_config(use_tracks=False)), dataset)


class ConstantPlainPolicy(TrackReadingPolicy):
    """A stand-in GR-1 without the track token whose arm actions are all 0.5."""

    config = SimpleNamespace(use_tracks=False, arm_dim=6)

    def __call__(self, static, gripper, text, robot_obs, tokens, valid):
        assert tokens is None
        return SimpleNamespace(arm=torch.full((*robot_obs.shape[:2], 6), 0.5))


def test_sensitivity_compares_a_plain_policy_on_the_same_windows(dataset):
    result = track_sensitivity(TrackReadingPolicy(), dataset, windows=len(dataset), plain=ConstantPlainPolicy())
    batch = collate_gr1([dataset[i] for i in range(len(dataset))])
    target = batch["actions"][..., :6].float()[batch["valid"].bool()]
    assert result["error_plain"] == pytest.approx(float((target - 0.5).abs().mean()), rel=1e-5)
    with pytest.raises(ValueError, match="plain must be"):
        track_sensitivity(TrackReadingPolicy(), dataset, plain=TrackReadingPolicy())


class TrackReadingPolicyWithSizes(TrackReadingPolicy):
    config = SimpleNamespace(use_tracks=True, arm_dim=6, track_len=16, track_frame_size=32)  # the fake frames are 32 px


def test_a_predictor_s_tracks_replace_the_ground_truth(dataset):
    """``no-movement`` through the closed-loop conditioner: every future position is the current one,
    so the stand-in policy's action is the current x pixel of point 0."""
    from arfm.predictors import build_predictor

    result = track_sensitivity(TrackReadingPolicyWithSizes(), dataset, windows=4, predictors={"still": build_predictor("no-movement")})
    batch = collate_gr1([dataset[i] for i in range(len(dataset))])
    picked = torch.from_numpy(__import__("numpy").random.default_rng(0).choice(len(dataset), 4, replace=False))
    valid = batch["valid"].bool()[picked]
    now = batch["tracks"][picked][:, :, 0, 0, 0][valid]  # current x of point 0
    target = batch["actions"][picked][..., :6].float()[valid]
    assert result["error_still"] == pytest.approx(float((now[:, None] - target).abs().mean()), rel=1e-4)
    assert result["error_still"] != pytest.approx(result["error_gt"])  # the fake tracks move
    real = valid[..., None].expand(-1, -1, batch["tracks"].shape[2]) & batch["track_mask"][picked]
    moved = (batch["tracks"][picked][..., 1:, :] - batch["tracks"][picked][..., :1, :]).norm(dim=-1).mean(-1)[real]
    assert result["track_ade_still"] == pytest.approx(float(moved.mean()), rel=1e-4)  # standing still: ADE = how far they move


def test_gripper_agreement_of_a_real_policy(dataset):
    """A real (untrained) GR-1: the agreement shares are fractions, and repeating the robot's last
    gripper command scores exactly what the data says."""
    torch.manual_seed(0)
    result = track_sensitivity(GR1Policy(tiny_gr1_config()), dataset, windows=len(dataset))
    batch = collate_gr1([dataset[i] for i in range(len(dataset))])
    valid = batch["valid"].bool()
    repeat = ((batch["robot_obs"][..., 14] > 0) == (batch["actions"][..., 6] > 0))[valid].float().mean()
    assert result["gripper_agreement_repeat_state"] == pytest.approx(float(repeat))
    assert 0.0 <= result["gripper_agreement_gt"] <= 1.0 and 0.0 <= result["gripper_agreement_none"] <= 1.0
