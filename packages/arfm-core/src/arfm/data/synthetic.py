"""Moving shapes with exactly known tracks: a test bed for the model, the tracker and the metrics.

Each scene is a static textured background with 1-3 coloured shapes (squares, discs) that
move at constant velocity and possibly spin. Tracks are points on the shapes and on the
background, so their positions at every frame are known exactly; a point is invisible while
it is covered by a shape drawn above it or outside the frame. The caption names every shape
and its direction ("a red square moves right"), so a model given one frame can learn the
direction from text and only the speed stays uncertain.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from arfm.coords import MODEL_FRAME_SIZE, inside_frame
from arfm.data.batch import TrackWindow

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (235, 210, 40), "white": (245, 245, 245)}
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


@dataclass
class Shape:
    """A shape moving at constant velocity (pixels/frame) and angular velocity (rad/frame)."""

    kind: str  # "square" | "disc"
    colour: str
    centre: np.ndarray  # (2,) at frame 0
    half_size: float
    velocity: np.ndarray  # (2,)
    spin: float
    direction: str

    def centre_at(self, t: np.ndarray | float) -> np.ndarray:
        return self.centre + np.multiply.outer(np.asarray(t, dtype=np.float64), self.velocity)

    def contains(self, points: np.ndarray, t: int) -> np.ndarray:
        """Whether points ``(..., 2)`` lie on the shape at frame ``t``."""
        rel = points - self.centre_at(t)
        if self.kind == "disc":
            return np.linalg.norm(rel, axis=-1) <= self.half_size
        c, s = np.cos(-self.spin * t), np.sin(-self.spin * t)
        local = np.stack([c * rel[..., 0] - s * rel[..., 1], s * rel[..., 0] + c * rel[..., 1]], axis=-1)
        return np.abs(local).max(axis=-1) <= self.half_size


@dataclass
class Scene:
    background: np.ndarray  # (H, W, 3) uint8
    shapes: list[Shape]

    @property
    def caption(self) -> str:
        return " and ".join(f"a {s.colour} {s.kind} moves {s.direction}" for s in self.shapes)


def random_scene(rng: np.random.Generator, size: int = MODEL_FRAME_SIZE, max_speed: float = 4.0) -> Scene:
    """Draw a background texture and 1-3 moving shapes."""
    coarse = rng.uniform(60, 190, size=(8, 8, 3)).astype(np.float32)
    background = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    background += rng.normal(0, 12, size=(size, size, 3)).astype(np.float32)  # fine texture for trackers
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        direction = str(rng.choice(list(DIRECTIONS)))
        speed = rng.uniform(1.0, max_speed)
        jitter = rng.normal(0, 0.15, size=2)
        shapes.append(
            Shape(
                kind=str(rng.choice(["square", "disc"])),
                colour=str(rng.choice(list(COLOURS))),
                centre=rng.uniform(0.25 * size, 0.75 * size, size=2),
                half_size=float(rng.uniform(0.06, 0.12) * size),
                velocity=(np.array(DIRECTIONS[direction]) + jitter) * speed,
                spin=float(rng.uniform(-0.03, 0.03)),
                direction=direction,
            )
        )
    return Scene(np.clip(background, 0, 255).astype(np.uint8), shapes)


def render_frame(scene: Scene, t: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame ``t``; later shapes are drawn above earlier ones."""
    frame = scene.background.copy()
    for shape in scene.shapes:
        centre = shape.centre_at(t)
        colour = COLOURS[shape.colour]
        if shape.kind == "disc":
            cv2.circle(frame, tuple(int(round(v)) for v in centre), int(round(shape.half_size)), colour, -1, cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (2 * shape.half_size,) * 2, np.degrees(shape.spin * t)))
            cv2.fillConvexPoly(frame, np.round(box).astype(np.int32), colour, cv2.LINE_AA)
        # a darker stripe gives trackers (and the model) something to see rotate
        cv2.circle(frame, tuple(int(round(v)) for v in centre), max(2, int(shape.half_size / 4)), tuple(c // 2 for c in colour), -1)
    return frame


def scene_tracks(scene: Scene, num_points: int, num_frames: int, rng: np.random.Generator, on_shape_fraction: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks ``(N, T, 2)`` float32 pixels and visibility ``(N, T)`` bool."""
    t = np.arange(num_frames)
    owners = rng.random(num_points) < on_shape_fraction
    tracks = np.zeros((num_points, num_frames, 2))
    layer = np.full(num_points, -1)  # index of the shape a point sits on, -1 for background
    for i in range(num_points):
        if owners[i]:
            k = int(rng.integers(len(scene.shapes)))
            shape = scene.shapes[k]
            offset = rng.uniform(-0.9, 0.9, size=2) * shape.half_size
            if shape.kind == "disc":
                offset *= 0.7  # stay inside the disc
            angles = shape.spin * t
            c, s = np.cos(angles), np.sin(angles)
            rotated = np.stack([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]], axis=-1)
            tracks[i] = shape.centre_at(t) + rotated
            layer[i] = k
        else:
            tracks[i] = rng.uniform(0, scene.background.shape[1], size=2)
    visible = np.asarray(inside_frame(tracks, scene.background.shape[1]))
    for k, shape in enumerate(scene.shapes):
        for frame in range(num_frames):
            covered = shape.contains(tracks[:, frame], frame) & (layer < k)
            visible[covered, frame] = False
    return tracks.astype(np.float32), visible


def render_clip(scene: Scene, num_frames: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 video of a scene."""
    return np.stack([render_frame(scene, t) for t in range(num_frames)])


class MovingShapesDataset(Dataset):
    """An endless-looking, deterministic dataset of moving-shape windows.

    Item ``i`` is always the same window (seeded by ``seed`` and ``i``), so runs reproduce.

    Args:
        length: number of windows.
        num_points: tracks per window.
        horizon: future steps after the conditioning frames.
        max_cond_frames: conditioning frames drawn in ``[1, max_cond_frames]``.
        seed: base seed.
        fixed_cond_frames: if set, every window uses exactly this many conditioning frames.
    """

    def __init__(self, length: int = 1000, num_points: int = 64, horizon: int = 16, max_cond_frames: int = 4, seed: int = 0, fixed_cond_frames: int | None = None) -> None:
        if length < 1 or num_points < 1 or horizon < 1 or max_cond_frames < 1:
            raise ValueError("MovingShapesDataset needs length, num_points, horizon and max_cond_frames >= 1")
        self.length, self.num_points, self.horizon = length, num_points, horizon
        self.max_cond_frames, self.seed, self.fixed_cond_frames = max_cond_frames, seed, fixed_cond_frames

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> TrackWindow:
        rng = np.random.default_rng([self.seed, index])
        scene = random_scene(rng)
        num_cond = self.fixed_cond_frames or int(rng.integers(1, self.max_cond_frames + 1))
        # Every window has the same track length (max_cond_frames + horizon) so batches collate;
        # a window with fewer conditioning frames simply predicts more steps.
        steps = self.max_cond_frames + self.horizon if self.fixed_cond_frames is None else num_cond + self.horizon
        tracks, visible = scene_tracks(scene, self.num_points, steps, rng)
        frames = np.stack([render_frame(scene, t) for t in range(num_cond)])
        return TrackWindow(
            frames=torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0,
            tracks=torch.from_numpy(tracks),
            visible=torch.from_numpy(visible),
            caption=scene.caption,
            meta={"source": "moving-shapes", "index": index},
        )
