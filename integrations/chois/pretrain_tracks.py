"""Pre-train CHOIS's track encoder on ground-truth tracks before CHOIS (ARFM paper §3.5).

The CHOIS counterpart of :mod:`integrations.gr1.pretrain_tracks`. Trained jointly with a tiny
CHOIS from scratch, the track branch learns that tracks are present rather than what they say
(``integrations/chois/diagnostics.py``: the true tracks predict no better than none). Here the
encoder is trained alone first, on the training windows' ground-truth tracks, to regress what
those tracks show in 3-D: the displacement from the window's first frame of the object centre
and the 24 joints at every track step inside the window, divided by their standard deviation over
the training windows (MSE; :func:`track_encoder.pretrain.fit_encoder`). CHOIS
then starts from these weights (``train.py --track-encoder-init``).

    python -m integrations.chois.pretrain_tracks --out runs/x/chois_track_encoder.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from arfm.coords import pixels_to_normalized
from integrations.chois.configuration_chois import PRESETS
from integrations.chois.representation import JOINT_POS, OBJ_POS
from integrations.chois.train import DEFAULT_MOCAP, REPO, ensure_data
from track_encoder import TrackEncoder
from track_encoder.pretrain import fit_encoder, load_encoder_weights, save_encoder_weights

WRITTEN_BY = "python -m integrations.chois.pretrain_tracks"


@dataclass
class PretrainArgs:
    """Pre-train the track encoder of a CHOIS preset.

    Attributes:
        out: where the encoder weights go (safetensors, ``TrackEncoder`` keys; ``<out>.json`` holds the losses).
        data: FullBodyManipulation-format folder (built from ``mocap`` when it has no data yet).
        mocap: BVH folder for the embedded default.
        smplx_dir: SMPL-X model folder (real data); ``None`` for the mocap proxy.
        preset: CHOIS preset whose track encoder is trained.
        steps, batch_size, lr: optimisation (AdamW, cosine schedule).
        seed: initialisation and batch order.
    """

    out: str
    data: str = str(REPO / "runs" / "chois_data")
    mocap: str = str(DEFAULT_MOCAP)
    smplx_dir: str | None = None
    preset: str = "tiny"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid PretrainArgs field '{name}': must be >= 1, got {getattr(self, name)}")
        if self.preset not in PRESETS:
            raise ValueError(f"invalid PretrainArgs field 'preset': one of {sorted(PRESETS)}, got {self.preset!r}")


def track_displacement_pairs(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window's tracks ``(M, N, H + 1, 2)`` pixels and 3-D displacements ``(M, H + 1, 75)``.

    The displacements are those of the object centre (3) and the 24 joints (72) from the window's
    first frame, at the frames the track steps show (``track_stride`` apart; steps past the
    window's end repeat its last frame: CHOIS predicts only the window).
    """
    config = dataset.config
    frames = torch.clamp(config.track_stride * torch.arange(config.track_horizon + 1), max=config.window - 1)
    tracks, targets = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        motion = item["motion"]
        position = torch.cat([motion[:, OBJ_POS], motion[:, JOINT_POS]], dim=-1)  # (W, 75) metres, window frame
        tracks.append(item["tracks"])
        targets.append(position[frames] - position[:1])
    if not tracks:
        raise ValueError(f"{dataset.root}: no training windows to pre-train on")
    return torch.stack(tracks).float(), torch.stack(targets).float()


def pretrain(args: PretrainArgs) -> dict[str, float]:
    """Train and write the encoder; returns the losses (also in ``<out>.json``)."""
    from integrations.chois.data.fbm_dataset import FbmWindowDataset

    config = PRESETS[args.preset]()
    dataset = FbmWindowDataset(ensure_data(Path(args.data), Path(args.mocap)), "train", config, smplx_dir=args.smplx_dir)
    tracks, displacement = track_displacement_pairs(dataset)
    flat = displacement.reshape(len(displacement), -1)
    # one scale for every dimension (unit variance overall), so the loss is a squared distance
    # in metres up to a constant: per-dimension scaling blows up the near-constant dimensions
    # (early steps, joints that barely move) on windows of other subjects
    scale = flat.std()
    encoder, head, stats = fit_encoder(config.track_encoder, pixels_to_normalized(tracks, config.image_size), flat / scale,
                                       F.mse_loss, args.steps, args.batch_size, args.lr, args.seed)
    stats = {"windows": stats.pop("samples"), **stats}
    # the same regression on the test split (other subjects): do the tracks say it there too?
    test_tracks, test_displacement = track_displacement_pairs(FbmWindowDataset(dataset.root, "test", config, smplx_dir=args.smplx_dir))
    test_target = test_displacement.reshape(len(test_displacement), -1) / scale
    with torch.no_grad():
        prediction = head(encoder(pixels_to_normalized(test_tracks, config.image_size)))
    stats["test_loss"] = float(F.mse_loss(prediction, test_target))
    stats["test_mean_target_loss"] = float(F.mse_loss(flat.mean(0).div(scale).expand_as(test_target), test_target))
    save_encoder_weights(encoder, args.out, {"args": args.__dict__, **stats})
    return stats


def load_track_encoder(encoder: TrackEncoder, path: str | Path) -> None:
    """Load this module's pre-trained weights into a CHOIS track encoder (errors name the file)."""
    load_encoder_weights(encoder, path, WRITTEN_BY)


if __name__ == "__main__":
    import tyro

    print(pretrain(tyro.cli(PretrainArgs)))
