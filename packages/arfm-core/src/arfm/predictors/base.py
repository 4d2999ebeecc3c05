"""The one interface every track predictor implements, and the registry that finds them by name.

Downstream models (GR-1, CHOIS) train on ground-truth tracks; at evaluation any predictor
is swapped in by name (``arfm:<ckpt>``, ``gt``, ``none``, ``no-movement``, ``regression:<ckpt>``,
...), so no caller ever branches on a predictor's name.

Spec strings are ``name`` or ``name:argument`` (the argument is usually a path)::

    predictor = build_predictor("arfm:runs/tiny/checkpoint")
    future = predictor.predict(request)        # (S, N, H, 2) pixels, or None for "none"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch


@dataclass
class PredictionRequest:
    """Everything a predictor may look at for one clip.

    Attributes:
        frames: ``(F, 3, 256, 256)`` float in ``[0, 1]``: the conditioning frames.
        observed_tracks: ``(N, F, 2)`` pixel positions of the query points on those frames
            (for ``F == 1`` simply the query points).
        observed_visible: ``(N, F)`` bool.
        caption: language instruction / description (may be empty).
        horizon: future steps to predict.
        num_samples: draws wanted from a stochastic predictor (deterministic ones repeat).
        future_tracks: ``(N, horizon, 2)`` ground truth, read only by the ``gt`` oracle.
        future_visible: ``(N, horizon)`` bool, ground-truth visibility, likewise.
    """

    frames: torch.Tensor
    observed_tracks: torch.Tensor
    observed_visible: torch.Tensor
    caption: str = ""
    horizon: int = 50
    num_samples: int = 1
    future_tracks: torch.Tensor | None = None
    future_visible: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"PredictionRequest.frames must be (F, 3, H, W), got {tuple(self.frames.shape)}")
        if self.observed_tracks.ndim != 3 or self.observed_tracks.shape[-1] != 2:
            raise ValueError(f"PredictionRequest.observed_tracks must be (N, F, 2), got {tuple(self.observed_tracks.shape)}")
        if self.observed_tracks.shape[0] == 0:
            raise ValueError("PredictionRequest.observed_tracks has zero points: nothing to predict")
        if self.observed_tracks.shape[1] != self.frames.shape[0]:
            raise ValueError(
                f"PredictionRequest has {self.frames.shape[0]} frames but observed_tracks covers {self.observed_tracks.shape[1]} steps"
            )
        if not torch.isfinite(self.observed_tracks).all():
            raise ValueError("PredictionRequest.observed_tracks contains NaN or Inf")
        if self.horizon < 1 or self.num_samples < 1:
            raise ValueError(f"PredictionRequest needs horizon >= 1 and num_samples >= 1, got {self.horizon}, {self.num_samples}")


@runtime_checkable
class TrackPredictor(Protocol):
    """A source of future tracks.

    ``predict`` returns ``(num_samples, N, horizon, 2)`` pixel positions of the steps after the
    last observed frame, or ``None`` when the predictor deliberately gives no tracks (``none``).

    Optional capabilities, looked up with ``getattr`` by callers (never by name):

    - ``requires_ground_truth: bool`` — True when ``predict`` reads ``request.future_tracks``
      (the ``gt`` oracle), so closed-loop callers know to compute the ground truth.
    - ``stream(horizon, tracker=None) -> OnlineTrackPredictor`` — a predictor that keeps a
      horizon up to date frame by frame (paper §3.4) instead of predicting from scratch.
    """

    name: str
    stochastic: bool

    def predict(self, request: PredictionRequest) -> torch.Tensor | None: ...


class OnlineTrackPredictor(Protocol):
    """A constant horizon refreshed at every frame (:class:`arfm.online.HorizonPredictor`).

    Frames are ``(256, 256, 3)`` uint8, points pixels of that frame; both methods return the
    horizon ``(N, H, 2)`` of the steps after the frame just given.
    """

    def reset(self, frame, queries, text: str = ""): ...

    def update(self, frame): ...


PredictorFactory = Callable[[str | None], TrackPredictor]
_REGISTRY: dict[str, PredictorFactory] = {}


def register_predictor(name: str) -> Callable[[PredictorFactory], PredictorFactory]:
    """Decorator: register ``factory(argument) -> TrackPredictor`` under ``name``."""

    def decorate(factory: PredictorFactory) -> PredictorFactory:
        if name in _REGISTRY:
            raise ValueError(f"a track predictor named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_predictors() -> list[str]:
    """Names that :func:`build_predictor` accepts."""
    return sorted(_REGISTRY)


def build_predictor(spec: str) -> TrackPredictor:
    """Build a predictor from ``"name"`` or ``"name:argument"``."""
    name, _, argument = spec.partition(":")
    if name not in _REGISTRY:
        raise KeyError(f"unknown track predictor {name!r} in spec {spec!r}; available: {', '.join(available_predictors())}")
    return _REGISTRY[name](argument or None)
