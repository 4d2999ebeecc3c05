"""A tracking case with known truth: a random texture moved by known rotations and shifts.

Used to measure the pseudo-labelling tracker honestly (paper §3.1 trusts its tracker; here we
check ours). Every frame is the same large texture warped by a known similarity transform, so
the true position of any point on every frame follows from the transform alone.

Run ``python -m arfm.tracking.synthetic`` to print the accuracy of the default LK tracker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from arfm.tracking.base import PointTracker, make_queries


@dataclass
class SyntheticMotion:
    """Motion of the synthetic clip.

    Attributes:
        num_frames: frames ``T``.
        size: square frame side, pixels.
        shift_per_frame: ``(dx, dy)`` pixels per frame of the texture.
        degrees_per_frame: rotation per frame about the frame centre.
        blur_sigma: Gaussian blur of the noise texture (controls feature size), pixels.
        seed: texture seed.
    """

    num_frames: int = 32
    size: int = 256
    shift_per_frame: tuple[float, float] = (1.5, -0.75)
    degrees_per_frame: float = 0.5
    blur_sigma: float = 2.0
    seed: int = 0


def _frame_matrix(motion: SyntheticMotion, t: int, canvas: int) -> np.ndarray:
    """OpenCV 2x3 matrix: canvas pixel (cv convention) -> frame t pixel (cv convention)."""
    half = (canvas - motion.size) / 2.0
    centre = motion.size / 2.0 - 0.5
    rot = cv2.getRotationMatrix2D((centre, centre), motion.degrees_per_frame * t, 1.0)
    m = np.vstack([rot, [0, 0, 1]])
    shift = np.array([[1, 0, motion.shift_per_frame[0] * t - half], [0, 1, motion.shift_per_frame[1] * t - half], [0, 0, 1]])
    return (m @ shift)[:2]


def make_synthetic_clip(motion: SyntheticMotion, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the clip and the true tracks of ``queries`` ``(N, 3)`` ``[t, x, y]``.

    Returns:
        ``video`` ``(T, S, S, 3)`` uint8, ``tracks`` ``(N, T, 2)`` float32 true pixel positions
        (:mod:`arfm.coords` convention) and ``inside`` ``(N, T)`` bool (true point in the frame).
    """
    rng = np.random.default_rng(motion.seed)
    canvas = motion.size * 3
    noise = rng.uniform(0, 255, size=(canvas, canvas)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), motion.blur_sigma)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    texture = np.repeat(texture[..., None], 3, axis=2)
    mats = [_frame_matrix(motion, t, canvas) for t in range(motion.num_frames)]
    video = np.stack(
        [cv2.warpAffine(texture, m, (motion.size, motion.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for m in mats]
    )
    # Query position on its frame -> canvas -> every frame (all in OpenCV pixel convention).
    tracks = np.zeros((len(queries), motion.num_frames, 2), np.float64)
    for i, (t, x, y) in enumerate(queries):
        inv = cv2.invertAffineTransform(mats[int(t)])
        c = inv @ np.array([x - 0.5, y - 0.5, 1.0])
        for s, m in enumerate(mats):
            tracks[i, s] = m @ np.array([c[0], c[1], 1.0]) + 0.5
    inside = (tracks >= 0).all(-1) & (tracks < motion.size).all(-1)
    return video, tracks.astype(np.float32), inside


def measure_tracker(tracker: PointTracker, motion: SyntheticMotion | None = None, num_points: int = 400) -> dict:
    """Track a synthetic clip and compare with the truth.

    Returns:
        ``mean_error_px`` / ``median_error_px`` / ``p95_error_px`` over points the tracker calls
        visible on frames where they truly are in the frame, ``visible_fraction`` of those
        truly-inside point-frames the tracker keeps, and ``false_visible`` point-frames the
        tracker calls visible while the truth is outside the frame.
    """
    motion = motion or SyntheticMotion()
    queries = make_queries(num_points, motion.num_frames, motion.size, num_query_frames=1, layout="grid", seed=motion.seed)
    video, truth, inside = make_synthetic_clip(motion, queries)
    tracks, visible = tracker.track(video, queries)
    used = visible & inside
    errors = np.linalg.norm(tracks - truth, axis=-1)[used]
    return {
        "mean_error_px": float(errors.mean()) if errors.size else float("nan"),
        "median_error_px": float(np.median(errors)) if errors.size else float("nan"),
        "p95_error_px": float(np.percentile(errors, 95)) if errors.size else float("nan"),
        "visible_fraction": float(used.sum() / max(inside.sum(), 1)),
        "false_visible": int((visible & ~inside).sum()),
        "num_points": num_points,
        "motion": asdict(motion),
    }


def main() -> None:
    """Print the LK tracker's accuracy on the default case and a harder, faster one."""
    from arfm.tracking.lk import LucasKanadeTracker

    cases = {
        "translate+rotate (1.7 px, 0.5 deg per frame)": SyntheticMotion(),
        "fast (6.3 px, 2 deg per frame)": SyntheticMotion(shift_per_frame=(6.0, 2.0), degrees_per_frame=2.0, seed=1),
    }
    for name, motion in cases.items():
        print(name, json.dumps(measure_tracker(LucasKanadeTracker(), motion), indent=None))


if __name__ == "__main__":
    main()
