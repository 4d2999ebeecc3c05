"""Pre-train GR-1's track encoder on ground-truth tracks before the policy (ARFM paper §3.5).

The track encoder is what turns a frame's future tracks into GR-1's track token. Trained jointly
with a tiny policy from scratch, it stays close to its initialisation for hundreds of steps,
because the policy first learns the easy video targets. Here it is trained alone first, on the
demonstrations' ground-truth tracks, to predict the arm action of the frame the tracks start at
(the expert's relative TCP motion, GR-1's SmoothL1 x 100 loss) through a linear head. The
encoder weights are then loaded into the policy (``train.py --track-encoder-init``) and trained
on with it. Only the demonstrations GR-1 trains on are used.

    python -m integrations.gr1.pretrain_tracks --data runs/x/demos --out runs/x/track_encoder.safetensors
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from arfm.atomic import atomic_path, write_text_atomic
from arfm.coords import pixels_to_normalized
from integrations.gr1.configuration_gr1 import PRESETS
from integrations.gr1.data import CalvinWindowDataset
from track_encoder import TrackEncoder


@dataclass
class PretrainArgs:
    """Pre-train the track encoder of a GR-1 preset.

    Attributes:
        data: CALVIN-format demonstrations with track sidecars.
        out: where the encoder weights go (safetensors, ``TrackEncoder`` keys).
        preset: GR-1 preset whose track encoder is trained (``tiny`` or ``default``).
        steps, batch_size, lr: optimisation (AdamW).
        max_points: tracks per frame (as GR-1 training).
        seed: initialisation and batch order.
    """

    data: str
    out: str
    preset: str = "tiny"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    max_points: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid PretrainArgs field '{name}': must be >= 1, got {getattr(self, name)}")
        if self.preset not in PRESETS:
            raise ValueError(f"invalid PretrainArgs field 'preset': one of {sorted(PRESETS)}, got {self.preset!r}")


def track_action_pairs(dataset: CalvinWindowDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every annotated frame's future tracks ``(M, N, L, 2)`` pixels and arm action ``(M, arm)``."""
    tracks, actions = [], []
    for start, end, _, _ in dataset.annotations:
        for frame in range(start, end + 1):
            tracks.append(dataset.future_tracks(frame))
            actions.append(np.asarray(dataset._frame(frame)["rel_actions"], dtype=np.float32))
    if not tracks:
        raise ValueError(f"{dataset.root}: no annotated frames to pre-train on")
    return torch.from_numpy(np.stack(tracks)), torch.from_numpy(np.stack(actions))


def pretrain(args: PretrainArgs) -> dict[str, float]:
    """Train and write the encoder; returns the first and last arm losses (also in ``<out>.json``)."""
    config = PRESETS[args.preset]()
    dataset = CalvinWindowDataset(args.data, track_len=config.track_len, track_frame_size=config.track_frame_size,
                                  max_points=args.max_points, image_size=8)  # images unused: keep the cache small
    tracks, actions = track_action_pairs(dataset)
    points = pixels_to_normalized(tracks.float(), config.track_frame_size)  # (M, N, L, 2)
    target = actions[:, : config.arm_dim]
    torch.manual_seed(args.seed)
    encoder = TrackEncoder(config.track_encoder)
    head = nn.Linear(config.track_encoder.dim, config.arm_dim)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    losses = []
    for _ in range(args.steps):
        idx = torch.randint(len(points), (args.batch_size,), generator=generator)
        loss = config.arm_loss_weight * F.smooth_l1_loss(head(encoder(points[idx])), target[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
    with torch.no_grad():  # the whole set, and the loss of always predicting the mean action
        full = float(config.arm_loss_weight * F.smooth_l1_loss(head(encoder(points)), target))
        mean = float(config.arm_loss_weight * F.smooth_l1_loss(target.mean(0).expand_as(target), target))
    out = Path(args.out)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    stats = {"frames": len(points), "first_loss": losses[0], "last_loss": float(np.mean(losses[-50:])), "final_loss_all": full,
             "mean_action_loss": mean}
    write_text_atomic(out.with_suffix(".json"), json.dumps({"args": args.__dict__, **stats}, indent=1))
    return stats


def load_track_encoder(encoder: TrackEncoder, path: str | Path) -> None:
    """Load pre-trained weights into ``encoder``; a missing file or mismatched sizes name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained track encoder not found: {path} (write it with python -m integrations.gr1.pretrain_tracks)")
    state = load_file(path)
    own = encoder.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ValueError(f"{path} does not hold this track encoder's weights (other sizes?)")
    encoder.load_state_dict(state)


if __name__ == "__main__":
    import tyro

    print(pretrain(tyro.cli(PretrainArgs)))
