"""Metrics of paper §4.2 on hand-made tracks with known answers, and the energy score on Gaussians."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from arfm.evaluation.metrics import (
    aggregate_scores,
    average_displacement,
    clip_energy_score,
    delta_within,
    energy_score,
    expected_best_of_k,
    point_errors,
    score_clip,
)


def _offset_tracks(offsets: list[float], horizon: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Target at the origin; point i predicted ``offsets[i]`` px to the right at every step."""
    target = np.zeros((len(offsets), horizon, 2))
    pred = target.copy()
    pred[:, :, 0] = np.asarray(offsets)[:, None]
    return pred[None], target


def test_delta_thresholds_are_strict_and_count_visible_points_only() -> None:
    pred, target = _offset_tracks([3.0, 4.0, 10.0, 100.0])
    visible = np.ones((4, 3), dtype=bool)
    deltas = delta_within(point_errors(pred, target), visible)
    # errors 3, 4, 10, 100 per step: <4 -> 1/4 (4.0 is not strictly within 4), <8 -> 2/4, <16 -> 3/4,
    # <32 -> 3/4, <64 -> 3/4.
    np.testing.assert_allclose(deltas[0], [0.25, 0.5, 0.75, 0.75, 0.75])
    visible[3] = False  # hide the far point: only three points are scored now
    deltas = delta_within(point_errors(pred, target), visible)
    np.testing.assert_allclose(deltas[0], [1 / 3, 2 / 3, 1.0, 1.0, 1.0])


def test_ade_is_euclidean_and_ignores_invisible_steps() -> None:
    target = np.zeros((1, 2, 2))
    pred = np.array([[[[3.0, 4.0], [6.0, 8.0]]]])  # errors 5 and 10
    visible = np.array([[True, True]])
    assert average_displacement(point_errors(pred, target), visible)[0] == pytest.approx(7.5)
    visible = np.array([[True, False]])
    assert average_displacement(point_errors(pred, target), visible)[0] == pytest.approx(5.0)


def test_score_clip_takes_best_sample_for_delta_and_mean_for_ade() -> None:
    target = np.zeros((2, 4, 2))
    visible = np.ones((2, 4), dtype=bool)
    samples = np.zeros((5, 2, 4, 2))
    for s, offset in enumerate([50.0, 2.0, 20.0, 70.0, 10.0]):
        samples[s, :, :, 1] = offset  # every point of sample s is `offset` px below the target
    scores = score_clip(samples, target, visible, k_values=(1, 2, 5))
    assert scores.best_sample == 1  # 2 px off: within every threshold
    assert scores.delta == {4: 1.0, 8: 1.0, 16: 1.0, 32: 1.0, 64: 1.0}
    assert scores.delta_avg == pytest.approx(1.0)
    assert scores.ade == pytest.approx(np.mean([50, 2, 20, 70, 10]))
    assert scores.min_ade_at_k[5] == pytest.approx(2.0)
    assert scores.min_ade_at_k[1] == pytest.approx(np.mean([50, 2, 20, 70, 10]))
    assert scores.scored_per_step == [2, 2, 2, 2]
    assert scores.num_scored == 8 and scores.horizon == 4 and scores.num_points == 2


def test_paper_metrics_use_only_the_first_paper_samples() -> None:
    target = np.zeros((1, 2, 2))
    visible = np.ones((1, 2), dtype=bool)
    samples = np.zeros((10, 1, 2, 2))
    samples[:5, ..., 0] = 40.0  # the first five are all 40 px off
    samples[5:, ..., 0] = 1.0  # later ones (drawn only for the best-of-K curves) are close
    scores = score_clip(samples, target, visible, paper_samples=5, k_values=(1, 10))
    assert scores.delta == {4: 0.0, 8: 0.0, 16: 0.0, 32: 0.0, 64: 1.0}
    assert scores.ade == pytest.approx(40.0)
    assert scores.min_ade_at_k[10] == pytest.approx(1.0)


def test_deterministic_single_sample_has_flat_best_of_k_and_error_as_energy_score() -> None:
    pred, target = _offset_tracks([3.0, 4.0])
    scores = score_clip(pred, target, np.ones((2, 3), dtype=bool))
    assert set(scores.min_ade_at_k) == {1, 2, 5, 10, 20}
    assert all(v == pytest.approx(3.5) for v in scores.min_ade_at_k.values())
    # joint vector error: sqrt(3 * 9 + 3 * 16) = sqrt(75), divided by sqrt(6 point-steps)
    assert scores.energy_score == pytest.approx(math.sqrt(75) / math.sqrt(6))


def test_expected_best_of_k_matches_enumeration_over_subsets() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=7)
    for k in (1, 2, 3, 7):
        subsets = list(itertools.combinations(values, k))
        assert expected_best_of_k(values, k, higher_is_better=False) == pytest.approx(np.mean([min(s) for s in subsets]))
        assert expected_best_of_k(values, k, higher_is_better=True) == pytest.approx(np.mean([max(s) for s in subsets]))
    with pytest.raises(ValueError, match="K=8"):
        expected_best_of_k(values, 8, higher_is_better=True)


def _gaussian_energy_score(sigma: float, dim: int) -> float:
    """Closed form for X ~ N(0, sigma^2 I_d), y = 0: (sqrt 2 - 1) sigma sqrt 2 Gamma((d+1)/2) / Gamma(d/2)."""
    mean_norm = sigma * math.sqrt(2.0) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
    return mean_norm - 0.5 * math.sqrt(2.0) * mean_norm


@pytest.mark.parametrize("dim", [1, 2, 10])
def test_energy_score_matches_gaussian_closed_form(dim: int) -> None:
    rng = np.random.default_rng(dim)
    sigma = 3.0
    samples = rng.normal(scale=sigma, size=(2000, dim))
    expected = _gaussian_energy_score(sigma, dim)
    assert energy_score(samples, np.zeros(dim)) == pytest.approx(expected, rel=0.03)


def test_energy_score_in_one_dimension_is_the_gaussian_crps() -> None:
    # CRPS(N(mu, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)], z = (y - mu) / s
    rng = np.random.default_rng(1)
    mu, s, y = 1.0, 2.0, 4.0
    z = (y - mu) / s
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    crps = s * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    samples = rng.normal(mu, s, size=(2000, 1))
    assert energy_score(samples, np.array([y])) == pytest.approx(crps, rel=0.03)


def test_energy_score_prefers_the_true_distribution() -> None:
    rng = np.random.default_rng(2)
    outcomes = rng.normal(size=(200, 4))
    def mean_score(scale: float) -> float:
        return float(np.mean([energy_score(rng.normal(scale=scale, size=(64, 4)), y) for y in outcomes]))
    honest, overconfident, underconfident = mean_score(1.0), mean_score(0.2), mean_score(3.0)
    assert honest < overconfident and honest < underconfident


def test_clip_energy_score_masks_invisible_point_steps() -> None:
    target = np.zeros((2, 2, 2))
    pred = np.zeros((1, 2, 2, 2))
    pred[0, 1, :, 0] = 1000.0  # point 1 is wildly off but invisible
    visible = np.array([[True, True], [False, False]])
    assert clip_energy_score(pred, target, visible) == pytest.approx(0.0)


def test_bad_inputs_are_rejected_with_named_errors() -> None:
    target = np.zeros((2, 3, 2))
    visible = np.ones((2, 3), dtype=bool)
    with pytest.raises(ValueError, match="predictions must be"):
        score_clip(np.zeros((1, 2, 4, 2)), target, visible)
    with pytest.raises(ValueError, match="visible must be a bool"):
        score_clip(np.zeros((1, 2, 3, 2)), target, visible.astype(np.float32))
    with pytest.raises(ValueError, match="no visible target point"):
        score_clip(np.zeros((1, 2, 3, 2)), target, np.zeros((2, 3), dtype=bool))
    bad = np.zeros((1, 2, 3, 2))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="predictions contains NaN"):
        score_clip(bad, target, visible)
    with pytest.raises(ValueError, match="no clips"):
        aggregate_scores([])


def test_best_of_k_beyond_the_samples_drawn_is_nan() -> None:
    target = np.zeros((1, 2, 2))
    samples = np.zeros((3, 1, 2, 2))
    samples[:, 0, :, 0] = np.array([1.0, 5.0, 9.0])[:, None]
    scores = score_clip(samples, target, np.ones((1, 2), dtype=bool), k_values=(1, 2, 5))
    assert scores.min_ade_at_k[1] == pytest.approx(5.0)
    assert scores.min_ade_at_k[2] == pytest.approx((1 + 1 + 5) / 3)  # subsets {1,5} {1,9} {5,9}
    assert math.isnan(scores.min_ade_at_k[5]) and math.isnan(scores.best_delta_avg_at_k[5])
    assert scores.ade == pytest.approx(5.0)  # fewer than paper_samples drawn: all three averaged


def test_aggregate_weighs_every_clip_equally() -> None:
    a = score_clip(*_offset_tracks([1.0]), np.ones((1, 3), dtype=bool))
    b = score_clip(*_offset_tracks([9.0, 9.0, 9.0]), np.ones((3, 3), dtype=bool))
    summary = aggregate_scores([a, b])
    assert summary["ade"] == pytest.approx(5.0)
    assert summary["delta"][8] == pytest.approx(0.5)
    assert summary["num_clips"] == 2 and summary["num_scored"] == 12
