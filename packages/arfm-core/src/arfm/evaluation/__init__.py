"""Evaluation of track predictors: the protocol, metrics and reports of paper §4.2 (Tables 1 and 5).

- :mod:`arfm.evaluation.metrics` — ``<δ^x``, ``δ_avg``, ADE, best-of-K, energy score;
- :mod:`arfm.evaluation.protocol` — runs predictors over evaluation windows;
- :mod:`arfm.evaluation.report` — markdown / CSV / JSON;
- :mod:`arfm.evaluation.plots` — ``δ^x`` and best-of-K curves, qualitative grid;
- :mod:`arfm.evaluation.cli` — ``arfm eval``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arfm.evaluation.metrics import ClipScores, aggregate_scores, energy_score, score_clip
    from arfm.evaluation.protocol import ClipRequest, EvalProtocol, EvalResult, PredictorResult, evaluate, request_from_window

# Loaded on first use: importing a light submodule (``report``, from a script's ``--help``) must
# not pull in torch through this package's ``__init__``.
_LAZY = {
    **dict.fromkeys(("ClipScores", "aggregate_scores", "energy_score", "score_clip"), "arfm.evaluation.metrics"),
    **dict.fromkeys(("ClipRequest", "EvalProtocol", "EvalResult", "PredictorResult", "evaluate", "request_from_window"), "arfm.evaluation.protocol"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'arfm.evaluation' has no attribute {name!r}")


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
