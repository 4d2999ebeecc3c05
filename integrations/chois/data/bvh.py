"""A small BVH reader with forward kinematics (data for the embedded CHOIS default, paper §4.3).

Why our own: the PyPI choices are either unmaintained (``bvh`` 0.3, 2017: parsing only, no
kinematics) or bring their own transform stack (``bvhio`` needs PyGLM and SpatialTransform); reading
the HIERARCHY/MOTION text and chaining Euler rotations is about a hundred lines with ``roma``.

Conventions: Euler channels are applied in the order they are listed (``Zrotation Yrotation
Xrotation`` -> ``R = Rz @ Ry @ Rx``, intrinsic), angles in degrees; a joint's local translation is
its OFFSET plus its position channels (present on the root only in the files we ship).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch


@dataclass
class BvhJoint:
    """One joint of the hierarchy (End Sites are not kept)."""

    name: str
    parent: int
    offset: np.ndarray  # (3,)
    channels: list[str]
    channel_start: int  # column of the first channel in the motion matrix


@dataclass
class BvhMotion:
    """A parsed BVH file.

    Attributes:
        joints: hierarchy in file order (parents come before children).
        frame_time: seconds per frame.
        values: ``(T, C)`` raw channel values.
    """

    joints: list[BvhJoint]
    frame_time: float
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    def index(self, name: str) -> int:
        """Joint index by name, with an error listing the known names."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"BVH has no joint {name!r}; joints: {', '.join(self.names)}") from None

    def forward_kinematics(self, frames: slice | np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Global joint positions ``(T, J, 3)`` (file units) and rotations ``(T, J, 3, 3)`` (float64)."""
        values = torch.from_numpy(self.values if frames is None else self.values[frames]).double()
        num = values.shape[0]
        positions: list[torch.Tensor] = []
        rotations: list[torch.Tensor] = []
        for joint in self.joints:
            local_t = torch.from_numpy(joint.offset).double().expand(num, 3).clone()
            local_r = torch.eye(3, dtype=torch.float64).expand(num, 3, 3)
            rot_axes = ""
            rot_cols = []
            for k, channel in enumerate(joint.channels):
                column = values[:, joint.channel_start + k]
                axis = channel[0].lower()
                if channel.endswith("position"):
                    local_t[:, "xyz".index(axis)] += column
                else:
                    rot_axes += axis.upper()  # uppercase = intrinsic in roma
                    rot_cols.append(column)
            if rot_axes:
                local_r = roma.euler_to_rotmat(rot_axes, torch.stack(rot_cols, dim=-1), degrees=True)
            if joint.parent < 0:
                positions.append(local_t)
                rotations.append(local_r)
            else:
                parent_r = rotations[joint.parent]
                positions.append(positions[joint.parent] + (parent_r @ local_t[..., None])[..., 0])
                rotations.append(parent_r @ local_r)
        return torch.stack(positions, dim=1), torch.stack(rotations, dim=1)


def parse_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a well-formed BVH (the message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BVH file not found: {path}")
    tokens = path.read_text(errors="replace").split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise ValueError(f"{path}: not a BVH file (does not start with HIERARCHY)")
    joints: list[BvhJoint] = []
    stack: list[int] = []
    num_channels = 0
    i = 1
    in_end_site = False
    try:
        while tokens[i] != "MOTION":
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                parent = stack[-1] if stack else -1
                joints.append(BvhJoint(tokens[i + 1], parent, np.zeros(3), [], num_channels))
                i += 2
            elif tok == "End":
                in_end_site = True
                i += 2
            elif tok == "{":
                if not in_end_site:
                    stack.append(len(joints) - 1)
                i += 1
            elif tok == "}":
                if in_end_site:
                    in_end_site = False
                else:
                    stack.pop()
                i += 1
            elif tok == "OFFSET":
                if not in_end_site:
                    joints[-1].offset = np.array([float(v) for v in tokens[i + 1 : i + 4]])
                i += 4
            elif tok == "CHANNELS":
                count = int(tokens[i + 1])
                joints[-1].channels = tokens[i + 2 : i + 2 + count]
                joints[-1].channel_start = num_channels
                num_channels += count
                i += 2 + count
            else:
                raise ValueError(f"unexpected token {tok!r}")
        if tokens[i + 1] != "Frames:" or tokens[i + 3:i + 5] != ["Frame", "Time:"]:
            raise ValueError("MOTION header must be 'Frames: N' then 'Frame Time: dt'")
        num_frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        data = np.array([float(v) for v in tokens[i + 6 :]], dtype=np.float64)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path}: malformed BVH ({exc})") from exc
    if not joints:
        raise ValueError(f"{path}: BVH hierarchy has no joints")
    if data.size != num_frames * num_channels:
        raise ValueError(f"{path}: expected {num_frames} frames x {num_channels} channels = {num_frames * num_channels} values, found {data.size}")
    if num_frames < 1 or frame_time <= 0:
        raise ValueError(f"{path}: needs at least one frame and a positive frame time")
    return BvhMotion(joints, frame_time, data.reshape(num_frames, num_channels))
