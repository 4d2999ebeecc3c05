"""Chronos time-series baselines of paper §4.2 / Table 1: ``chronos-absolute:<dir>``, ``chronos-relative:<dir>``.

Tracks are forecast without looking at the video: the x and y coordinates of every point are two
independent univariate series fed to a Chronos model (Ansari et al., 2024) loaded from a local
directory through the ``chronos-forecasting`` package.

- *absolute*: the context is the observed positions and the forecast is read as future positions;
- *relative*: the context is the per-step shifts, with a leading zero as the model's ``T_C`` has
  (so a single conditioning frame gives the context ``[0]``), and the forecast shifts are summed
  from the last observed position.

Sample-based pipelines (the original T5 Chronos) are stochastic: each of the requested samples is
one Chronos sample path. Quantile pipelines (Chronos-Bolt) give no samples; their median forecast is
used and the predictor is deterministic.

Weights are never downloaded: pass a directory holding a Chronos ``config.json`` and weights (for
example a local copy of ``amazon/chronos-t5-small``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from arfm.predictors.base import PredictionRequest, register_predictor

Formulation = Literal["absolute", "relative"]

_INSTALL_HINT = "install it with `pip install 'arfm-core[chronos]'` (or `pip install chronos-forecasting`)"


def load_chronos_pipeline(model_dir: str | Path, device: str = "cpu"):
    """Load a Chronos pipeline from a local model directory.

    Args:
        model_dir: directory with the Chronos ``config.json`` and weights.
        device: torch device map for the weights.

    Raises:
        FileNotFoundError: the directory or its ``config.json`` is missing.
        ImportError: the ``chronos-forecasting`` package is not installed.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Chronos model directory {str(path)!r} does not exist: download a Chronos checkpoint "
            "(e.g. amazon/chronos-t5-small from the Hugging Face hub) on a machine with network access "
            "and pass its local directory as 'chronos-absolute:<dir>' / 'chronos-relative:<dir>'"
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"Chronos model directory {str(path)!r} has no config.json: not a saved Chronos model")
    try:
        from chronos import BaseChronosPipeline
    except ImportError as exc:
        raise ImportError(f"the Chronos baselines need the 'chronos-forecasting' package, which is not installed: {_INSTALL_HINT}") from exc
    return BaseChronosPipeline.from_pretrained(str(path), device_map=device)


class ChronosPredictor:
    """Forecast each point's x and y series with Chronos.

    Args:
        model_dir: local Chronos model directory.
        formulation: ``"absolute"`` positions or ``"relative"`` shifts.
        device: torch device for the model; CUDA when available by default.
    """

    def __init__(self, model_dir: str | Path, formulation: Formulation, device: str | None = None) -> None:
        if formulation not in ("absolute", "relative"):
            raise ValueError(f"Chronos formulation must be 'absolute' or 'relative', got {formulation!r}")
        self.pipeline = load_chronos_pipeline(model_dir, device or ("cuda" if torch.cuda.is_available() else "cpu"))
        from chronos import ForecastType  # load_chronos_pipeline has checked the package is there

        self.formulation = formulation
        self.name = f"chronos-{formulation}"
        self.stochastic = self.pipeline.forecast_type == ForecastType.SAMPLES

    def _context(self, observed: torch.Tensor) -> torch.Tensor:
        """``(N, F, 2)`` observed positions -> ``(2N, F)`` series (x of every point, then y)."""
        if self.formulation == "relative":
            shifts = observed[:, 1:] - observed[:, :-1]
            observed = torch.cat([torch.zeros_like(observed[:, :1]), shifts], dim=1)  # T_C: leading zero
        return torch.cat([observed[..., 0], observed[..., 1]], dim=0).float()

    def _forecast(self, context: torch.Tensor, horizon: int, num_samples: int) -> torch.Tensor:
        """``(2N, F)`` -> ``(S, 2N, horizon)`` forecasts of the series."""
        if self.stochastic:
            paths = self.pipeline.predict(context, prediction_length=horizon, num_samples=num_samples)  # (2N, S, H)
            return paths.permute(1, 0, 2)
        quantiles, _ = self.pipeline.predict_quantiles(context, prediction_length=horizon, quantile_levels=[0.5])
        if not isinstance(quantiles, torch.Tensor):
            raise TypeError(f"{type(self.pipeline).__name__} returns per-series lists: only Chronos and Chronos-Bolt pipelines are supported")
        return quantiles[..., 0][None].expand(num_samples, -1, -1)  # (S, 2N, H)

    @torch.no_grad()
    def predict(self, request: PredictionRequest) -> torch.Tensor:
        """Forecast ``request.horizon`` future positions.

        Returns:
            ``(num_samples, N, horizon, 2)`` pixel positions.
        """
        observed = request.observed_tracks.double()  # (N, F, 2)
        num_points = observed.shape[0]
        series = self._forecast(self._context(observed), request.horizon, request.num_samples).double()
        future = torch.stack([series[:, :num_points], series[:, num_points:]], dim=-1)  # (S, N, H, 2)
        if self.formulation == "relative":
            future = observed[None, :, -1:, :] + torch.cumsum(future, dim=2)
        return future.float().contiguous()


def _require_dir(name: str, argument: str | None) -> str:
    if not argument:
        raise ValueError(f"the {name!r} predictor needs a local Chronos model directory: '{name}:<dir>'")
    return argument


@register_predictor("chronos-absolute")
def _build_absolute(argument: str | None) -> ChronosPredictor:
    return ChronosPredictor(_require_dir("chronos-absolute", argument), "absolute")


@register_predictor("chronos-relative")
def _build_relative(argument: str | None) -> ChronosPredictor:
    return ChronosPredictor(_require_dir("chronos-relative", argument), "relative")
