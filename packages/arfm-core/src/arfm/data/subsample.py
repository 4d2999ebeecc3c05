"""Track sub-sampling for training (paper §3.1) and the evaluation clip filter (paper §4.2).

Training, exactly as §3.1 writes it:

1. *Visibility filter*: keep tracks visible in more than half of the future frames (the window
   frames after the conditioning frames). When fewer than ``N`` tracks pass, the ``N`` most
   visible tracks are kept instead (ties broken by track index).
2. *Movement*: the mean squared per-step displacement ``|p_{l+1} - p_l|^2`` over the window's
   steps whose both ends are visible (0 for a track with no such step).
3. *Movement-weighted sampling*: probability ``softmax(movement / tau)``; ``N`` tracks drawn
   without replacement (successive draws from the renormalised softmax, computed with the
   Gumbel-top-k trick so a near-zero probability never breaks the draw).

Evaluation, as §4.2 writes it: per track, the Euclidean distance between adjacent steps summed
over the sequence; per clip, the mean of the ``top_k`` (100) largest of the first ``num_tracks``
(1000) tracks; clips whose value exceeds ``min_movement`` (50 px) are kept.

Movements are in pixels of the 256 x 256 model frame.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TEMPERATURE = 10.0
"""Softmax temperature in squared pixels. The paper does not give a value; with 10 px^2 a
track moving sqrt(10) ~ 3.2 px per step is e ~ 2.7 times as likely to be drawn as a still one,
and one moving 10 px per step ~ 2e4 times."""


def _check_tracks(tracks: np.ndarray, visible: np.ndarray | None = None) -> None:
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(f"tracks must be (M, L, 2), got {tracks.shape}")
    if visible is not None and visible.shape != tracks.shape[:2]:
        raise ValueError(f"visible must be {tracks.shape[:2]} to match tracks, got {visible.shape}")


def visibility_filter(future_visible: np.ndarray, min_count: int) -> np.ndarray:
    """Indices of tracks visible in more than half of the future frames.

    Args:
        future_visible: ``(M, F)`` bool visibility on the future frames.
        min_count: the number of tracks wanted (``N``); when fewer pass, the ``min_count`` most
            visible tracks are returned instead (all of them when ``M <= min_count``).

    Returns:
        Sorted int64 indices.
    """
    future_visible = np.asarray(future_visible, dtype=bool)
    if future_visible.ndim != 2:
        raise ValueError(f"future_visible must be (M, F), got {future_visible.shape}")
    if future_visible.shape[1] == 0:
        raise ValueError("future_visible has no future frames: the window needs at least one step to predict")
    counts = future_visible.sum(axis=1)
    passing = np.flatnonzero(2 * counts > future_visible.shape[1])
    if len(passing) >= min_count:
        return passing.astype(np.int64)
    order = np.argsort(-counts, kind="stable")  # most visible first, ties by index
    return np.sort(order[:min_count]).astype(np.int64)


def track_movement(tracks: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Mean squared per-step displacement over steps visible at both ends.

    Args:
        tracks: ``(M, L, 2)`` pixel positions.
        visible: ``(M, L)`` bool.

    Returns:
        ``(M,)`` float64, squared pixels per step (0 when no step is visible at both ends).
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    _check_tracks(tracks, visible)
    squared = (np.diff(tracks, axis=1) ** 2).sum(axis=-1)  # (M, L-1)
    valid = visible[:, 1:] & visible[:, :-1]
    count = valid.sum(axis=1)
    total = np.where(valid, squared, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def sampling_probabilities(movement: np.ndarray, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """``softmax(movement / temperature)`` (numerically stable)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.asarray(movement, dtype=np.float64) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def sample_tracks(
    tracks: np.ndarray,
    visible: np.ndarray,
    num_points: int,
    num_cond_frames: int,
    rng: np.random.Generator,
    temperature: float = DEFAULT_TEMPERATURE,
) -> np.ndarray:
    """Pick ``num_points`` tracks of one window as §3.1 says (filter, then weighted draw).

    Args:
        tracks: ``(M, L, 2)`` window positions.
        visible: ``(M, L)`` window visibility.
        num_points: ``N``; fewer are returned only when the clip has fewer than ``N`` tracks.
        num_cond_frames: ``L_c``; the future frames are ``L_c .. L-1``.
        rng: source of randomness.
        temperature: softmax temperature ``tau`` (squared pixels).

    Returns:
        Int64 indices into the ``M`` tracks, in the order drawn.
    """
    tracks = np.asarray(tracks)
    _check_tracks(tracks, np.asarray(visible))
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    if not 1 <= num_cond_frames < tracks.shape[1]:
        raise ValueError(f"num_cond_frames must lie in [1, {tracks.shape[1] - 1}], got {num_cond_frames}")
    candidates = visibility_filter(visible[:, num_cond_frames:], num_points)
    if len(candidates) <= num_points:
        return candidates[rng.permutation(len(candidates))]
    movement = track_movement(tracks[candidates], visible[candidates])
    # Gumbel-top-k == sequential sampling without replacement from softmax(logits).
    keys = movement / temperature + rng.gumbel(size=len(candidates))
    chosen = np.argsort(-keys, kind="stable")[:num_points]
    return candidates[chosen]


def summed_distance(tracks: np.ndarray) -> np.ndarray:
    """Per track, the Euclidean distance between adjacent steps summed over time: ``(M,)``."""
    tracks = np.asarray(tracks, dtype=np.float64)
    _check_tracks(tracks)
    return np.linalg.norm(np.diff(tracks, axis=1), axis=-1).sum(axis=1)


def clip_movement(tracks: np.ndarray, top_k: int = 100, num_tracks: int = 1000) -> float:
    """The §4.2 movement score of a clip: mean summed distance of its ``top_k`` moving tracks.

    Args:
        tracks: ``(M, T, 2)`` positions; only the first ``num_tracks`` are considered.
        top_k: how many of the largest movements to average (all when fewer tracks exist).
        num_tracks: tracks considered per clip (the paper labels 1000).
    """
    if top_k < 1 or num_tracks < 1:
        raise ValueError(f"top_k and num_tracks must be >= 1, got {top_k}, {num_tracks}")
    moves = summed_distance(np.asarray(tracks)[:num_tracks])
    if moves.size == 0:
        raise ValueError("clip has no tracks: cannot score its movement")
    k = min(top_k, moves.size)
    return float(np.sort(moves)[-k:].mean())


def eval_filter(
    clip_tracks: "dict[str, np.ndarray] | list[tuple[str, np.ndarray]]",
    min_movement: float = 50.0,
    top_k: int = 100,
    num_tracks: int = 1000,
) -> list[str]:
    """Keep the clips that move enough to be informative for evaluation (§4.2).

    Args:
        clip_tracks: clip id -> ``(M, T, 2)`` tracks (a dict or ``(id, tracks)`` pairs).
        min_movement: keep clips whose :func:`clip_movement` is strictly above this (pixels).
        top_k / num_tracks: see :func:`clip_movement`.

    Returns:
        The ids of the clips kept, in input order.
    """
    items = clip_tracks.items() if isinstance(clip_tracks, dict) else clip_tracks
    return [clip_id for clip_id, tracks in items if clip_movement(tracks, top_k, num_tracks) > min_movement]
