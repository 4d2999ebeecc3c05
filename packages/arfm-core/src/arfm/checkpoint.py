"""Checkpoints: ``model.safetensors`` + ``config.json`` (+ ``ema.safetensors``, ``training_state.pt``).

A checkpoint is a directory. It is written into a temporary sibling directory and swapped in
with renames, so a crash mid-write leaves the previous checkpoint intact and never a
half-written one. ``config.json`` holds everything needed to rebuild the model without the
code that trained it guessing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model as save_safetensors_from

from arfm.atomic import atomic_dir
from arfm.config import TrainConfig, config_to_dict, model_config_from_dict
from arfm.model import TrackShiftFlowPredictor

FORMAT_VERSION = 1
MODEL_FILE, EMA_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "ema.safetensors", "config.json", "training_state.pt"


def save_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    ema_model: torch.nn.Module | None = None,
    training_state: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    step: int = 0,
) -> Path:
    """Atomically write a checkpoint directory and return its path.

    Args:
        out_dir: the checkpoint directory (replaced if it exists).
        model: the trained (unwrapped) model; its dataclass ``config`` is saved, with its class name.
        ema_model: its EMA copy, saved as ``ema.safetensors`` and used by default for sampling.
        training_state: optimiser/scheduler/RNG state for ``--resume`` (``torch.save``-able).
        train_config: saved in ``config.json`` for the record.
        step: optimiser steps taken.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_safetensors_from(model, str(tmp / MODEL_FILE))
        if ema_model is not None:
            save_safetensors_from(ema_model, str(tmp / EMA_FILE))
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "step": int(step),
            "kind": type(model).__name__,
            "model": config_to_dict(model.config),
            "train": config_to_dict(train_config) if train_config is not None else None,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def read_checkpoint_config(ckpt_dir: str | Path, expected_kind: str | None = None) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint, with clear errors for missing/corrupt files
    and for a checkpoint of another model kind than ``expected_kind``."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / CONFIG_FILE
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"checkpoint directory '{ckpt_dir}' does not exist (train one with `arfm train`)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{ckpt_dir}' has no {CONFIG_FILE}: not an ARFM checkpoint")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint config '{path}' is not valid JSON: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint '{ckpt_dir}' has format_version {meta.get('format_version')}, expected {FORMAT_VERSION}")
    if expected_kind is not None and meta.get("kind") != expected_kind:
        raise ValueError(f"checkpoint '{ckpt_dir}' holds a {meta.get('kind')}, not a {expected_kind}")
    return meta


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> TrackShiftFlowPredictor:
    """Rebuild the track predictor from its saved config and load weights (EMA ones when present and asked for)."""
    ckpt_dir = Path(ckpt_dir)
    meta = read_checkpoint_config(ckpt_dir, expected_kind=TrackShiftFlowPredictor.__name__)
    model = TrackShiftFlowPredictor(model_config_from_dict(meta["model"]))
    return load_weights(model, ckpt_dir, use_ema).to(device).eval()


def load_weights(model: torch.nn.Module, ckpt_dir: str | Path, use_ema: bool = True) -> torch.nn.Module:
    """Load a checkpoint's weights into a model built from its config."""
    ckpt_dir = Path(ckpt_dir)
    weights = ckpt_dir / (EMA_FILE if use_ema and (ckpt_dir / EMA_FILE).is_file() else MODEL_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint '{ckpt_dir}' has no weights file {weights.name}")
    load_safetensors_into(model, str(weights), strict=True)
    return model
