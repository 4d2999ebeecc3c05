"""What a training run's folder holds and what its batch size means, for every loop of the
workspace (``arfm train``, ``arfm train-query``, GR-1's and CHOIS' trainers; docs/training.md).

A run folder ``<out>/``::

    config.json     the run's configuration, {"kind", "model", "train"}, written when it starts
    logs/           tensorboard scalars: train/loss, train/lr, and per-loop extras (train/<part>)
    checkpoint/     the latest checkpoint (weights, their config, the training state for --resume)

``batch_size`` is always the global batch: the samples of one optimiser step summed over all
processes; each process loads ``batch_size / num_processes`` of them.

Torch-free, so that the scripts' ``--help`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arfm.atomic import write_text_atomic

LOG_DIR = "logs"
CHECKPOINT_DIR = "checkpoint"
RUN_CONFIG = "config.json"
# Top-level keys of a checkpoint's config.json that a config file may carry besides its sections,
# so that `arfm train --config <run>/checkpoint/config.json` repeats a run.
_RECORD_KEYS = {"kind", "step", "format_version"}


def per_process_batch(global_batch: int, num_processes: int) -> int:
    """Samples each process loads per step for a global batch of ``global_batch``.

    Raises:
        ValueError: naming ``batch_size`` when it does not split evenly over the processes.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if global_batch < 1 or global_batch % num_processes:
        raise ValueError(
            f"batch_size {global_batch} (the global batch of one step) must be a positive multiple of the "
            f"{num_processes} processes; choose e.g. {max(1, round(global_batch / num_processes)) * num_processes}"
        )
    return global_batch // num_processes


def hparams(values: dict[str, Any]) -> dict[str, Any]:
    """The scalar entries of a flat config, what tensorboard records as a run's hyper-parameters."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}


def write_run_config(out: str | Path, kind: str, model: dict[str, Any], train: dict[str, Any]) -> Path:
    """Write ``<out>/config.json`` atomically (call it on the main process only); returns its path."""
    text = json.dumps({"kind": kind, "model": model, "train": train}, indent=2, default=str)
    return write_text_atomic(Path(out) / RUN_CONFIG, text + "\n")


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a run configuration file (``.json``, ``.yaml`` or ``.yml``) into its sections.

    The file holds a ``"model"`` and/or a ``"train"`` mapping (either may be partial); a run's
    ``config.json`` and a checkpoint's ``config.json`` are valid files.

    Returns:
        ``{"model": {...}, "train": {...}}``, empty mappings for absent sections.

    Raises:
        FileNotFoundError / ValueError: naming the file, for a missing, unreadable or malformed one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ValueError("the name must end in .json, .yaml or .yml")
    except Exception as exc:  # json's ValueError, yaml's YAMLError, the suffix above
        raise ValueError(f"config file '{path}' cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file '{path}' must hold a mapping with 'model' and/or 'train' sections")
    unknown = set(data) - {"model", "train"} - _RECORD_KEYS
    if unknown:
        raise ValueError(f"config file '{path}' has unknown sections {sorted(unknown)}: expected 'model' and/or 'train'")
    sections = {}
    for name in ("model", "train"):
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"config file '{path}': section '{name}' must be a mapping, got {type(section).__name__}")
        sections[name] = section
    return sections


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s entries, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged
