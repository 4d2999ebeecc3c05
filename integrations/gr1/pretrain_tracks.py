"""Pre-train GR-1's track encoder on ground-truth tracks before the policy (ARFM paper §3.5).

The track encoder is what turns a frame's future tracks into GR-1's track token. Trained jointly
with a tiny policy from scratch, it stays close to its initialisation for hundreds of steps,
because the policy first learns the easy video targets. Here it is trained alone first, on the
demonstrations' ground-truth tracks, to predict the arm action of the frame the tracks start at
(the expert's relative TCP motion, GR-1's SmoothL1 x 100 loss) through a linear head
(:func:`track_encoder.pretrain.fit_encoder`). The
encoder weights are then loaded into the policy (``train.py --track-encoder-init``) and trained
on with it. Only the demonstrations GR-1 trains on are used.

    python -m integrations.gr1.pretrain_tracks --data runs/x/demos --out runs/x/track_encoder.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from arfm.coords import pixels_to_normalized
from integrations.gr1.configuration_gr1 import PRESETS
from integrations.gr1.data import CalvinWindowDataset
from track_encoder import TrackEncoder
from track_encoder.pretrain import fit_encoder, load_encoder_weights, save_encoder_weights

WRITTEN_BY = "python -m integrations.gr1.pretrain_tracks"


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

    def arm_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # GR-1's arm loss
        return config.arm_loss_weight * F.smooth_l1_loss(pred, target)

    encoder, _, stats = fit_encoder(config.track_encoder, points, actions[:, : config.arm_dim], arm_loss, args.steps, args.batch_size, args.lr, args.seed)
    stats = {"frames": stats.pop("samples"), **stats, "mean_action_loss": stats.pop("mean_target_loss")}
    save_encoder_weights(encoder, args.out, {"args": args.__dict__, **stats})
    return stats


def load_track_encoder(encoder: TrackEncoder, path: str) -> None:
    """Load this module's pre-trained weights into a GR-1 track encoder (errors name the file)."""
    load_encoder_weights(encoder, path, WRITTEN_BY)


if __name__ == "__main__":
    import tyro

    print(pretrain(tyro.cli(PretrainArgs)))
