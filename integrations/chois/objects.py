"""Box objects with an analytic signed distance (interaction metrics and the embedded data, §4.3).

A box is given by its half extents; its rest mesh is centred on the origin, so the world pose is
``x_world = R @ x_rest + t`` with ``t`` the centre (== centre of mass). P_hand and the contact labels
need the signed distance of hand points to the object; for a box it is exact and cheap.
"""

from __future__ import annotations

import torch


def box_sdf(points: torch.Tensor, half_extents: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Signed distance of world points to a posed box (negative inside).

    Args:
        points: ``(..., P, 3)`` world points.
        half_extents: ``(3,)`` or broadcastable ``(..., 3)``.
        rot: ``(..., 3, 3)`` object rotation.
        centre: ``(..., 3)`` object centre.

    Returns:
        ``(..., P)`` signed distances, same units as the inputs.
    """
    local = (points - centre[..., None, :]) @ rot  # R^T (p - c), row-vector form: (..., P, 3)
    q = local.abs() - half_extents[..., None, :]
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside


def box_surface_points(half_extents: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` points on the box surface (rest frame): the 8 corners first, then area-weighted samples."""
    h = half_extents.double()
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=torch.float64)
    corners = signs * h
    rest = max(count - 8, 0)
    if rest == 0:
        return corners[:count].float()
    areas = torch.stack([h[1] * h[2], h[0] * h[2], h[0] * h[1]])  # faces normal to x, y, z (pairs)
    axis = torch.multinomial(areas / areas.sum(), rest, replacement=True, generator=generator)
    uv = torch.rand(rest, 3, generator=generator, dtype=torch.float64) * 2 - 1
    side = torch.randint(0, 2, (rest,), generator=generator).double() * 2 - 1
    uv[torch.arange(rest), axis] = side
    return torch.cat([corners, uv * h]).float()


def box_mesh(half_extents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest-frame box mesh: vertices ``(8, 3)`` and outward-facing triangles ``(12, 3)``."""
    h = half_extents.float()
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=torch.float32)
    faces = torch.tensor(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )
    return signs * h, faces


def half_extents_from_vertices(vertices: torch.Tensor) -> torch.Tensor:
    """Half extents of a rest mesh's axis-aligned bounding box (used to treat any mesh as a box)."""
    return (vertices.max(dim=0).values - vertices.min(dim=0).values) / 2
