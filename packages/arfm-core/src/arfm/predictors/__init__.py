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

__all__ = ["PredictionRequest", "TrackPredictor", "available_predictors", "build_predictor", "register_predictor"]
