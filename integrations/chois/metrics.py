"""Table 2 metrics of the ARFM paper (interaction synthesis, §4.3), following CHOIS's definitions.

Inputs are one window in metres, world Z up, floor at z = 0 (``(T, ...)`` tensors); outputs use
the units of :data:`UNITS`. Contact: a hand is in contact when its joint is within
:data:`CONTACT_THRESHOLD` of the object surface (signed distance); a frame is in contact when
either hand is. R_prec and FID need a text-motion evaluator (:mod:`.evaluator`).
"""

from __future__ import annotations

import torch

from integrations.chois.objects import box_sdf
from integrations.chois.skeleton import FOOT_JOINTS, HAND_JOINTS

CONTACT_THRESHOLD = 0.05  # metres
M_TO_CM = 100.0
FOOT_HEIGHT_LIMITS = (0.08, 0.08, 0.04, 0.04)  # metres: ankles, toes (CHOIS/NeMF foot-sliding weights)
UNITS = {
    "T_s": "cm", "T_e": "cm", "T_xy": "cm", "H_feet": "cm", "FS": "cm/frame", "R_prec": "ratio", "FID": "-",
    "C_prec": "ratio", "C_rec": "ratio", "C_F1": "ratio", "C_%": "ratio", "P_hand": "cm",
    "MPJPE": "cm", "T_root": "cm", "T_obj": "cm", "O_obj": "Frobenius",
}  # fmt: skip
TABLE2_COLUMNS = tuple(UNITS)


def start_object_error(pred_com: torch.Tensor, gt_com: torch.Tensor) -> float:
    """T_s: object centre error at the first frame (cm)."""
    return float((pred_com[0] - gt_com[0]).norm()) * M_TO_CM


def end_object_error(pred_com: torch.Tensor, gt_com: torch.Tensor) -> float:
    """T_e: object centre error at the last frame (cm)."""
    return float((pred_com[-1] - gt_com[-1]).norm()) * M_TO_CM


def waypoint_xy_error(pred_com: torch.Tensor, gt_com: torch.Tensor, every: int = 30) -> float:
    """T_xy: mean x-y error of the object centre at the waypoint frames ``every, 2 every, ...`` (cm)."""
    if pred_com.shape[0] <= every:
        raise ValueError(f"T_xy needs a window longer than the waypoint spacing {every}, got {pred_com.shape[0]} frames")
    frames = torch.arange(every, pred_com.shape[0], every)
    return float((pred_com[frames, :2] - gt_com[frames, :2]).norm(dim=-1).mean()) * M_TO_CM


def feet_height(joints: torch.Tensor, floor: float = 0.0) -> float:
    """H_feet: mean over frames of the lowest foot joint's height above the floor (cm)."""
    return float((joints[:, list(FOOT_JOINTS), 2].min(dim=1).values - floor).mean()) * M_TO_CM


def foot_sliding(joints: torch.Tensor, floor: float = 0.0) -> float:
    """FS: horizontal foot motion near the floor, weighted by ``2 - 2^(h / H)`` (CHOIS/NeMF).

    For each foot joint (ankles with ``H`` = 8 cm, toes with 4 cm) and each frame where its height
    ``h < H``, the x-y displacement to the next frame is weighted and summed; the sum is divided
    by the number of frames and averaged over the four joints (cm per frame).
    """
    total = 0.0
    for joint, limit in zip(FOOT_JOINTS, FOOT_HEIGHT_LIMITS):
        pos = joints[:, joint]
        height = pos[:-1, 2] - floor
        disp = (pos[1:, :2] - pos[:-1, :2]).norm(dim=-1)
        weight = (2 - 2 ** (height / limit)).clamp(min=0)
        total += float((disp * weight)[height < limit].sum()) / joints.shape[0]
    return total / len(FOOT_JOINTS) * M_TO_CM


def hand_object_distance(joints: torch.Tensor, half_extents: torch.Tensor, obj_rot: torch.Tensor, obj_com: torch.Tensor) -> torch.Tensor:
    """Signed distance ``(T, 2)`` of the two hand joints to the (box) object surface, metres."""
    return box_sdf(joints[:, list(HAND_JOINTS)], half_extents, obj_rot, obj_com)


def predicted_contact(hand_sdf: torch.Tensor) -> torch.Tensor:
    """``(T,)`` bool: a hand within the contact threshold of the surface (penetration counts as contact)."""
    return (hand_sdf < CONTACT_THRESHOLD).any(dim=1)


def _counts(pred: torch.Tensor, gt: torch.Tensor) -> tuple[float, float, float]:
    tp = float((pred & gt).sum())
    return tp, float((pred & ~gt).sum()), float((~pred & gt).sum())


def contact_precision(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """C_prec: of the frames predicted in contact, the fraction in contact in the ground truth (1 when none predicted)."""
    tp, fp, _ = _counts(pred, gt)
    return tp / (tp + fp) if tp + fp > 0 else 1.0


def contact_recall(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """C_rec: of the ground-truth contact frames, the fraction predicted in contact (1 when there are none)."""
    tp, _, fn = _counts(pred, gt)
    return tp / (tp + fn) if tp + fn > 0 else 1.0


def contact_f1(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """C_F1: harmonic mean of C_prec and C_rec."""
    p, r = contact_precision(pred, gt), contact_recall(pred, gt)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def contact_percentage(pred: torch.Tensor) -> float:
    """C_%: fraction of frames with predicted hand-object contact."""
    return float(pred.float().mean())


def hand_penetration(hand_sdf: torch.Tensor) -> float:
    """P_hand: mean penetration depth of the hand joints into the object, ``max(0, -sdf)`` (cm)."""
    return float((-hand_sdf).clamp(min=0).mean()) * M_TO_CM


def mpjpe(pred_joints: torch.Tensor, gt_joints: torch.Tensor) -> float:
    """MPJPE: mean per-joint position error (cm)."""
    return float((pred_joints - gt_joints).norm(dim=-1).mean()) * M_TO_CM


def root_error(pred_joints: torch.Tensor, gt_joints: torch.Tensor) -> float:
    """T_root: mean pelvis (joint 0) position error (cm)."""
    return float((pred_joints[:, 0] - gt_joints[:, 0]).norm(dim=-1).mean()) * M_TO_CM


def object_position_error(pred_com: torch.Tensor, gt_com: torch.Tensor) -> float:
    """T_obj: mean object centre error (cm)."""
    return float((pred_com - gt_com).norm(dim=-1).mean()) * M_TO_CM


def object_orientation_error(pred_rot: torch.Tensor, gt_rot: torch.Tensor) -> float:
    """O_obj: mean Frobenius norm ``||R_pred - R_gt||_F`` (0 = equal; 2 sqrt(2) = opposite)."""
    return float((pred_rot - gt_rot).flatten(-2).norm(dim=-1).mean())


def window_metrics(pred: dict[str, torch.Tensor], gt: dict[str, torch.Tensor], half_extents: torch.Tensor, gt_contact: torch.Tensor, waypoint_every: int) -> dict[str, float]:
    """All per-window Table 2 metrics except R_prec/FID (dataset-level, see :mod:`.evaluator`).

    Args:
        pred, gt: :func:`integrations.chois.representation.unpack_motion` outputs for one window.
        half_extents: ``(3,)`` object box.
        gt_contact: ``(T,)`` bool ground-truth hand contact (either hand).
    """
    sdf = hand_object_distance(pred["joints"], half_extents, pred["obj_rot"], pred["obj_com"])
    contact = predicted_contact(sdf)
    return {
        "T_s": start_object_error(pred["obj_com"], gt["obj_com"]),
        "T_e": end_object_error(pred["obj_com"], gt["obj_com"]),
        "T_xy": waypoint_xy_error(pred["obj_com"], gt["obj_com"], waypoint_every),
        "H_feet": feet_height(pred["joints"]),
        "FS": foot_sliding(pred["joints"]),
        "C_prec": contact_precision(contact, gt_contact),
        "C_rec": contact_recall(contact, gt_contact),
        "C_F1": contact_f1(contact, gt_contact),
        "C_%": contact_percentage(contact),
        "P_hand": hand_penetration(sdf),
        "MPJPE": mpjpe(pred["joints"], gt["joints"]),
        "T_root": root_error(pred["joints"], gt["joints"]),
        "T_obj": object_position_error(pred["obj_com"], gt["obj_com"]),
        "O_obj": object_orientation_error(pred["obj_rot"], gt["obj_rot"]),
    }
