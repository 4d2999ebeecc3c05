"""Checkpoints: ``model.safetensors`` + ``config.json`` (+ ``ema.safetensors``, training state).

A checkpoint is a directory. It is written into a temporary sibling directory and swapped in
with renames (:func:`arfm.atomic.atomic_dir`), so a crash mid-write leaves the previous
checkpoint intact and never a half-written one; a kill mid-swap is repaired by
:func:`find_checkpoint`. ``config.json`` holds everything needed to rebuild the model without
the code that trained it guessing anything.

The training state (optimiser, scheduler, EMA, RNG and data-order state for ``--resume``) is
stored without pickle: its tensors in ``training_state.safetensors`` and the structure around
them in ``training_state.json`` (:func:`save_training_state`), so loading a checkpoint never
runs code from the file. The GR-1 and CHOIS trainers store theirs the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import load_model as load_safetensors_into  # noqa: F401  (train.py resumes through this module)
from safetensors.torch import save_file as save_safetensors_file
from safetensors.torch import save_model as save_safetensors_from

from arfm.atomic import atomic_dir, recover_dir
from arfm.config import TrainConfig, config_to_dict, model_config_from_dict
from arfm.model import TrackShiftFlowPredictor

FORMAT_VERSION = 1
MODEL_FILE, EMA_FILE, CONFIG_FILE = "model.safetensors", "ema.safetensors", "config.json"
STATE_TENSORS, STATE_JSON = "training_state.safetensors", "training_state.json"
LEGACY_STATE_FILE = "training_state.pt"
"""Pickled training state written by earlier versions; read only with ``weights_only=True``."""
STATE_FILE = STATE_JSON
"""The file whose presence marks a checkpoint that can be resumed from."""


# ------------------------------------------------------------------ training state without pickle
def _split(value: Any, tensors: dict[str, torch.Tensor], seen: set[int], where: str) -> Any:
    """``value`` as JSON, its tensors and arrays moved into ``tensors`` (referenced by key)."""
    if isinstance(value, torch.Tensor):
        key = f"{len(tensors):06d}"
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in seen:  # safetensors refuses tensors that share a storage
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        key = f"{len(tensors):06d}"
        # safetensors has no unsigned wide ints: store int64, restore the dtype from the JSON
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64 if value.dtype.kind == "u" else value.dtype))
        return {"__ndarray__": key, "dtype": value.dtype.str}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_split(v, tensors, seen, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_split(v, tensors, seen, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        # keys may be ints (optimizer state) or tuples: keep them as values, not as JSON keys
        return {"__dict__": [[_split(k, tensors, seen, where), _split(v, tensors, seen, f"{where}.{k}")] for k, v in value.items()]}
    raise TypeError(f"training state entry {where or '<root>'} has type {type(value).__name__}, which cannot be stored without pickle")


def _join(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_split`."""
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy().astype(np.dtype(value["dtype"]))
    if "__tuple__" in value:
        return tuple(_join(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_join(k, tensors): _join(v, tensors) for k, v in value["__dict__"]}
    raise ValueError(f"unknown training state entry {sorted(value)}")


def save_training_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts, lists, tuples, numbers, strings, tensors, numpy arrays)
    as ``training_state.safetensors`` + ``training_state.json`` in ``directory``.

    Raises:
        TypeError: naming the entry of a type that would need pickle.
    """
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    structure = _split(state, tensors, set(), "")
    save_safetensors_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps({"format_version": FORMAT_VERSION, "state": structure}))


def load_training_state(directory: str | Path) -> dict[str, Any] | None:
    """Read what :func:`save_training_state` wrote; ``None`` if ``directory`` has no training state.

    A pickled ``training_state.pt`` of an earlier version is read with ``torch.load(weights_only=True)``,
    which builds tensors and plain containers only and refuses anything else (no code runs).

    Raises:
        ValueError: naming the file, if it is corrupt or a pickle that needs arbitrary objects.
    """
    directory = Path(directory)
    meta_path, tensor_path, legacy = directory / STATE_JSON, directory / STATE_TENSORS, directory / LEGACY_STATE_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_safetensors_file(str(tensor_path))
            return _join(meta["state"], tensors)
        except Exception as exc:  # JSON, key and safetensors' own errors: all mean a damaged state
            raise ValueError(f"training state {meta_path} + {tensor_path.name} is missing or corrupt: {type(exc).__name__}: {exc}") from exc
    if legacy.is_file():
        try:
            return torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"refusing to load {legacy}: it is a pickle that needs more than tensors and plain containers "
                f"({type(exc).__name__}), and unpickling it could run code. Resume from a checkpoint written "
                "by this version, or start the run again."
            ) from exc
    return None


def find_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """``ckpt_dir`` if it holds a checkpoint after repairing an interrupted save, else ``None``.

    A kill while a checkpoint was being swapped in can leave only hidden siblings
    (``.checkpoint.ready-*``, ``.checkpoint.old-*``, ``.checkpoint.tmp-*``); the newest complete
    one is renamed back to ``ckpt_dir`` and the rest deleted (:func:`arfm.atomic.recover_dir`).
    """
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir if recover_dir(ckpt_dir) and ckpt_dir.is_dir() else None


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
        training_state: optimiser/scheduler/RNG state for ``--resume`` (see :func:`save_training_state`).
        train_config: saved in ``config.json`` for the record.
        step: optimiser steps taken.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_safetensors_from(model, str(tmp / MODEL_FILE))
        if ema_model is not None:
            save_safetensors_from(ema_model, str(tmp / EMA_FILE))
        if training_state is not None:
            save_training_state(tmp, training_state)
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
    if not ckpt_dir.is_dir() and find_checkpoint(ckpt_dir) is None:
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
    from arfm.errors import load_safetensors_checked  # a truncated file names itself

    return load_safetensors_checked(model, weights)
