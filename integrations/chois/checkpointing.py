"""Atomic CHOIS checkpoints: ``model.safetensors`` + ``config.json`` (+ training state) (§4.3).

A checkpoint folder is written under a temporary name and renamed into place
(:func:`arfm.atomic.atomic_dir`), so a crash never leaves a half-written checkpoint and a kill
mid-swap is repaired by :func:`find_checkpoint`. The training state (optimiser, step) is stored
without pickle (:func:`arfm.checkpoint.save_training_state`). Loading needs nothing but the folder.
A trained checkpoint also holds ``ema.safetensors``, the EMA copy the CHOIS release samples with;
:func:`load_checkpoint` prefers it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from arfm.atomic import atomic_dir
from arfm.checkpoint import find_checkpoint
from arfm.checkpoint import load_training_state as _load_state
from arfm.checkpoint import save_training_state

from integrations.chois.configuration_chois import ChoisConfig, chois_config_from_dict, chois_config_to_dict
from integrations.chois.modeling_chois import ChoisModel


def _trainable_state(model: ChoisModel) -> dict[str, torch.Tensor]:
    # a frozen CLIP tower is rebuilt from its own weights file, not saved with every checkpoint
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("denoiser.text.model.")}


def save_checkpoint(
    out_dir: str | Path, model: ChoisModel, optimizer: torch.optim.Optimizer | None = None, step: int = 0,
    ema_model: ChoisModel | None = None, extra_state: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically; returns its path.

    Args:
        ema_model: the EMA copy, saved as ``ema.safetensors``.
        extra_state: more training state for ``--resume`` (scheduler, EMA bookkeeping), beside
            the optimiser's.
    """
    training = None if optimizer is None else {"optimizer": optimizer.state_dict(), "step": step, **(extra_state or {})}
    ema = None if ema_model is None else _trainable_state(ema_model)
    return save_weights(out_dir, model.config, _trainable_state(model), training, ema)


def save_weights(
    out_dir: str | Path, config: ChoisConfig, state: dict[str, torch.Tensor], training_state: dict | None = None,
    ema_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder from a config and a state dict (without the CLIP tower) atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(ema_state, str(tmp / "ema.safetensors"))
        (tmp / "config.json").write_text(json.dumps(chois_config_to_dict(config), indent=2))
        if training_state is not None:
            save_training_state(tmp, training_state)
    return out_dir


def load_checkpoint(ckpt_dir: str | Path, device: str = "cpu", use_tracks: bool | None = None, use_ema: bool = True) -> ChoisModel:
    """Rebuild a model from a checkpoint folder.

    Args:
        use_tracks: override the saved flag; ``True`` on a checkpoint trained without tracks adds a
            fresh zero-initialised track branch (the model then behaves exactly as before).
        use_ema: the EMA weights (``ema.safetensors``) when the checkpoint has them, as the CHOIS
            release samples; ``False``: the trained weights (what ``--resume`` continues).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    ckpt_dir = Path(ckpt_dir)
    for name in ("config.json", "model.safetensors"):
        if not (ckpt_dir / name).is_file():
            raise FileNotFoundError(f"CHOIS checkpoint file missing: {ckpt_dir / name}")
    config = chois_config_from_dict(json.loads((ckpt_dir / "config.json").read_text()))
    if use_tracks is not None:
        config.use_tracks = use_tracks
    model = ChoisModel(config)
    weights = ckpt_dir / "ema.safetensors" if use_ema and (ckpt_dir / "ema.safetensors").is_file() else ckpt_dir / "model.safetensors"
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("denoiser.text.model.") and not (use_tracks and k.startswith("denoiser.track_"))]
    unexpected = [k for k in unexpected if not (use_tracks is False and k.startswith("denoiser.track_"))]
    if missing or unexpected:
        raise ValueError(f"{ckpt_dir}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.to(device).eval()


def load_training_state(ckpt_dir: str | Path) -> dict | None:
    """Optimizer state and step of a checkpoint, or ``None`` if it has none (never unpickles code)."""
    return _load_state(ckpt_dir)


__all__ = ["find_checkpoint", "load_checkpoint", "load_training_state", "save_checkpoint", "save_weights"]
