"""ARFM checkpoints as track predictors: ``arfm:<ckpt>`` and ``regression:<ckpt>`` (paper §4.2, Table 5).

``arfm:<ckpt>`` samples the flow-matching model (stochastic); ``arfm-parallel:<ckpt>`` is the same
model whose streaming horizon updates use the parallel schedule (:mod:`arfm.online`) instead
of the paper's sequential one; ``regression:<ckpt>`` runs the same
architecture trained with the squared-error objective of App. E (deterministic: one rollout,
repeated). Each checks the objective stored with the checkpoint, so a table row can never be
labelled with the wrong objective.
"""

from __future__ import annotations

from pathlib import Path

import torch

from arfm.predictors.base import PredictionRequest, register_predictor


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class CheckpointPredictor:
    """A :class:`~arfm.model.TrackShiftFlowPredictor` loaded from a checkpoint directory.

    Args:
        checkpoint: directory written by ``arfm.checkpoint.save_checkpoint``.
        objective: the objective the checkpoint must have been trained with.
        device: torch device; CUDA when available by default.
        use_ema: sample from the EMA weights when the checkpoint has them (the paper does).
        schedule: re-integration schedule of streaming horizon updates, ``"sequential"``
            (paper) or ``"parallel"`` (see :class:`arfm.online.HorizonPredictor`).
    """

    def __init__(
        self, checkpoint: str | Path, objective: str, device: str | None = None, use_ema: bool = True, schedule: str = "sequential"
    ) -> None:
        from arfm.checkpoint import load_model  # the model is only imported when a checkpoint is used

        self.checkpoint = Path(checkpoint)
        self.device = torch.device(device or _default_device())
        self.model = load_model(self.checkpoint, device=str(self.device), use_ema=use_ema).eval()
        found = self.model.config.objective
        if found != objective:
            hint = "regression" if found == "regression" else "arfm"
            raise ValueError(
                f"checkpoint {str(self.checkpoint)!r} was trained with objective {found!r}, not {objective!r}: "
                f"use the predictor spec '{hint}:{self.checkpoint}'"
            )
        self.stochastic = objective == "flow"
        self.schedule = schedule
        self.name = ("arfm" if schedule == "sequential" else "arfm-parallel") if self.stochastic else "regression"

    @torch.no_grad()
    def predict(self, request: PredictionRequest) -> torch.Tensor:
        """Roll the model out for ``request.horizon`` steps.

        Returns:
            ``(num_samples, N, horizon, 2)`` pixel positions.
        """
        draws = request.num_samples if self.stochastic else 1
        future = self.model.sample(
            request.frames[None].to(self.device),
            request.observed_tracks[None].to(self.device),
            [request.caption],
            request.horizon,
            num_samples=draws,
        )[0]  # (draws, N, H, 2)
        if draws != request.num_samples:  # deterministic: every "sample" is the same rollout
            future = future.expand(request.num_samples, -1, -1, -1)
        return future.float().cpu().clone()

    def stream(self, horizon: int, tracker=None, seed: int = 0):
        """A :class:`arfm.online.HorizonPredictor` over this model (paper §3.4 horizon updates).

        Args:
            horizon: future steps kept.
            tracker: online tracker giving the observed positions at each frame (default LK;
                :class:`arfm.online.GivenPositionsTracker` when the caller knows them).
            seed: noise seed.
        """
        from arfm.online import HorizonPredictor

        mode = "update" if self.stochastic else "naive"  # a regression model has nothing to re-noise
        return HorizonPredictor(self.model, horizon=horizon, tracker=tracker, mode=mode, schedule=self.schedule, seed=seed)


def _require_path(name: str, argument: str | None) -> str:
    if not argument:
        raise ValueError(f"the {name!r} predictor needs a checkpoint directory: '{name}:<checkpoint dir>'")
    return argument


@register_predictor("arfm")
def _build_arfm(argument: str | None) -> CheckpointPredictor:
    return CheckpointPredictor(_require_path("arfm", argument), objective="flow")


@register_predictor("arfm-parallel")
def _build_arfm_parallel(argument: str | None) -> CheckpointPredictor:
    return CheckpointPredictor(_require_path("arfm-parallel", argument), objective="flow", schedule="parallel")


@register_predictor("regression")
def _build_regression(argument: str | None) -> CheckpointPredictor:
    return CheckpointPredictor(_require_path("regression", argument), objective="regression")
