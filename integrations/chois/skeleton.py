"""The 24-joint body skeleton shared by the SMPL-X loader and the mocap proxy (CHOIS representation).

Joints 0-21 are the SMPL-X body joints; 22 and 23 are one point per hand (SMPL-X
``left_middle1`` / ``right_middle1``; on mocap the middle-finger base). Rotations are global
(joint-to-world) 3x3 matrices; the network sees them as 6-D (the first two columns), converted
back with Gram-Schmidt (``roma.special_gramschmidt``). Forward kinematics from global rotations
is one sum per joint: ``p_j = p_parent + R_parent @ offset_j``.
"""

from __future__ import annotations

import roma
import torch

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)  # fmt: skip
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
LEFT_HAND, RIGHT_HAND = 22, 23
LEFT_WRIST, RIGHT_WRIST = 20, 21
FOOT_JOINTS = (7, 8, 10, 11)
"""Left ankle, right ankle, left toe ("foot"), right toe: the joints of H_feet, FS and the FK loss."""
HAND_JOINTS = (LEFT_HAND, RIGHT_HAND)
SMPLX_HAND_JOINTS = (28, 43)
"""Indices of ``left_middle1`` / ``right_middle1`` in the SMPL-X joint list."""


def rotmat_to_6d(rot: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``: the first two columns, column-major."""
    return rot[..., :, :2].transpose(-1, -2).reshape(*rot.shape[:-2], 6)


def rot6d_to_rotmat(rot6d: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` -> ``(..., 3, 3)`` by Gram-Schmidt (inverse of :func:`rotmat_to_6d` on rotations)."""
    cols = rot6d.reshape(*rot6d.shape[:-1], 2, 3).transpose(-1, -2)  # (..., 3, 2)
    return roma.special_gramschmidt(cols)


def global_to_local(global_rot: torch.Tensor) -> torch.Tensor:
    """Global ``(..., J, 3, 3)`` -> parent-relative rotations (the root keeps its global rotation)."""
    local = global_rot.clone()
    for j, parent in enumerate(PARENTS[: global_rot.shape[-3]]):
        if parent >= 0:
            local[..., j, :, :] = global_rot[..., parent, :, :].transpose(-1, -2) @ global_rot[..., j, :, :]
    return local


def local_to_global(local_rot: torch.Tensor) -> torch.Tensor:
    """Parent-relative ``(..., J, 3, 3)`` -> global rotations (the kinematic chain)."""
    glob = [local_rot[..., 0, :, :]]
    for j in range(1, local_rot.shape[-3]):
        glob.append(glob[PARENTS[j]] @ local_rot[..., j, :, :])
    return torch.stack(glob, dim=-3)


def forward_kinematics(root_pos: torch.Tensor, global_rot: torch.Tensor, rest_offsets: torch.Tensor) -> torch.Tensor:
    """Joint positions from the root position, global rotations and rest bone offsets.

    Args:
        root_pos: ``(..., 3)`` world position of joint 0.
        global_rot: ``(..., J >= 22, 3, 3)`` global rotations; the hand points (22, 23) are
            carried by their wrists' rotations, so hand rotations are never needed.
        rest_offsets: ``(..., 24, 3)`` offset of each joint from its parent in the rest pose
            (row 0 unused), broadcastable against ``root_pos``.

    Returns:
        ``(..., 24, 3)`` world positions.
    """
    positions = [root_pos]
    for j in range(1, len(PARENTS)):
        parent = PARENTS[j]
        positions.append(positions[parent] + (global_rot[..., parent, :, :] @ rest_offsets[..., j, :, None])[..., 0])
    return torch.stack(positions, dim=-2)
