"""A fixed pinhole camera over the interaction: 2-D tracks, depth-tested visibility, a first frame (§3.5, §4.3).

Tracks are what ARFM predicts and what the track encoder reads: the image projections of body
joints and object surface points, in pixels of a 256 x 256 frame (:mod:`arfm.coords` convention:
``(x, y)``, pixel ``i`` covers ``[i, i + 1)``). A point is visible when it is in front of the
camera, inside the frame and no occluder (the object box, spheres around the body joints) lies
between it and the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from arfm.coords import MODEL_FRAME_SIZE, inside_frame
from integrations.chois.skeleton import PARENTS

JOINT_RADIUS = 0.07  # metres: body-joint spheres that occlude the object


@dataclass
class Camera:
    """Look-at pinhole camera (world Z up).

    Attributes:
        eye: ``(3,)`` camera centre, metres.
        target: ``(3,)`` point the optical axis passes through.
        fov_deg: vertical field of view.
        size: image side in pixels.
    """

    eye: torch.Tensor
    target: torch.Tensor
    fov_deg: float = 60.0
    size: int = MODEL_FRAME_SIZE

    def rotation(self) -> torch.Tensor:
        """World-to-camera rotation, rows = camera x (right), y (down), z (forward)."""
        forward = self.target - self.eye
        forward = forward / forward.norm()
        up = torch.tensor([0.0, 0.0, 1.0], dtype=forward.dtype)
        right = torch.linalg.cross(forward, up)
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)
        return torch.stack([right, down, forward])

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points ``(..., 3)`` -> pixels ``(..., 2)`` and depth ``(...)`` (metres along the axis)."""
        cam = (points - self.eye.to(points)) @ self.rotation().to(points).T
        depth = cam[..., 2]
        focal = 0.5 * self.size / math.tan(math.radians(self.fov_deg) / 2)
        z = depth.clamp(min=1e-6)
        pix = torch.stack([cam[..., 0] / z, cam[..., 1] / z], dim=-1) * focal + self.size / 2
        return pix, depth


def camera_for_window(pelvis0: torch.Tensor, yaw0: float, distance: float = 5.0, height: float = 1.6) -> Camera:
    """The window's fixed camera: ``distance`` metres in front-left of the first-frame body, looking at it."""
    angle = yaw0 + math.radians(35.0)
    eye = torch.tensor([pelvis0[0] + distance * math.cos(angle), pelvis0[1] + distance * math.sin(angle), height], dtype=torch.float32)
    target = torch.tensor([float(pelvis0[0]), float(pelvis0[1]), 0.8], dtype=torch.float32)
    return Camera(eye=eye, target=target)


def _ray_box_entry(origin: torch.Tensor, dirs: torch.Tensor, half: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Distance along unit rays ``dirs (..., 3)`` from ``origin`` to the box entry (inf if missed)."""
    o = (origin - centre) @ rot  # box frame
    d = dirs @ rot
    d = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1, t2 = (-half - o) / d, (half - o) / d
    t_near = torch.minimum(t1, t2).max(dim=-1).values
    t_far = torch.maximum(t1, t2).min(dim=-1).values
    hit = (t_far >= t_near) & (t_far > 0)
    return torch.where(hit, t_near.clamp(min=0), torch.full_like(t_near, float("inf")))


def _ray_sphere_entry(origin: torch.Tensor, dirs: torch.Tensor, centres: torch.Tensor, radius: float) -> torch.Tensor:
    """``dirs (P, 3)`` unit rays, ``centres (S, 3)`` -> entry distance ``(P, S)`` (inf if missed)."""
    oc = centres[None] - origin  # (1, S, 3)
    proj = (oc * dirs[:, None]).sum(-1)  # (P, S)
    d2 = (oc * oc).sum(-1) - proj**2
    inside = d2 < radius**2
    entry = proj - torch.sqrt((radius**2 - d2).clamp(min=0))
    return torch.where(inside & (proj > 0), entry, torch.full_like(entry, float("inf")))


def visible_points(camera: Camera, joints: torch.Tensor, obj_points: torch.Tensor, half: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-tested visibility of one frame's joints ``(J, 3)`` and object points ``(P, 3)`` (world).

    Returns:
        Two bool tensors ``(J,)``, ``(P,)``.
    """
    eye = camera.eye.to(joints)
    pts = torch.cat([joints, obj_points])
    vec = pts - eye
    dist = vec.norm(dim=-1)
    dirs = vec / dist[:, None].clamp(min=1e-9)
    box_entry = _ray_box_entry(eye, dirs, half.to(pts), rot.to(pts), centre.to(pts))
    tol = 1e-3
    num_j = joints.shape[0]
    # joints: hidden when the box is entered before the joint; object points: the box's own surface
    # must be where the ray enters it (self-occlusion), and no joint sphere may come first
    joint_vis = box_entry[:num_j] > dist[:num_j] - tol
    sphere = _ray_sphere_entry(eye, dirs[num_j:], joints, JOINT_RADIUS).min(dim=1).values
    obj_vis = (box_entry[num_j:] > dist[num_j:] - 5 * tol) & (sphere > dist[num_j:])
    return joint_vis, obj_vis


def project_tracks(camera: Camera, joints: torch.Tensor, obj_points: torch.Tensor, half: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks over time.

    Args:
        joints: ``(L, J, 3)``; obj_points: ``(L, P, 3)`` world positions per step; rot ``(L, 3, 3)``
        and centre ``(L, 3)`` the object pose per step; half ``(3,)`` its half extents.

    Returns:
        ``tracks (J + P, L, 2)`` pixels and ``visible (J + P, L)`` bool.
    """
    pts = torch.cat([joints, obj_points], dim=1)  # (L, N, 3)
    pix, depth = camera.project(pts)
    vis = []
    for step in range(pts.shape[0]):
        jv, ov = visible_points(camera, joints[step], obj_points[step], half, rot[step], centre[step])
        vis.append(torch.cat([jv, ov]))
    visible = torch.stack(vis) & (depth > 0) & inside_frame(pix, camera.size)
    return pix.transpose(0, 1).contiguous(), visible.transpose(0, 1).contiguous()


BONE_COLOR, OBJECT_COLOR, FLOOR_COLOR = (220, 90, 60), (60, 140, 220), (200, 200, 200)


def render_frame(camera: Camera, joints: torch.Tensor, box_vertices: torch.Tensor, box_faces: torch.Tensor) -> torch.Tensor:
    """A simple picture of one frame (floor grid, object box, stick figure) for image-conditioned predictors.

    Returns:
        ``(3, size, size)`` float in ``[0, 1]``.
    """
    size = camera.size
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    shift = 4  # sub-pixel drawing: cv2 coordinates in 1/16 px

    def px(p: torch.Tensor) -> np.ndarray:
        return np.round((p.numpy() - 0.5) * (1 << shift)).astype(np.int64)  # pixel centres at i + 0.5

    grid = torch.arange(-5.0, 5.5, 1.0)
    for g in grid:
        for a, b in (((g, -5.0, 0.0), (g, 5.0, 0.0)), ((-5.0, g, 0.0), (5.0, g, 0.0))):
            ends = torch.tensor([a, b], dtype=torch.float32) + torch.cat([camera.target[:2], torch.zeros(1)])
            pix, depth = camera.project(ends)
            if (depth > 0.1).all():
                cv2.line(img, tuple(px(pix[0])), tuple(px(pix[1])), FLOOR_COLOR, 1, cv2.LINE_AA, shift)
    items = []  # (depth, kind, data): painter's order, far first
    vpix, vdepth = camera.project(box_vertices)
    for face in box_faces:
        items.append((float(vdepth[face].mean()), "face", face))
    jpix, jdepth = camera.project(joints)
    for j, parent in enumerate(PARENTS):
        if parent >= 0:
            items.append((float((jdepth[j] + jdepth[parent]) / 2), "bone", (parent, j)))
    for _, kind, data in sorted(items, key=lambda it: -it[0]):
        if kind == "face" and (vdepth[data] > 0.1).all():
            shade = tuple(int(c * (0.7 + 0.3 * (hash(tuple(data.tolist())) % 3) / 2)) for c in OBJECT_COLOR)
            cv2.fillConvexPoly(img, px(vpix[data]), shade, cv2.LINE_AA, shift)
        elif kind == "bone" and (jdepth[list(data)] > 0.1).all():
            cv2.line(img, tuple(px(jpix[data[0]])), tuple(px(jpix[data[1]])), BONE_COLOR, 3, cv2.LINE_AA, shift)
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
