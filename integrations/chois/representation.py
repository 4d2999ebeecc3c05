"""CHOIS per-frame representation (220 numbers), object BPS feature and condition masks (CHOIS §3).

Layout of one frame: object centre (3) | object rotation w.r.t. its rest mesh, row-major (9) |
24 global joint positions (72) | 22 global joint rotations in 6-D (132) | contacts: left hand,
right hand, left foot, right foot (4).
"""

from __future__ import annotations

import torch

from integrations.chois.configuration_chois import NUM_CONTACTS, NUM_JOINTS, NUM_ROT_JOINTS
from integrations.chois.skeleton import rot6d_to_rotmat, rotmat_to_6d

OBJ_POS = slice(0, 3)
OBJ_ROT = slice(3, 12)
JOINT_POS = slice(12, 12 + 3 * NUM_JOINTS)
JOINT_ROT = slice(JOINT_POS.stop, JOINT_POS.stop + 6 * NUM_ROT_JOINTS)
CONTACTS = slice(JOINT_ROT.stop, JOINT_ROT.stop + NUM_CONTACTS)
MOTION_DIM = CONTACTS.stop


def pack_motion(obj_com: torch.Tensor, obj_rot: torch.Tensor, joints: torch.Tensor, global_rot: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
    """``(W, 3), (W, 3, 3), (W, 24, 3), (W, 22, 3, 3), (W, 4)`` -> ``(W, 220)``."""
    w = obj_com.shape[0]
    return torch.cat([obj_com, obj_rot.reshape(w, 9), joints.reshape(w, -1), rotmat_to_6d(global_rot[:, :NUM_ROT_JOINTS]).reshape(w, -1), contacts], dim=-1)


def unpack_motion(motion: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(..., W, 220)`` -> named parts; rotations re-orthonormalised (object: SVD projection, joints: Gram-Schmidt)."""
    lead = motion.shape[:-1]
    obj_rot = motion[..., OBJ_ROT].reshape(*lead, 3, 3)
    u, _, vh = torch.linalg.svd(obj_rot)
    det = torch.det(u @ vh)
    fix = torch.ones(*lead, 3, dtype=motion.dtype, device=motion.device)
    fix[..., 2] = det
    return {
        "obj_com": motion[..., OBJ_POS],
        "obj_rot": u @ torch.diag_embed(fix) @ vh,
        "joints": motion[..., JOINT_POS].reshape(*lead, NUM_JOINTS, 3),
        "global_rot": rot6d_to_rotmat(motion[..., JOINT_ROT].reshape(*lead, NUM_ROT_JOINTS, 6)),
        "contacts": motion[..., CONTACTS],
    }


def condition_mask(window: int, waypoint_every: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(W, 220)`` float mask of the clean conditions CHOIS sees.

    Frame 0: the full state; every ``waypoint_every`` frames: the object's x-y (waypoints);
    the last frame: the object's full position.
    """
    mask = torch.zeros(window, MOTION_DIM, device=device)
    mask[0] = 1.0
    mask[waypoint_every::waypoint_every, OBJ_POS.start : OBJ_POS.start + 2] = 1.0
    mask[-1, OBJ_POS] = 1.0
    return mask


def bps_basis(count: int, radius: float, seed: int = 0) -> torch.Tensor:
    """Fixed basis points, uniform in a ball of ``radius`` (the same for every object)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(count, 3, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    r = radius * torch.rand(count, 1, generator=gen, dtype=torch.float64) ** (1.0 / 3.0)
    return direction * r


def bps_feature(basis: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """BPS encoding: for each basis point the vector to its nearest object point, flattened ``(3 * B,)``.

    ``points (P, 3)`` are the object's surface points centred on its centre (posed as in frame 0).
    """
    dist = torch.cdist(basis.to(points), points)  # (B, P)
    nearest = points[dist.argmin(dim=1)]
    return (nearest - basis.to(points)).reshape(-1)
