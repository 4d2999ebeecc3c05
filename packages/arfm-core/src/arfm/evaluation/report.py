"""Tables 1 and 5 of the paper as files: markdown, CSV (the paper's layout) and per-clip JSON (§4.2).

- ``table.md``: the paper's table (rows = predictors; columns ``<δ^4 .. <δ^64``, ``<δ^x_avg``, ADE),
  then the probabilistic table (best-of-K ``δ_avg``, minADE@K, energy score) and what was scored.
- ``table.csv``: the paper's table only, one row per predictor.
- ``probabilistic.csv``: the best-of-K curves and the energy score.
- ``results.json``: the protocol, the summaries and every clip's numbers.

Every file is written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from arfm.atomic import atomic_path

if TYPE_CHECKING:  # annotations only: writing a report file must not need torch
    from arfm.evaluation.protocol import EvalResult


OUTPUT_FILE_MODE = 0o644
"""Mode of written results (``mkstemp`` makes 0600 files; results are meant to be read by others)."""


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (:mod:`arfm.atomic`), readable by others (``OUTPUT_FILE_MODE``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, OUTPUT_FILE_MODE)
    return Path(path)


def paper_columns(result: EvalResult) -> list[str]:
    """Column names of the paper's table: ``<δ^4 .. <δ^64, <δ^x_avg, ADE``."""
    return [f"<δ^{x}" for x in result.protocol.thresholds] + ["<δ^x_avg", "ADE"]


def paper_rows(result: EvalResult) -> list[tuple[str, list[float]]]:
    """``(predictor spec, [δ^x..., δ_avg, ADE])`` per predictor, in table order."""
    rows = []
    for predictor in result.predictors:
        summary = predictor.summary()
        values = [summary["delta"][x] for x in result.protocol.thresholds] + [summary["delta_avg"], summary["ade"]]
        rows.append((predictor.spec, values))
    return rows


def probabilistic_columns(result: EvalResult) -> list[str]:
    """Columns of the probabilistic table."""
    ks = result.protocol.k_values
    return [f"best-of-{k} δ_avg" for k in ks] + [f"minADE@{k}" for k in ks] + ["energy score"]


def probabilistic_rows(result: EvalResult) -> list[tuple[str, list[float]]]:
    """``(predictor spec, [best-of-K δ_avg..., minADE@K..., energy score])`` per predictor."""
    rows = []
    for predictor in result.predictors:
        summary = predictor.summary()
        ks = result.protocol.k_values
        values = [summary["best_delta_avg_at_k"][k] for k in ks] + [summary["min_ade_at_k"][k] for k in ks]
        rows.append((predictor.spec, values + [summary["energy_score"]]))
    return rows


def _format(value: float, column: str) -> str:
    if math.isnan(value):
        return "—"  # not estimable (e.g. best-of-K beyond the samples a predictor can give)
    return f"{value:.1f}" if ("ADE" in column or "energy" in column) else f"{value:.3f}"


def _markdown(columns: list[str], rows: list[tuple[str, list[float]]]) -> str:
    lines = ["| Method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(_format(v, c) for v, c in zip(values, columns)) + " |")
    return "\n".join(lines)


def scored_description(result: EvalResult) -> str:
    """One paragraph saying which clips, steps and points were scored."""
    first = result.predictors[0]
    clips = list(first.clips.values())
    points = sorted({c.num_points for c in clips})
    scored = sum(c.num_scored for c in clips)
    total = sum(c.num_points * c.horizon for c in clips)
    samples = ", ".join(f"{p.spec}: {p.num_samples}" for p in result.predictors)
    size = f"{result.frame_size[0]}x{result.frame_size[1]}" if result.frame_size else "unknown"
    return (
        f"Scored {len(result.clip_ids)} clips ({len(result.skipped)} skipped), every future step 1..{result.protocol.horizon} "
        f"(none dropped), points per clip {points[0]}..{points[-1]}, {scored} of {total} point-steps visible in the "
        f"pseudo-labels and scored; pixels of a {size} frame. Samples per clip: {samples}. "
        f"<δ^x from the best of the first {result.protocol.paper_samples} samples (by <δ^x_avg), ADE their mean; "
        "every number is a mean over clips."
    )


def markdown_report(result: EvalResult, title: str = "Track prediction") -> str:
    """The markdown tables plus the description of what was scored."""
    parts = [
        f"## {title}",
        "",
        _markdown(paper_columns(result), paper_rows(result)),
        "",
        "### Probabilistic quality (expected best of K samples; energy score per clip, px, lower is better)",
        "",
        _markdown(probabilistic_columns(result), probabilistic_rows(result)),
        "",
        scored_description(result),
    ]
    if result.skipped:
        parts += ["", "Skipped clips: " + "; ".join(f"{k} ({v})" for k, v in result.skipped.items())]
    return "\n".join(parts) + "\n"


def _csv(columns: list[str], rows: list[tuple[str, list[float]]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", *columns])
    for name, values in rows:
        writer.writerow([name, *(f"{v:.6g}" for v in values)])
    return buffer.getvalue()


def result_to_dict(result: EvalResult) -> dict:
    """JSON-able dump: protocol, what was scored, summaries and per-clip numbers."""
    protocol = result.protocol
    return {
        "protocol": {
            "horizon": protocol.horizon,
            "scored_steps": list(range(1, protocol.horizon + 1)),
            "paper_samples": protocol.paper_samples,
            "thresholds": list(protocol.thresholds),
            "k_values": list(protocol.k_values),
            "seed": protocol.seed,
            "frame_size": list(result.frame_size) if result.frame_size else None,
        },
        "clip_ids": list(result.clip_ids),
        "skipped": dict(result.skipped),
        "predictors": [
            {
                "spec": p.spec,
                "name": p.name,
                "stochastic": p.stochastic,
                "num_samples": p.num_samples,
                "seconds": p.seconds,
                "summary": {
                    key: ({str(k): v for k, v in value.items()} if isinstance(value, dict) else value)
                    for key, value in p.summary().items()
                },
                "clips": {clip_id: scores.to_dict() for clip_id, scores in p.clips.items()},
            }
            for p in result.predictors
        ],
    }


def write_report(result: EvalResult, out_dir: str | Path, title: str = "Track prediction") -> dict[str, Path]:
    """Write ``table.md``, ``table.csv``, ``probabilistic.csv`` and ``results.json`` into ``out_dir``.

    Returns:
        ``{kind: path}`` of the files written.
    """
    out = Path(out_dir)
    return {
        "markdown": write_text_atomic(out / "table.md", markdown_report(result, title)),
        "csv": write_text_atomic(out / "table.csv", _csv(paper_columns(result), paper_rows(result))),
        "probabilistic_csv": write_text_atomic(out / "probabilistic.csv", _csv(probabilistic_columns(result), probabilistic_rows(result))),
        "json": write_text_atomic(out / "results.json", json.dumps(result_to_dict(result), indent=1, ensure_ascii=False) + "\n"),
    }
