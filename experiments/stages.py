"""Helpers shared by the experiment scripts: paths, stage reuse records, timings, row names."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arfm.atomic import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
SLUG = re.compile(r"[^A-Za-z0-9]+")
ARFM_PLACEHOLDER = "{ckpt:arfm}"  # in a row's track spec: the ARFM checkpoint the run trained


def resolve(path: str | Path) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def same_record(path: Path, wanted: dict) -> bool:
    return path.is_file() and json.loads(path.read_text()) == wanted


def require_positive(spec: Any, *names: str) -> None:
    """Raise naming the first of a spec's ``names`` fields below 1 (sizes, steps, counts)."""
    for name in names:
        if getattr(spec, name) < 1:
            raise ValueError(f"invalid {type(spec).__name__} field '{name}': must be >= 1, got {getattr(spec, name)}")


def ensure_file(out: Path, record: dict, make: Callable[[], object], stage: str) -> tuple[Path, float]:
    """A stage that writes one file: reuse ``out`` when ``<out>.spec.json`` holds ``record``,
    otherwise call ``make`` (which writes ``out``; what it returns is printed) and record it.

    Returns:
        ``out`` and the seconds ``make`` took (0 when reused).
    """
    spec = out.with_suffix(".spec.json")
    if out.is_file() and same_record(spec, record):
        print(f"[{stage}] reusing {out}")
        return out, 0.0
    started = time.perf_counter()
    print(f"[{stage}] {make()}")
    write_text_atomic(spec, json.dumps(record))
    return out, time.perf_counter() - started


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


def load_config(cls: type, path: str | Path, stages: dict[str, type], what: str) -> Any:
    """Read a table config JSON into ``cls`` whose fields ``stages`` are dataclasses of their own;
    a missing file or an unknown key (top level or in a stage) is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} config not found: {path}")
    data = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(cls)}
    if set(data) - known:
        raise ValueError(f"{path}: unknown keys {sorted(set(data) - known)}; known: {sorted(known)}")
    for name, kind in stages.items():
        given = data.get(name, {})
        unknown = set(given) - {f.name for f in dataclasses.fields(kind)}
        if unknown:
            raise ValueError(f"{path}: unknown keys in '{name}': {sorted(unknown)}")
        data[name] = kind(**given)
    return cls(**data)
