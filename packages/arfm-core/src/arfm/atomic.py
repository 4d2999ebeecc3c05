"""Atomic file and directory writes, and recovery from a writer killed mid-swap.

A file is written to a temporary sibling and renamed over the target, so a reader (or a
resumed run) sees either the old file or the complete new one, never a truncated file.

A directory (a checkpoint) cannot be replaced by one rename, so :func:`atomic_dir` goes
through named stages beside the target ``<parent>/<name>``:

1. ``.<name>.tmp-*``: being written; incomplete until renamed to the next stage.
2. ``.<name>.ready-*``: complete (the commit point: the new version wins from here on).
3. ``.<name>.old-*``: the previous version, moved aside just before the ready one is renamed in.

A kill between two renames leaves these siblings and maybe no ``<name>`` at all.
:func:`recover_dir` (run by every :func:`atomic_dir` before it writes, and by readers that
need the directory) installs the newest complete version and deletes the rest.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_STAGES = ("tmp", "ready", "old")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    Example::

        with atomic_path("out/pred.npz") as tmp:
            np.savez_compressed(tmp, tracks=tracks)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _sibling(path: Path, stage: str) -> Path:
    # the time first, so names sort by age; the uuid keeps two writers in one tick apart
    return path.with_name(f".{path.name}.{stage}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")


def leftovers(path: str | Path) -> dict[str, list[Path]]:
    """The stage directories an interrupted :func:`atomic_dir` left beside ``path``, oldest first.

    Returns:
        ``{"tmp": [...], "ready": [...], "old": [...]}``; names written by older versions of
        this module (``.<name>.old-<hex>``) are included and ordered by modification time.
    """
    path = Path(path)
    found: dict[str, list[Path]] = {stage: [] for stage in _STAGES}
    if not path.parent.is_dir():
        return found
    for entry in path.parent.iterdir():
        for stage in _STAGES:
            if entry.name.startswith(f".{path.name}.{stage}-") and entry.is_dir():
                found[stage].append(entry)
    for stage in _STAGES:
        found[stage].sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return found


def _install(path: Path, ready: Path) -> None:
    """Swap a complete directory in: previous version aside, ready one in, previous deleted."""
    old = _sibling(path, "old")
    if path.exists():
        os.replace(path, old)
    os.replace(ready, path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: str | Path) -> bool:
    """Finish or roll back an :func:`atomic_dir` swap that a kill interrupted; clean up.

    The newest ``ready`` version (complete, committed) is installed if there is one; otherwise,
    when ``path`` is missing, the newest ``old`` version (the last installed one) is moved back.
    Every other leftover (incomplete ``tmp`` directories, superseded versions) is deleted. Only
    one writer may use a directory at a time: a concurrent writer's ``tmp`` would be deleted.

    Returns:
        Whether ``path`` exists afterwards.
    """
    path = Path(path)
    found = leftovers(path)
    if found["ready"]:
        _install(path, found["ready"].pop())
    elif not path.exists() and found["old"]:
        os.replace(found["old"].pop(), path)
    for stale in found["tmp"] + found["ready"] + found["old"]:
        shutil.rmtree(stale, ignore_errors=True)
    return path.exists()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` as a whole.

    The finished directory is first renamed to a ``ready`` name (the commit point), then the
    previous directory (if any) is moved aside, the new one renamed in, and the old one
    deleted. A kill at any point leaves either the old or the new directory complete, found
    again by :func:`recover_dir`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        ready = _sibling(path, "ready")
        os.replace(tmp, ready)
        _install(path, ready)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
