"""Atomic CHOIS checkpoints: ``model.safetensors`` + ``config.json`` (+ ``training_state.pt``) (§4.3).

A checkpoint folder is written under a temporary name and renamed into place, so a crash never
leaves a half-written checkpoint. Loading needs nothing but the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from arfm.atomic import atomic_dir

from integrations.chois.configuration_chois import chois_config_from_dict, chois_config_to_dict
from integrations.chois.modeling_chois import ChoisModel


def _trainable_state(model: ChoisModel) -> dict[str, torch.Tensor]:
    # a frozen CLIP tower is rebuilt from its own weights file, not saved with every checkpoint
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("denoiser.text.model.")}


def save_checkpoint(out_dir: str | Path, model: ChoisModel, optimizer: torch.optim.Optimizer | None = None, step: int = 0) -> Path:
    """Write a checkpoint folder atomically; returns its path."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file(_trainable_state(model), str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(chois_config_to_dict(model.config), indent=2))
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp / "training_state.pt")
    return out_dir


def load_checkpoint(ckpt_dir: str | Path, device: str = "cpu", use_tracks: bool | None = None) -> ChoisModel:
    """Rebuild a model from a checkpoint folder.

    Args:
        use_tracks: override the saved flag; ``True`` on a checkpoint trained without tracks adds a
            fresh zero-initialised track branch (the model then behaves exactly as before).

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
    state = load_file(str(ckpt_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("denoiser.text.model.") and not (use_tracks and k.startswith("denoiser.track_"))]
    unexpected = [k for k in unexpected if not (use_tracks is False and k.startswith("denoiser.track_"))]
    if missing or unexpected:
        raise ValueError(f"{ckpt_dir}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.to(device).eval()


def load_training_state(ckpt_dir: str | Path) -> dict | None:
    """Optimizer state and step of a checkpoint, or ``None`` if it has none."""
    path = Path(ckpt_dir) / "training_state.pt"
    return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
