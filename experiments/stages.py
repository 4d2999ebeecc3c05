"""Helpers shared by the experiment scripts: paths, stage reuse records, timings, row names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from arfm.atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
SLUG = re.compile(r"[^A-Za-z0-9]+")


def resolve(path: str | Path) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def same_record(path: Path, wanted: dict) -> bool:
    return path.is_file() and json.loads(path.read_text()) == wanted


def merge_timings(path: Path, fresh: dict[str, float]) -> dict[str, float]:
    """Stage wall times: this run's (``fresh``), and for stages reused now (0 s) the time they
    took when they ran (kept in ``path``, which is updated)."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    merged = {k: (v if v > 0 or k not in old else old[k]) for k, v in fresh.items()}
    write_text_atomic(path, json.dumps({**old, **merged}, indent=1))
    return merged


def slug(label: str) -> str:
    """Folder-safe name of a row label."""
    return SLUG.sub("_", label).strip("_").lower() or "row"
