"""Pre-train a track encoder alone on ground-truth tracks, before the downstream model (§3.5).

Trained jointly with a small downstream model from scratch, the track encoder stays close to its
initialisation for hundreds of steps: the model first learns what it can without tracks, and a
zero-initialised projection passes almost no gradient back. Pre-training gives the encoder a
feature that already says something about the motion: the encoder and a linear head regress a
target the tracks determine (GR-1: the arm action; CHOIS: the window's 3-D displacements). Only
the encoder's weights are kept; the downstream model loads them (``load_encoder_weights``) and
trains on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from track_encoder.configuration import TrackEncoderConfig
from track_encoder.model import TrackEncoder

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fit_encoder(
    config: TrackEncoderConfig, points: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn,
    steps: int, batch_size: int, lr: float, seed: int,
) -> tuple[TrackEncoder, nn.Linear, dict[str, float]]:
    """Train a fresh encoder and a linear head to map tracks to targets.

    Args:
        config: encoder sizes (``num_steps`` = the tracks' length).
        points: ``(M, N, L, 2)`` tracks in the encoder's normalised coordinates ([-1, 1]).
        targets: ``(M, K)`` regression targets.
        loss_fn: ``(prediction, target) -> scalar``.
        steps, batch_size, lr, seed: AdamW (weight decay 1e-4) with a cosine schedule; ``seed``
            sets the initialisation and the batch order.

    Returns:
        The encoder, its head (to score other data), and ``first_loss``, ``last_loss`` (mean of the last 50 batches),
        ``final_loss_all`` (the whole set after training) and ``mean_target_loss`` (the loss of
        always predicting the mean target: what the tracks must beat).
    """
    if points.ndim != 4 or points.shape[-1] != 2 or points.shape[2] != config.num_steps:
        raise ValueError(f"points must be (M, N, {config.num_steps}, 2) normalised tracks, got {tuple(points.shape)}")
    if targets.ndim != 2 or targets.shape[0] != points.shape[0]:
        raise ValueError(f"targets must be (M={points.shape[0]}, K), got {tuple(targets.shape)}")
    if not (torch.isfinite(points).all() and torch.isfinite(targets).all()):
        raise ValueError("fit_encoder: points or targets hold NaN/inf")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"fit_encoder: steps and batch_size must be >= 1, got {steps}, {batch_size}")
    torch.manual_seed(seed)
    encoder = TrackEncoder(config)
    head = nn.Linear(config.dim, targets.shape[1])
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(points), (batch_size,), generator=generator)
        loss = loss_fn(head(encoder(points[idx])), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        final = float(loss_fn(head(encoder(points)), targets))
        mean = float(loss_fn(targets.mean(0).expand_as(targets), targets))
    return encoder, head, {"samples": len(points), "first_loss": losses[0], "last_loss": float(np.mean(losses[-50:])),
                     "final_loss_all": final, "mean_target_loss": mean}


def save_encoder_weights(encoder: TrackEncoder, path: str | Path, record: dict) -> None:
    """Write the encoder's weights (safetensors) and ``record`` next to them (``<path>.json``), each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    tmp.replace(path)
    meta, meta_tmp = path.with_suffix(".json"), path.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(record, indent=1))
    meta_tmp.replace(meta)


def load_encoder_weights(encoder: TrackEncoder, path: str | Path, written_by: str) -> None:
    """Load pre-trained weights into ``encoder``.

    Args:
        encoder: the downstream model's track encoder.
        path: a file from :func:`save_encoder_weights`.
        written_by: the command that writes such a file (named in the error when it is missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained track encoder not found: {path} (write it with {written_by})")
    state = load_file(path)
    own = encoder.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ValueError(f"{path} does not hold this track encoder's weights (other sizes?)")
    encoder.load_state_dict(state)
