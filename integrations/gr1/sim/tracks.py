"""Exact ground-truth point tracks from the embedded simulator (paper §3.5 / §4.4 conditioning).

Points are sampled on the surfaces seen by the static camera at the first frame of a
segment: each chosen pixel is unprojected with the rendered depth and attached to the body
and link the segmentation says it belongs to (stored in that link's frame, so it moves with
it). At every frame the points are moved with their links, projected with the camera's own
view/projection matrices to ``(x, y)`` pixels of ``rgb_static`` (the :mod:`arfm.coords`
convention), and marked visible when inside the frame and not behind the rendered depth
(within ``depth_tol``).

Sidecar files ``tracks/ep_<start:07d>_<end:07d>.npz`` hold ``tracks`` float32 ``(N, T, 2)``,
``visible`` bool ``(N, T)``, ``frame_size`` int ``(2,)`` = (width, height), ``start``/``end``
(inclusive frame ids, ``T = end - start + 1``); see ``integrations/gr1/sim/README.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pybullet as pb
from arfm.coords import inside_frame

from integrations.gr1.sim.cameras import CameraView

if TYPE_CHECKING:  # the env imports nothing from here, but keep the import one way
    from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv


@dataclass
class AttachedPoints:
    """3-D points fixed to bodies/links.

    Attributes:
        bodies: (N,) pybullet body ids.
        links: (N,) link indices (-1 = base).
        local: (N, 3) coordinates in the link frame.
    """

    bodies: np.ndarray
    links: np.ndarray
    local: np.ndarray

    def world(self, cid: int) -> np.ndarray:
        """(N, 3) world positions at the current simulator state."""
        out = np.empty_like(self.local)
        for key in set(zip(self.bodies.tolist(), self.links.tolist())):
            mask = (self.bodies == key[0]) & (self.links == key[1])
            pos, rot = link_pose(cid, *key)
            out[mask] = self.local[mask] @ rot.T + pos
        return out


def link_pose(cid: int, body: int, link: int) -> tuple[np.ndarray, np.ndarray]:
    """World position (3,) and rotation (3, 3) of a body's base (``link=-1``) or link frame."""
    if link < 0:
        pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=cid)
    else:
        state = pb.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=cid)
        pos, orn = state[4], state[5]
    return np.asarray(pos, dtype=np.float64), np.asarray(pb.getMatrixFromQuaternion(orn), dtype=np.float64).reshape(3, 3)


def decode_segmentation(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pybullet object-and-link segmentation -> ``(body, link)`` arrays (body -1 = nothing)."""
    seg = np.asarray(seg, dtype=np.int64)
    body = np.where(seg < 0, -1, seg & ((1 << 24) - 1))
    link = np.where(seg < 0, -2, (seg >> 24) - 1)
    return body, link


def visibility(pixels: np.ndarray, point_depth: np.ndarray, depth_image: np.ndarray, camera: CameraView,
               depth_tol: float = 0.015) -> np.ndarray:
    """Whether each projected point is seen: in the frame, in front of the camera, not occluded.

    Args:
        pixels: (N, 2) projected (x, y) pixels.
        point_depth: (N,) the points' depth along the view axis (m).
        depth_image: (H, W) metric depth rendered at the same state.
        camera: the camera that rendered ``depth_image``.
        depth_tol: how far behind the rendered surface a point may lie and still count as
            on it (covers depth variation within one pixel).
    """
    if depth_image.shape != (camera.height, camera.width):
        raise ValueError(f"depth_image shape {depth_image.shape} does not match the camera ({camera.height}, {camera.width})")
    inside = inside_frame(pixels, (camera.width, camera.height)) & (point_depth > camera.near)
    cols = np.clip(np.floor(pixels[:, 0]).astype(int), 0, camera.width - 1)
    rows = np.clip(np.floor(pixels[:, 1]).astype(int), 0, camera.height - 1)
    rendered = depth_image[rows, cols]
    return inside & (point_depth <= rendered + depth_tol)


MovingObject = tuple[int, tuple[int, ...] | None]
"""A moving object for point sampling: ``(body, links)``, ``links=None`` meaning every link."""

ROBOT_MOVING_LINKS = (4, 5, 6, 7, 8, 9, 10)
"""Panda links from ``panda_link5`` to the fingers: the part of the arm that moves in every task
(``panda_link1``/``link2`` and the base barely move; links 3, 4, 8 and the grasp target have no
visible geometry)."""

DYNAMIC_FRACTION = 0.875
"""Share of the points drawn from the moving bodies by :func:`movement_prior` sampling."""

ROBOT_WEIGHT = 7.0
"""Weight of the arm among the moving bodies (each other movable body weighs 1): with the
tabletop's 7 movable fixtures and blocks, half of all points land on the arm."""


def movement_prior(env: "CalvinTabletopEnv") -> tuple[list[MovingObject], list[float]]:
    """Which bodies the points should favour, by how much they are expected to move (§3.1, §3.3).

    The paper sub-samples tracks in proportion to their movement and, at inference, replaces the
    unknown future movement with a predicted one (the query-information predictor). Here the
    expectation is known per body without looking ahead: the arm's forearm, hand and fingers
    move in every task; a block or an articulated part moves only when it is the task's
    object; the table never moves. Training sidecars and evaluation query points both use this
    prior, so the policy sees the same point distribution in both.

    Returns:
        ``(moving, weights)`` for :func:`sample_points`: the arm's moving links first
        (weight :data:`ROBOT_WEIGHT`), then every other movable body (weight 1).
    """
    others = [obj for obj in env.moving_objects() if obj[0] != env.robot]
    return [(env.robot, ROBOT_MOVING_LINKS), *others], [ROBOT_WEIGHT] + [1.0] * len(others)


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (largest remainders, ties to the first)."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def sample_points(cid: int, camera: CameraView, num_points: int, rng: np.random.Generator,
                  moving: list[MovingObject], dynamic_fraction: float = 0.5,
                  weights: list[float] | None = None) -> AttachedPoints:
    """Sample surface points seen by ``camera`` now and attach them to their links.

    ``dynamic_fraction`` of the points are split over the visible ``moving`` objects in
    proportion to ``weights`` (even split when ``None``, so a small block gets as many points as
    the arm), uniformly over each object's pixels; the rest are uniform over the whole image, so
    the static background is tracked too. Objects the camera does not see give their share to
    the visible ones.

    Args:
        cid: pybullet client.
        camera: the camera (its render gives depth and segmentation).
        num_points: N.
        rng: random generator.
        moving: the objects that can move.
        dynamic_fraction: share of points drawn from the moving objects.
        weights: relative share of each entry of ``moving`` (>= 0), e.g. from :func:`movement_prior`.
    """
    if num_points < 1 or not 0.0 <= dynamic_fraction <= 1.0:
        raise ValueError(f"num_points must be >= 1 and dynamic_fraction in [0, 1], got {num_points}, {dynamic_fraction}")
    weights_arr = np.ones(len(moving)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights_arr.shape != (len(moving),) or not np.all(np.isfinite(weights_arr)) or np.any(weights_arr < 0):
        raise ValueError(f"weights must be {len(moving)} finite values >= 0 (one per moving object), got {weights}")
    _, depth, seg = camera.render(cid, segmentation=True)
    body, link = decode_segmentation(seg)
    body, link = body.reshape(-1), link.reshape(-1)
    valid = np.flatnonzero(body >= 0)
    if valid.size == 0:
        raise RuntimeError("sample_points: the camera sees no body")
    groups, group_weights = [], []
    for (obj_body, obj_links), w in zip(moving, weights_arr):
        mask = (body == obj_body) if obj_links is None else (body == obj_body) & np.isin(link, obj_links)
        if mask.any() and w > 0:
            groups.append(np.flatnonzero(mask))
            group_weights.append(w)
    n_dyn = int(round(num_points * dynamic_fraction)) if groups else 0
    parts = []
    for pixels_of, n in zip(groups, _split(n_dyn, np.asarray(group_weights)) if groups else []):
        parts.append(rng.choice(pixels_of, n, replace=n > pixels_of.size))
    parts.append(rng.choice(valid, num_points - n_dyn, replace=num_points - n_dyn > valid.size))
    chosen = np.concatenate(parts).astype(np.int64)
    rows, cols = np.divmod(chosen, camera.width)
    pixels = np.stack([cols + 0.5, rows + 0.5], axis=-1)  # pixel centres, (x, y)
    world = camera.unproject(pixels, depth[rows, cols].astype(np.float64))
    bodies, links = body[chosen], link[chosen]
    local = np.empty_like(world)
    for key in set(zip(bodies.tolist(), links.tolist())):
        mask = (bodies == key[0]) & (links == key[1])
        pos, rot = link_pose(cid, *key)
        local[mask] = (world[mask] - pos) @ rot
    return AttachedPoints(bodies.astype(np.int64), links.astype(np.int64), local)


def sample_scene_points(env: "CalvinTabletopEnv", num_points: int, rng: np.random.Generator) -> AttachedPoints:
    """Points of the static camera sampled with :func:`movement_prior` (training and evaluation)."""
    moving, weights = movement_prior(env)
    return sample_points(env.cid, env.static_cam, num_points, rng, moving, DYNAMIC_FRACTION, weights)


class TrackRecorder:
    """Records exact tracks of points attached to the scene, frame by frame.

    Args:
        cid: pybullet client.
        camera: the static camera of the observations.
        moving: the objects that can move (see :func:`sample_points`).
        num_points: tracks per segment.
        seed: seed of the point sampling.
        dynamic_fraction: share of points on moving bodies.
        depth_tol: occlusion tolerance (m).
        weights: share of each moving object (``None``: even split; :func:`movement_prior`
            gives the tabletop's).
    """

    def __init__(self, cid: int, camera: CameraView, moving: list[MovingObject], num_points: int = 256, seed: int = 0,
                 dynamic_fraction: float = 0.5, depth_tol: float = 0.015, weights: list[float] | None = None) -> None:
        self.cid, self.camera, self.moving = cid, camera, list(moving)
        self.weights = None if weights is None else list(weights)
        self.num_points, self.dynamic_fraction, self.depth_tol = int(num_points), float(dynamic_fraction), float(depth_tol)
        self.rng = np.random.default_rng(seed)
        self.points: AttachedPoints | None = None
        self._tracks: list[np.ndarray] = []
        self._visible: list[np.ndarray] = []

    def start(self) -> None:
        """Sample new points at the current state and clear the record."""
        self.points = sample_points(self.cid, self.camera, self.num_points, self.rng, self.moving, self.dynamic_fraction,
                                    self.weights)
        self._tracks, self._visible = [], []

    def record(self, depth_static: np.ndarray) -> None:
        """Append the current frame, given the static depth rendered at this same state."""
        if self.points is None:
            raise RuntimeError("TrackRecorder.record called before start()")
        pixels, depth = self.camera.project(self.points.world(self.cid))
        self._tracks.append(pixels.astype(np.float32))
        self._visible.append(visibility(pixels, depth, np.asarray(depth_static), self.camera, self.depth_tol))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``tracks (N, T, 2) float32`` and ``visible (N, T) bool`` of the recorded frames."""
        if not self._tracks:
            raise RuntimeError("TrackRecorder.result: no frame recorded")
        return np.stack(self._tracks, axis=1), np.stack(self._visible, axis=1)


def sidecar_name(start: int, end: int) -> str:
    """File name of the tracks of frames ``start..end`` (inclusive)."""
    return f"ep_{int(start):07d}_{int(end):07d}.npz"


def save_tracks(path: str | Path, tracks: np.ndarray, visible: np.ndarray, frame_size: tuple[int, int], start: int, end: int) -> None:
    """Write a track sidecar atomically (format in the module docstring).

    Raises:
        ValueError: inconsistent shapes, non-finite tracks or ``end - start + 1 != T``.
    """
    tracks, visible = np.asarray(tracks, dtype=np.float32), np.asarray(visible, dtype=bool)
    if tracks.ndim != 3 or tracks.shape[-1] != 2 or visible.shape != tracks.shape[:2]:
        raise ValueError(f"tracks must be (N, T, 2) and visible (N, T); got {tracks.shape} and {visible.shape}")
    if tracks.shape[1] != end - start + 1:
        raise ValueError(f"tracks cover {tracks.shape[1]} frames but start..end = {start}..{end}")
    if not np.all(np.isfinite(tracks)):
        raise ValueError("tracks contain NaN or inf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, tracks=tracks, visible=visible, frame_size=np.asarray(frame_size, dtype=np.int64),
                            start=np.int64(start), end=np.int64(end))
    os.replace(tmp, path)


def load_tracks(path: str | Path) -> dict[str, np.ndarray]:
    """Read a track sidecar; raises ``FileNotFoundError``/``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track sidecar not found: {path}")
    try:
        with np.load(path) as data:
            out = {k: data[k] for k in ("tracks", "visible", "frame_size", "start", "end")}
    except KeyError as err:
        raise ValueError(f"track sidecar {path} lacks key {err}") from err
    except (OSError, ValueError) as err:
        raise ValueError(f"track sidecar {path} is not a readable npz: {err}") from err
    if out["tracks"].ndim != 3 or out["visible"].shape != out["tracks"].shape[:2]:
        raise ValueError(f"track sidecar {path}: bad shapes {out['tracks'].shape}, {out['visible'].shape}")
    return out
