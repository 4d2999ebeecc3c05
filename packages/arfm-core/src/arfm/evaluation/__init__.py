"""Evaluation of track predictors: the protocol, metrics and reports of paper §4.2 (Tables 1 and 5).

- :mod:`arfm.evaluation.metrics` — ``<δ^x``, ``δ_avg``, ADE, best-of-K, energy score;
- :mod:`arfm.evaluation.protocol` — runs predictors over evaluation windows;
- :mod:`arfm.evaluation.report` — markdown / CSV / JSON;
- :mod:`arfm.evaluation.plots` — ``δ^x`` and best-of-K curves, qualitative grid;
- :mod:`arfm.evaluation.cli` — ``arfm eval``.
"""

from arfm.evaluation.metrics import ClipScores, aggregate_scores, energy_score, score_clip
from arfm.evaluation.protocol import ClipRequest, EvalProtocol, EvalResult, PredictorResult, evaluate, request_from_window

__all__ = [
    "ClipRequest",
    "ClipScores",
    "EvalProtocol",
    "EvalResult",
    "PredictorResult",
    "aggregate_scores",
    "energy_score",
    "evaluate",
    "request_from_window",
    "score_clip",
]
