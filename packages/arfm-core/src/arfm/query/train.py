"""``arfm train-query``: train the query-information predictor (paper §3.3, App. B: AdamW, batch 16).

Uses the package's one training loop (:func:`arfm.train.fit`: accelerate, tensorboard,
atomic resumable checkpoints).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arfm.checkpoint import load_weights, read_checkpoint_config
from arfm.config import TRAIN_PRESETS, config_from_dict
from arfm.query.data import LabelledQueryDataset, SyntheticQueryDataset
from arfm.query.model import QueryInfoPredictor, QueryPredictorConfig, collate_queries, tiny_query_config
from arfm.train import fit


@dataclass
class TrainQueryCommand:
    """Train the query-information predictor.

    Attributes:
        out: run directory (checkpoint in <out>/checkpoint).
        data: "synthetic" or a directory written by `arfm label`.
        preset: "tiny" (CPU) or "base" (SAM 2.1 features).
        steps: optimiser steps (default: the preset's).
        sam2_checkpoint: local SAM 2.1 hiera-tiny weights (base preset).
        resume: continue from <out>/checkpoint.
        seed: global seed.
    """

    out: Path
    data: str = "synthetic"
    preset: Literal["tiny", "base"] = "tiny"
    steps: int | None = None
    sam2_checkpoint: str | None = None
    resume: bool = False
    seed: int = 0


def load_query_model(ckpt_dir: str | Path, device: str = "cpu") -> QueryInfoPredictor:
    """Rebuild a trained query-information predictor from its checkpoint directory."""
    meta = read_checkpoint_config(ckpt_dir, expected_kind=QueryInfoPredictor.__name__)
    model = QueryInfoPredictor(config_from_dict(QueryPredictorConfig, meta["model"], "query model"))  # a wrong type names its field
    return load_weights(model, ckpt_dir, use_ema=True).to(device).eval()


def main(argv: list[str] | None = None) -> None:
    import tyro

    cmd = tyro.cli(TrainQueryCommand, args=argv, prog="arfm train-query")
    cfg = tiny_query_config() if cmd.preset == "tiny" else QueryPredictorConfig()
    if cmd.sam2_checkpoint:
        cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, sam2_checkpoint=cmd.sam2_checkpoint))
    train_cfg = TRAIN_PRESETS[cmd.preset](seed=cmd.seed)
    if cmd.steps is not None:
        train_cfg = dataclasses.replace(train_cfg, steps=cmd.steps, save_every=min(train_cfg.save_every, cmd.steps))
    if cmd.data == "synthetic":
        dataset = SyntheticQueryDataset(horizon=cfg.horizon, points_per_frame=cfg.points_per_frame, seed=cmd.seed)
    else:
        dataset = LabelledQueryDataset(cmd.data, horizon=cfg.horizon, points_per_frame=cfg.points_per_frame, seed=cmd.seed)
    ckpt = fit(lambda: QueryInfoPredictor(cfg), dataset, collate_queries, train_cfg, cmd.out, resume=cmd.resume)
    print(f"checkpoint: {ckpt}")


if __name__ == "__main__":
    from arfm.errors import run_cli

    run_cli(main, "arfm train-query")
