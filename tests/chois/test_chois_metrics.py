"""Table 2 metrics on hand-made motions with hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from integrations.chois import metrics as M
from integrations.chois.evaluator import frechet_distance, load_evaluator, r_precision


def _still_body(frames: int = 10, foot_height: float = 0.0) -> torch.Tensor:
    joints = torch.zeros(frames, 24, 3, dtype=torch.float64)
    joints[:, :, 2] = 1.0
    joints[:, list(M.FOOT_JOINTS), 2] = foot_height
    return joints


def test_object_position_errors():
    gt = torch.zeros(61, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[0] = torch.tensor([0.03, 0.04, 0.0])  # 5 cm at the start
    pred[-1] = torch.tensor([0.0, 0.0, 0.1])  # 10 cm at the end (z only)
    pred[30] = torch.tensor([0.06, 0.08, 0.5])  # waypoint: x-y error 10 cm, z ignored
    assert M.start_object_error(pred, gt) == pytest.approx(5.0)
    assert M.end_object_error(pred, gt) == pytest.approx(10.0)
    assert M.waypoint_xy_error(pred, gt, every=30) == pytest.approx((10.0 + 0.0) / 2)  # frames 30 and 60
    assert M.object_position_error(pred, gt) == pytest.approx((5 + 10 + math.hypot(10, 50)) / 61)
    with pytest.raises(ValueError, match="waypoint"):
        M.waypoint_xy_error(pred[:10], gt[:10], every=30)


def test_feet_height_and_sliding():
    joints = _still_body(foot_height=0.02)
    assert M.feet_height(joints) == pytest.approx(2.0)
    assert M.foot_sliding(joints) == 0.0
    # toes on the floor (h = 0, weight 1) slide 1 cm per frame; ankles lifted above their 8 cm limit
    moving = _still_body(frames=5, foot_height=0.0)
    moving[:, [7, 8], 2] = 0.2
    moving[:, [10, 11], 0] = torch.arange(5, dtype=torch.float64)[:, None] * 0.01
    # per toe: 4 displacements of 1 cm / 5 frames = 0.8 cm; averaged over 4 foot joints (2 sliding) -> 0.4
    assert M.foot_sliding(moving) == pytest.approx(0.4)
    # at half the limit the weight is 2 - sqrt(2)
    moving[:, [10, 11], 2] = 0.02
    assert M.foot_sliding(moving) == pytest.approx(0.4 * (2 - math.sqrt(2)))


def test_contact_scores():
    pred = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    gt = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)
    assert M.contact_precision(pred, gt) == pytest.approx(2 / 3)
    assert M.contact_recall(pred, gt) == pytest.approx(2 / 3)
    assert M.contact_f1(pred, gt) == pytest.approx(2 / 3)
    assert M.contact_percentage(pred) == pytest.approx(0.6)
    none = torch.zeros(5, dtype=torch.bool)
    assert M.contact_precision(none, gt) == 1.0 and M.contact_recall(none, gt) == 0.0 and M.contact_f1(none, gt) == 0.0


def test_hand_distance_contact_and_penetration():
    half = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
    com = torch.zeros(3, 3, dtype=torch.float64)
    joints = torch.zeros(3, 24, 3, dtype=torch.float64)
    joints[:, 22] = torch.tensor([[0.53, 0, 0], [0.70, 0, 0], [0.40, 0, 0]])  # 3 cm out, 20 cm out, 10 cm in
    joints[:, 23] = torch.tensor([2.0, 0, 0])
    sdf = M.hand_object_distance(joints, half, rot, com)
    assert torch.allclose(sdf[:, 0], torch.tensor([0.03, 0.20, -0.10], dtype=torch.float64))
    assert M.predicted_contact(sdf).tolist() == [True, False, True]
    assert M.hand_penetration(sdf) == pytest.approx(10.0 / 6)  # one hand-frame of 10 cm among 6


def test_gt_difference_metrics():
    gt = torch.zeros(4, 24, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[:, 0, 0] = 0.1  # only the root is off by 10 cm
    assert M.mpjpe(pred, gt) == pytest.approx(10.0 / 24)
    assert M.root_error(pred, gt) == pytest.approx(10.0)
    rot_gt = torch.eye(3, dtype=torch.float64).expand(4, 3, 3)
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)).expand(4, 3, 3)  # 180 deg about z
    assert M.object_orientation_error(rot_gt, rot_gt) == 0.0
    assert M.object_orientation_error(flip, rot_gt) == pytest.approx(math.sqrt(8))


def test_window_metrics_of_ground_truth_is_perfect():
    frames = 61
    joints = _still_body(frames, foot_height=0.0)
    joints[:, 22] = torch.tensor([0.0, 0.0, 1.0])
    obj = {"obj_com": torch.zeros(frames, 3, dtype=torch.float64) + torch.tensor([0, 0, 0.5]), "obj_rot": torch.eye(3, dtype=torch.float64).expand(frames, 3, 3), "joints": joints}
    contact = torch.ones(frames, dtype=torch.bool)
    res = M.window_metrics(obj, obj, torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64), contact, 30)
    assert set(res) == set(M.TABLE2_COLUMNS) - {"R_prec", "FID"}
    for key in ("T_s", "T_e", "T_xy", "MPJPE", "T_root", "T_obj", "O_obj", "FS", "H_feet", "P_hand"):
        assert res[key] == pytest.approx(0.0, abs=1e-9), key
    assert res["C_F1"] == 1.0 and res["C_%"] == 1.0


def test_r_precision_and_fid():
    text = torch.eye(4)
    assert r_precision(text, text.clone(), top_k=1, pool=4) == 1.0
    # 1-D: texts at 0..3, motions shifted by 0.6 -> motions 0-2 are nearer to the next text
    line = torch.arange(4.0)[:, None]
    assert r_precision(line, line + 0.6, top_k=1, pool=4) == pytest.approx(0.25)
    assert r_precision(line, line + 0.6, top_k=2, pool=4) == 1.0
    with pytest.raises(ValueError, match="equal shape"):
        r_precision(text, text[:3])
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    # a pure mean shift of (1, 2, 2) adds |shift|^2 = 9
    assert frechet_distance(real, real + torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)) == pytest.approx(9.0, abs=1e-6)


def test_evaluator_missing_path_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="R_prec and FID"):
        load_evaluator(tmp_path / "evaluator.pt")
    with pytest.raises(FileNotFoundError, match="None"):
        load_evaluator(None)
