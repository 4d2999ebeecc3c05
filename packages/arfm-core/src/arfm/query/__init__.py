"""Query-information predictor (paper §3.3): where to put query points when none are given."""

from arfm.query.model import QueryInfoPredictor, QueryPredictorConfig, tiny_query_config

__all__ = ["QueryInfoPredictor", "QueryPredictorConfig", "tiny_query_config"]
