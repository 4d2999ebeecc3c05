"""Track predictors behind one protocol, found by name (see :mod:`arfm.predictors.base`).

Importing this package registers the built-in predictors.
"""

from arfm.predictors.base import (
    PredictionRequest,
    TrackPredictor,
    available_predictors,
    build_predictor,
    register_predictor,
)
from arfm.predictors import simple  # noqa: F401  (registers gt, none, no-movement)
from arfm.predictors import model_predictor  # noqa: F401  (registers arfm, regression)
from arfm.predictors import chronos  # noqa: F401  (registers chronos-absolute, chronos-relative)
from arfm.predictors import frames_to_tracks  # noqa: F401  (registers frames-to-tracks)

__all__ = ["PredictionRequest", "TrackPredictor", "available_predictors", "build_predictor", "register_predictor"]
