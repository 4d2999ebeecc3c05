"""Cameras of the embedded tabletop: rendering and exact pinhole projection (paper §4.4).

The static camera (200x200) is fixed in the world; the gripper camera (84x84) rides on the
Panda hand, as in CALVIN. Both render with pybullet's CPU renderer (``ER_TINY_RENDERER``).
:func:`project` maps world points to pixels with the very matrices the renderer used, in the
:mod:`arfm.coords` convention ((x, y), pixel ``i`` covers ``[i, i + 1)``), which is what makes
the ground-truth tracks of :mod:`integrations.gr1.sim.tracks` exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as pb


@dataclass(frozen=True)
class CameraView:
    """One camera pose and lens, with the OpenGL-style matrices pybullet renders with.

    Attributes:
        view: (4, 4) world -> camera matrix (row-major numpy, i.e. the transpose of
            pybullet's column-major list).
        proj: (4, 4) camera -> clip matrix (row-major numpy).
        width: image width in pixels.
        height: image height in pixels.
        near: near clipping distance (m).
        far: far clipping distance (m).
    """

    view: np.ndarray
    proj: np.ndarray
    width: int
    height: int
    near: float
    far: float

    @staticmethod
    def look_at(eye, target, up, fov_deg: float, width: int, height: int, near: float = 0.05, far: float = 3.0) -> "CameraView":
        """Camera at ``eye`` looking at ``target`` with vertical field of view ``fov_deg``."""
        view = pb.computeViewMatrix(list(eye), list(target), list(up))
        proj = pb.computeProjectionMatrixFOV(fov_deg, width / height, near, far)
        return CameraView(np.asarray(view, dtype=np.float64).reshape(4, 4).T,
                          np.asarray(proj, dtype=np.float64).reshape(4, 4).T, width, height, near, far)

    def _lists(self) -> tuple[list[float], list[float]]:
        return self.view.T.reshape(-1).tolist(), self.proj.T.reshape(-1).tolist()

    def render(self, cid: int, segmentation: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Render with the CPU renderer.

        Returns:
            ``rgb (H, W, 3) uint8``, ``depth (H, W) float32`` metric distance along the
            camera axis (m), and the ``(H, W) int32`` segmentation (``body + (link + 1) << 24``,
            pybullet's object-and-link encoding) when ``segmentation`` is set, else ``None``.
        """
        view, proj = self._lists()
        flags = pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX if segmentation else pb.ER_NO_SEGMENTATION_MASK
        _, _, rgba, zbuf, seg = pb.getCameraImage(
            self.width, self.height, view, proj, renderer=pb.ER_TINY_RENDERER, flags=flags, physicsClientId=cid,
        )
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)
        zbuf = np.asarray(zbuf, dtype=np.float64).reshape(self.height, self.width)
        depth = self.linear_depth(zbuf).astype(np.float32)
        seg_out = np.asarray(seg, dtype=np.int32).reshape(self.height, self.width) if segmentation else None
        return rgba[..., :3].copy(), depth, seg_out

    def linear_depth(self, zbuf: np.ndarray) -> np.ndarray:
        """OpenGL depth-buffer values in [0, 1] -> metric depth along the view axis."""
        n, f = self.near, self.far
        return f * n / (f - (f - n) * zbuf)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``(..., 3)`` -> pixels ``(..., 2)`` in (x, y) and depth ``(...)`` (m).

        Points behind the camera get depth <= 0 (callers treat them as not visible).
        """
        points = np.asarray(points, dtype=np.float64)
        homo = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
        cam = homo @ self.view.T  # (..., 4) camera frame, looking down -z
        clip = cam @ self.proj.T
        w = np.where(np.abs(clip[..., 3:4]) < 1e-12, 1e-12, clip[..., 3:4])
        ndc = clip[..., :2] / w
        # NDC x=-1 is the left edge, y=+1 the top edge (image rows go down).
        pixels = np.stack([(ndc[..., 0] + 1.0) * 0.5 * self.width, (1.0 - ndc[..., 1]) * 0.5 * self.height], axis=-1)
        return pixels, -cam[..., 2]

    def unproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`project`: pixels ``(N, 2)`` with metric depth ``(N,)`` -> world ``(N, 3)``."""
        pixels = np.asarray(pixels, dtype=np.float64)
        ndc_x = pixels[:, 0] / self.width * 2.0 - 1.0
        ndc_y = 1.0 - pixels[:, 1] / self.height * 2.0
        # For a perspective matrix, x_cam = ndc_x * depth / P[0,0] (no skew, centred principal point).
        cam = np.stack([ndc_x * depth / self.proj[0, 0], ndc_y * depth / self.proj[1, 1], -np.asarray(depth, dtype=np.float64),
                        np.ones_like(ndc_x)], axis=-1)
        world = cam @ np.linalg.inv(self.view).T
        return world[:, :3]


STATIC_EYE, STATIC_TARGET, STATIC_FOV = (0.62, 0.0, 0.95), (-0.17, 0.0, 0.0), 50.0
"""The default ("near") static camera: fov 50 deg, 1.2 m from the table, looking back at the robot."""

# CALVIN's static camera (calvin_env conf/cameras/cameras/static.yaml: fov 10, near 0.01, far 10,
# look_from / look_at / up below, in CALVIN's world frame where the robot faces +y and the table
# top is at z ~ 0.43). It views the table from 4.2 m and 31 deg above it.
CALVIN_LOOK_FROM = (2.871459009488717, -2.166602199425597, 2.555159848480571)
CALVIN_LOOK_AT = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
CALVIN_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)
CALVIN_FOV, CALVIN_NEAR, CALVIN_FAR = 10.0, 0.01, 10.0
CALVIN_LOOK_AT_HERE = (-0.15, 0.0, -0.04)
"""Where CALVIN's look-at point lands in this scene: the workspace centre, 4 cm below the table top
(as CALVIN's is below its table top)."""


def calvin_to_here(vec) -> np.ndarray:
    """A CALVIN-frame direction in this scene's frame: a +90 deg turn about z, ``(x, y, z) -> (-y, x, z)``.

    It keeps what the task names mean on the image: CALVIN's "right" (``+x``) is this scene's
    "right" (``+y``), and a positive turn about z ("left") stays positive. CALVIN's robot sits
    at the near side of its images, ours at the far side, so the camera ends up across the table
    from the robot. :func:`here_to_calvin` is the inverse (used for CALVIN-layout infos).
    """
    x, y, z = vec
    return np.array([-y, x, z], dtype=np.float64)


def here_to_calvin(vec) -> np.ndarray:
    """Inverse of :func:`calvin_to_here`: ``(x, y, z) -> (y, -x, z)``."""
    x, y, z = vec
    return np.array([y, -x, z], dtype=np.float64)


def static_camera(size: int = 200, view: str = "near") -> CameraView:
    """The fixed static camera (CALVIN ``rgb_static`` is 200x200).

    Args:
        size: image side.
        view: ``"near"`` (default: fov 50 deg from 1.2 m, looking back at the robot from +x) or
            ``"calvin"`` (CALVIN's lens, distance and elevation: fov 10 deg from 4.2 m, turned by
            :func:`calvin_to_here` so that "left"/"right" keep their image sides).
    """
    if view == "near":
        return CameraView.look_at(STATIC_EYE, STATIC_TARGET, (0.0, 0.0, 1.0), STATIC_FOV, size, size, near=0.1, far=3.0)
    if view == "calvin":
        target = np.asarray(CALVIN_LOOK_AT_HERE)
        eye = target + calvin_to_here(np.subtract(CALVIN_LOOK_FROM, CALVIN_LOOK_AT))
        return CameraView.look_at(eye, target, calvin_to_here(CALVIN_UP), CALVIN_FOV, size, size, near=CALVIN_NEAR, far=CALVIN_FAR)
    raise ValueError(f"static camera view must be 'near' or 'calvin', got {view!r}")


def gripper_camera(cid: int, robot: int, hand_link: int, size: int = 84) -> CameraView:
    """The camera on the Panda hand, looking along the fingers (CALVIN ``rgb_gripper`` is 84x84)."""
    state = pb.getLinkState(robot, hand_link, computeForwardKinematics=True, physicsClientId=cid)
    pos, orn = np.asarray(state[4]), state[5]
    rot = np.asarray(pb.getMatrixFromQuaternion(orn)).reshape(3, 3)
    # Mounted 5 cm off the hand's axis, looking 0.3 m down the finger direction.
    eye = pos + rot @ np.array([0.05, 0.0, 0.02])
    target = pos + rot @ np.array([0.0, 0.0, 0.3])
    return CameraView.look_at(eye, target, rot[:, 0], 75.0, size, size, near=0.01, far=2.0)
