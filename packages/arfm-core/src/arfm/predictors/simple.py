"""Predictors that need no model: the ground-truth oracle, no tracks, and no movement (paper §4.2)."""

from __future__ import annotations

import torch

from arfm.predictors.base import PredictionRequest, register_predictor


class GroundTruthPredictor:
    """Oracle: returns the request's ground-truth future tracks (downstream upper bound)."""

    name = "gt"
    stochastic = False
    requires_ground_truth = True

    def predict(self, request: PredictionRequest) -> torch.Tensor:
        if request.future_tracks is None:
            raise ValueError("the 'gt' predictor needs PredictionRequest.future_tracks, which this request does not carry")
        future = request.future_tracks[:, : request.horizon]
        if future.shape[1] != request.horizon:
            raise ValueError(f"ground truth covers {future.shape[1]} future steps, {request.horizon} were asked for")
        return future.unsqueeze(0).expand(request.num_samples, -1, -1, -1).clone()


class NoTracksPredictor:
    """Gives no tracks: downstream models run without track conditioning."""

    name = "none"
    stochastic = False

    def predict(self, request: PredictionRequest) -> None:
        return None


class NoMovementPredictor:
    """Holds every point at its last observed position for the whole horizon."""

    name = "no-movement"
    stochastic = False

    def predict(self, request: PredictionRequest) -> torch.Tensor:
        last = request.observed_tracks[:, -1]  # (N, 2)
        future = last[:, None, :].expand(-1, request.horizon, -1)
        return future.unsqueeze(0).expand(request.num_samples, -1, -1, -1).clone()


@register_predictor("gt")
def _build_gt(argument: str | None) -> GroundTruthPredictor:
    return GroundTruthPredictor()


@register_predictor("none")
def _build_none(argument: str | None) -> NoTracksPredictor:
    return NoTracksPredictor()


@register_predictor("no-movement")
def _build_no_movement(argument: str | None) -> NoMovementPredictor:
    return NoMovementPredictor()
