"""Track-prediction metrics of paper §4.2 (Tables 1 and 5), plus probabilistic quality.

Paper metrics, computed per clip at 256 x 256 pixels over every future step:

- ``<δ^x`` for ``x`` in ``{4, 8, 16, 32, 64}``: fraction of *visible* target point-steps whose
  predicted position lies strictly within ``x`` pixels (Euclidean) of the target.
- ``<δ^x_avg``: the mean of the five.
- ADE: mean Euclidean error over visible target point-steps.

A stochastic predictor is sampled ``S`` times (paper: 5). The ``δ`` metrics come from the single
best sample of the clip, ranked by its ``δ_avg``; ADE is averaged over all samples.

Beyond the paper (so two predictors with equal best-of-5 can be told apart):

- best-of-K ``δ_avg`` and minADE@K for several K: the *expected* best value over K samples, estimated
  without bias from ``S >= K`` drawn samples with order statistics (every K-subset counted once), so
  the curve does not depend on the order the samples were drawn in;
- the energy score (a proper scoring rule) of the joint distribution over all visible point-steps of
  the clip, in pixels (divided by the square root of the number of scored point-steps so clips with
  different numbers of visible points are comparable; a constant factor per clip keeps it proper).

Every array here is plain numpy (float64 for the arithmetic); shapes are written on each function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np

DELTA_THRESHOLDS: tuple[int, ...] = (4, 8, 16, 32, 64)
"""Pixel thresholds of the paper's ``<δ^x`` metrics."""

K_VALUES: tuple[int, ...] = (1, 2, 5, 10, 20)
"""Sample counts of the full best-of-K curves (the paper's figure; 20 draws per clip)."""

TABLE_K_VALUES: tuple[int, ...] = (1, 2, 5)
"""Best-of-K points that Table 1 needs: 5 draws per clip, a quarter of the full curve's cost."""

PAPER_SAMPLES = 5
"""Samples per clip the paper draws from a stochastic predictor (§4.2)."""


def _as_float_array(name: str, value: object) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def _check_inputs(predictions: object, target: object, visible: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``predictions (S, N, H, 2)``, ``target (N, H, 2)``, ``visible (N, H)``."""
    pred = _as_float_array("predictions", predictions)
    tgt = _as_float_array("target", target)
    vis = np.asarray(visible.detach().cpu() if hasattr(visible, "detach") else visible)
    if vis.dtype != np.bool_:
        raise ValueError(f"visible must be a bool array, got dtype {vis.dtype}")
    if tgt.ndim != 3 or tgt.shape[-1] != 2:
        raise ValueError(f"target must be (N, H, 2), got {tgt.shape}")
    if pred.ndim != 4 or pred.shape[1:] != tgt.shape:
        raise ValueError(f"predictions must be (S, N, H, 2) = (S, {', '.join(map(str, tgt.shape))}), got {pred.shape}")
    if pred.shape[0] == 0:
        raise ValueError("predictions hold zero samples")
    if vis.shape != tgt.shape[:2]:
        raise ValueError(f"visible must be {tgt.shape[:2]} to match target, got {vis.shape}")
    if not vis.any():
        raise ValueError("no visible target point in any future step: nothing to score")
    return pred, tgt, vis


def point_errors(predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean error of every sample, point and step.

    Args:
        predictions: ``(S, N, H, 2)`` pixels.
        target: ``(N, H, 2)`` pixels.

    Returns:
        ``(S, N, H)`` distances in pixels.
    """
    return np.linalg.norm(np.asarray(predictions, dtype=np.float64) - np.asarray(target, dtype=np.float64)[None], axis=-1)


def delta_within(errors: np.ndarray, visible: np.ndarray, thresholds: tuple[int, ...] = DELTA_THRESHOLDS) -> np.ndarray:
    """``<δ^x`` per sample: fraction of visible point-steps with error strictly below ``x``.

    Args:
        errors: ``(S, N, H)`` from :func:`point_errors`.
        visible: ``(N, H)`` bool, the target's visibility.
        thresholds: pixel thresholds.

    Returns:
        ``(S, len(thresholds))`` fractions in ``[0, 1]``.
    """
    scored = errors[:, visible]  # (S, M) visible point-steps only
    limits = np.asarray(thresholds, dtype=np.float64)
    return (scored[:, :, None] < limits[None, None, :]).mean(axis=1)


def average_displacement(errors: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """ADE per sample: mean error over visible point-steps, ``(S, N, H)`` -> ``(S,)``."""
    return errors[:, visible].mean(axis=1)


def select_best_sample(delta_avg: np.ndarray) -> int:
    """Index of the sample with the highest ``δ_avg`` (the first one on ties)."""
    return int(np.argmax(np.asarray(delta_avg)))


def expected_best_of_k(values: np.ndarray, k: int, higher_is_better: bool) -> float:
    """Unbiased estimate of the expected best of ``k`` i.i.d. draws, from ``S >= k`` draws.

    Sorting the ``S`` values from best to worst, the ``i``-th best (0-based) is the best of a
    uniformly random ``k``-subset with probability ``C(S - 1 - i, k - 1) / C(S, k)``.

    Args:
        values: ``(S,)`` one value per drawn sample.
        k: subset size, ``1 <= k <= S``.
        higher_is_better: ``True`` for ``δ_avg`` (best = max), ``False`` for ADE (best = min).

    Returns:
        The expected best-of-``k`` value.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if higher_is_better:
        ordered = ordered[::-1]
    count = ordered.shape[0]
    if not 1 <= k <= count:
        raise ValueError(f"best-of-K needs 1 <= K <= number of samples ({count}), got K={k}")
    weights = np.array([comb(count - 1 - i, k - 1) for i in range(count)], dtype=np.float64) / comb(count, k)
    return float((weights * ordered).sum())


def energy_score(samples: np.ndarray, target: np.ndarray) -> float:
    """Energy score ``E||X - y|| - 0.5 E||X - X'||`` of a sample-based forecast (lower is better).

    ``E||X - X'||`` uses the unbiased estimator over ordered pairs of distinct samples; with a
    single sample (a deterministic forecast) that term is zero and the score is ``||x - y||``.

    Args:
        samples: ``(S, D)`` draws of the forecast.
        target: ``(D,)`` the observed outcome.
    """
    draws = _as_float_array("samples", samples)
    outcome = _as_float_array("target", target)
    if draws.ndim != 2 or outcome.shape != draws.shape[1:]:
        raise ValueError(f"energy_score needs samples (S, D) and target (D,), got {draws.shape} and {outcome.shape}")
    count = draws.shape[0]
    accuracy = np.linalg.norm(draws - outcome[None], axis=-1).mean()
    if count < 2:
        return float(accuracy)
    squared = (draws * draws).sum(axis=1)
    gram = draws @ draws.T
    pairwise = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0))
    spread = pairwise.sum() / (count * (count - 1))  # diagonal is zero
    return float(accuracy - 0.5 * spread)


def clip_energy_score(predictions: np.ndarray, target: np.ndarray, visible: np.ndarray) -> float:
    """Energy score of the joint forecast of all visible point-steps of one clip, per ``sqrt(M)``.

    Args:
        predictions: ``(S, N, H, 2)`` pixels.
        target: ``(N, H, 2)`` pixels.
        visible: ``(N, H)`` bool; ``M = visible.sum()`` point-steps are scored.
    """
    pred, tgt, vis = _check_inputs(predictions, target, visible)
    samples = pred[:, vis].reshape(pred.shape[0], -1)  # (S, 2M)
    return energy_score(samples, tgt[vis].reshape(-1)) / float(np.sqrt(vis.sum()))


@dataclass
class ClipScores:
    """All numbers of one predictor on one clip.

    Attributes:
        delta: ``{x: <δ^x}`` of the best of the first ``paper_samples`` samples.
        delta_avg: mean of ``delta``.
        ade: ADE averaged over the first ``paper_samples`` samples.
        best_sample: index of the sample the ``δ`` metrics come from.
        best_delta_avg_at_k: ``{K: expected best-of-K δ_avg}``.
        min_ade_at_k: ``{K: expected minADE@K}``.
        energy_score: :func:`clip_energy_score` over all drawn samples (pixels).
        num_samples: samples drawn (``1`` for a deterministic predictor).
        num_points: tracks in the clip.
        horizon: future steps scored (all of them, ``1 .. horizon``).
        scored_per_step: visible point count at each future step (what was scored).
    """

    delta: dict[int, float]
    delta_avg: float
    ade: float
    best_sample: int
    best_delta_avg_at_k: dict[int, float]
    min_ade_at_k: dict[int, float]
    energy_score: float
    num_samples: int
    num_points: int
    horizon: int
    scored_per_step: list[int] = field(default_factory=list)

    @property
    def num_scored(self) -> int:
        """Visible point-steps scored in this clip."""
        return int(sum(self.scored_per_step))

    def to_dict(self) -> dict:
        """JSON-able form (threshold and K keys become strings)."""
        return {
            "delta": {str(k): v for k, v in self.delta.items()},
            "delta_avg": self.delta_avg,
            "ade": self.ade,
            "best_sample": self.best_sample,
            "best_delta_avg_at_k": {str(k): v for k, v in self.best_delta_avg_at_k.items()},
            "min_ade_at_k": {str(k): v for k, v in self.min_ade_at_k.items()},
            "energy_score": self.energy_score,
            "num_samples": self.num_samples,
            "num_points": self.num_points,
            "horizon": self.horizon,
            "num_scored": self.num_scored,
            "scored_per_step": list(self.scored_per_step),
        }


def score_clip(
    predictions: np.ndarray,
    target: np.ndarray,
    visible: np.ndarray,
    paper_samples: int = PAPER_SAMPLES,
    thresholds: tuple[int, ...] = DELTA_THRESHOLDS,
    k_values: tuple[int, ...] = K_VALUES,
) -> ClipScores:
    """Score one clip.

    A single sample means a deterministic predictor: its best-of-K equals that sample for every K.
    Otherwise best-of-K is NaN for every K above the number of samples drawn, and the paper's
    numbers use all samples when fewer than ``paper_samples`` were drawn.

    Args:
        predictions: ``(S, N, H, 2)`` predicted future positions in pixels.
        target: ``(N, H, 2)`` pseudo-label future positions in pixels.
        visible: ``(N, H)`` bool target visibility; only visible point-steps are scored.
        paper_samples: the first this-many samples give the paper's ``δ`` and ADE numbers.
        thresholds: pixel thresholds of ``<δ^x``.
        k_values: K of the best-of-K curves.
    """
    pred, tgt, vis = _check_inputs(predictions, target, visible)
    count = pred.shape[0]
    if paper_samples < 1:
        raise ValueError(f"paper_samples must be >= 1, got {paper_samples}")

    errors = point_errors(pred, tgt)  # (S, N, H)
    deltas = delta_within(errors, vis, thresholds)  # (S, X)
    delta_avgs = deltas.mean(axis=1)  # (S,)
    ades = average_displacement(errors, vis)  # (S,)

    paper = slice(0, min(paper_samples, count))
    best = select_best_sample(delta_avgs[paper])
    if count == 1:
        best_at_k = {k: float(delta_avgs[0]) for k in k_values}
        min_ade_at_k = {k: float(ades[0]) for k in k_values}
    else:
        # K above the samples drawn cannot be estimated: NaN (shown as "—" in the tables)
        best_at_k = {k: expected_best_of_k(delta_avgs, k, True) if k <= count else float("nan") for k in k_values}
        min_ade_at_k = {k: expected_best_of_k(ades, k, False) if k <= count else float("nan") for k in k_values}
    return ClipScores(
        delta={int(x): float(v) for x, v in zip(thresholds, deltas[best])},
        delta_avg=float(delta_avgs[best]),
        ade=float(ades[paper].mean()),
        best_sample=best,
        best_delta_avg_at_k=best_at_k,
        min_ade_at_k=min_ade_at_k,
        energy_score=clip_energy_score(pred, tgt, vis),
        num_samples=count,
        num_points=int(tgt.shape[0]),
        horizon=int(tgt.shape[1]),
        scored_per_step=[int(v) for v in vis.sum(axis=0)],
    )


def aggregate_scores(clips: list[ClipScores]) -> dict:
    """Mean of every per-clip number over clips (each clip weighs the same, as in the paper's table).

    Returns:
        ``{"delta": {x: mean}, "delta_avg", "ade", "best_delta_avg_at_k": {K: mean},
        "min_ade_at_k": {K: mean}, "energy_score", "num_clips", "num_scored"}``.
    """
    if not clips:
        raise ValueError("aggregate_scores got no clips: every clip was skipped or the dataset is empty")

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    first = clips[0]
    return {
        "delta": {x: mean([c.delta[x] for c in clips]) for x in first.delta},
        "delta_avg": mean([c.delta_avg for c in clips]),
        "ade": mean([c.ade for c in clips]),
        "best_delta_avg_at_k": {k: mean([c.best_delta_avg_at_k[k] for c in clips]) for k in first.best_delta_avg_at_k},
        "min_ade_at_k": {k: mean([c.min_ade_at_k[k] for c in clips]) for k in first.min_ade_at_k},
        "energy_score": mean([c.energy_score for c in clips]),
        "num_clips": len(clips),
        "num_scored": int(sum(c.num_scored for c in clips)),
    }
