"""Local image features at track positions (paper §3.2: "index the feature map spatio-temporally
with nearest neighbor interpolation"), shared by the track predictor and the query predictor."""

from __future__ import annotations

import torch

from arfm.coords import pixels_to_normalized


def sample_local_features(levels: list[torch.Tensor], positions: torch.Tensor, frame_index: torch.Tensor, frame_size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour features at track positions (paper: nearest interpolation).

    Args:
        levels: per level ``(B, F, C_i, h_i, w_i)``.
        positions: ``(B, S, N, 2)`` pixels of frames of ``frame_size = (width, height)``.
        frame_index: ``(B, S)`` long, which frame each row reads.

    Returns:
        ``(B, S, N, sum C_i)``. Points outside the frame read the nearest border cell.
    """
    b, s, n, _ = positions.shape
    unit = (pixels_to_normalized(positions, frame_size) + 1.0) / 2.0  # [0, 1) inside the frame
    batch_idx = torch.arange(b, device=positions.device).view(b, 1, 1).expand(b, s, n)
    frame_idx = frame_index.view(b, s, 1).expand(b, s, n)
    sampled = []
    for level in levels:
        h, w = level.shape[-2:]
        ix = (unit[..., 0] * w).floor().long().clamp(0, w - 1)
        iy = (unit[..., 1] * h).floor().long().clamp(0, h - 1)
        # (B, F, C, h, w) -> (B, F, h, w, C) so one advanced index gathers (B, S, N, C).
        sampled.append(level.permute(0, 1, 3, 4, 2)[batch_idx, frame_idx, iy, ix])
    return torch.cat(sampled, dim=-1)
