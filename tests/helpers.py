"""Helpers shared by several test folders: experiment scripts loaded by path, small labelled data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_experiment(name: str) -> ModuleType:
    """``experiments/<name>.py`` as module ``experiments_<name>`` (loaded once per test session)."""
    module_name = f"experiments_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    sys.path.insert(0, str(REPO / "experiments"))  # the scripts import their sibling modules
    spec = importlib.util.spec_from_file_location(module_name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def write_drifting_clips(root: Path, clips: int, frames: int, tracks: int, seed: int = 0) -> Path:
    """A labelled dataset of ``clips`` random-noise clips whose ``tracks`` points drift by a few
    pixels per frame (all visible), with its manifest; returns ``root``."""
    from arfm.data.clip_store import write_clip, write_manifest

    rng = np.random.default_rng(seed)
    for i in range(clips):
        video = rng.integers(0, 255, size=(frames, 256, 256, 3), dtype=np.uint8)
        start = rng.uniform(60, 190, size=(tracks, 1, 2))
        velocity = rng.normal(0, 2.0, size=(tracks, 1, 2))
        points = np.clip(start + velocity * np.arange(frames)[None, :, None], 0, 255).astype(np.float32)
        write_clip(root, f"clip{i}", video, points, np.ones((tracks, frames), bool), fps=15.0, caption="drift")
    write_manifest(root)
    return root
