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
