"""``arfm train``: the training loop (paper App. B), one script for CPU, one GPU or many.

Run it directly (``arfm train ...``) or under ``accelerate launch -m arfm.train ...`` for
several processes. It logs tensorboard scalars, shows a tqdm bar, writes atomic checkpoints
(``<out>/checkpoint``) with the config beside the weights, and ``--resume`` continues from
the checkpoint exactly: same data order, same random draws, same optimiser state.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from arfm.checkpoint import STATE_FILE, load_safetensors_into, read_checkpoint_config, save_checkpoint
from arfm.config import MODEL_PRESETS, TRAIN_PRESETS, ModelConfig, TrainConfig
from arfm.data.batch import collate_windows
from arfm.model import TrackShiftFlowPredictor


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch, fixed by ``(seed, epoch)`` so a resumed run replays it."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=g).tolist())

    def __len__(self) -> int:
        return self.size


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / max(1, warmup))


def run_training(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
) -> Path:
    """Train the track predictor and return the final checkpoint directory (``<out_dir>/checkpoint``).

    Args:
        model_config, train_config: what to train and how.
        dataset: a ``Dataset`` of :class:`~arfm.data.batch.TrackWindow`.
        out_dir: run directory (checkpoint, tensorboard logs).
        resume: continue from ``<out_dir>/checkpoint`` if it exists.
        show_progress: tqdm bar on the main process.
    """
    return fit(lambda: TrackShiftFlowPredictor(model_config), dataset, collate_windows, train_config, out_dir, resume, show_progress)


def fit(
    build_model: Callable[[], torch.nn.Module],
    dataset: Dataset,
    collate_fn: Callable,
    train_config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
) -> Path:
    """The training loop shared by every model of the package.

    ``build_model()`` returns a module whose ``forward(batch)`` is the loss and which has a
    dataclass ``config`` (saved with the checkpoint). It is called after seeding, so the
    initialisation is reproducible.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from ema_pytorch import EMA

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoint"
    accelerator = Accelerator(mixed_precision=train_config.mixed_precision, log_with="tensorboard", project_dir=str(out_dir))
    if train_config.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size {train_config.batch_size} is not divisible by {accelerator.num_processes} processes")
    per_process = train_config.batch_size // accelerator.num_processes
    if len(dataset) < per_process:
        raise ValueError(f"dataset has {len(dataset)} windows, fewer than one batch of {per_process}")
    set_seed(train_config.seed)

    model = build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(train_config.warmup_steps))
    sampler = EpochShuffleSampler(len(dataset), train_config.seed)
    loader = DataLoader(
        dataset, batch_size=per_process, sampler=sampler, collate_fn=collate_fn, num_workers=train_config.num_workers, drop_last=True
    )
    # EMA of the trainable weights (frozen backbones are identical in both copies).
    ema = EMA(model, beta=train_config.ema_decay, update_every=train_config.ema_update_every, update_after_step=0, include_online_model=False)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    step = 0
    if resume and ckpt_dir.is_dir():
        meta = read_checkpoint_config(ckpt_dir)
        unwrapped = accelerator.unwrap_model(model)
        load_safetensors_into(unwrapped, str(ckpt_dir / "model.safetensors"), strict=True)
        state = torch.load(ckpt_dir / STATE_FILE, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ema.load_state_dict(state["ema"])
        _set_rng_state(state["rng"])
        step = int(meta["step"])
        accelerator.print(f"resumed from {ckpt_dir} at step {step}")

    accelerator.init_trackers("arfm", config={k: v for k, v in dataclasses.asdict(train_config).items() if isinstance(v, (int, float, str, bool))})

    def save() -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "ema": ema.state_dict(), "rng": _rng_state()}
            save_checkpoint(ckpt_dir, accelerator.unwrap_model(model), ema.ema_model, state, train_config, step)

    batches_per_epoch = len(loader)
    bar = tqdm(total=train_config.steps, initial=step, desc="train", disable=not (show_progress and accelerator.is_local_main_process))
    model.train()
    while step < train_config.steps:
        epoch, offset = divmod(step, batches_per_epoch)
        loader.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, offset) if offset else loader
        for batch in epoch_loader:
            loss = model(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
            accelerator.backward(loss)
            if train_config.grad_clip > 0:
                accelerator.clip_grad_norm_(params, train_config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update()
            step += 1
            bar.update(1)
            if step % train_config.log_every == 0 or step == train_config.steps:
                value = accelerator.gather(loss.detach()[None]).mean().item()
                accelerator.log({"train/loss": value, "train/lr": scheduler.get_last_lr()[0], "train/epoch": epoch}, step=step)
                bar.set_postfix(loss=f"{value:.4f}")
            if step % train_config.save_every == 0 or step == train_config.steps:
                save()
            if step >= train_config.steps:
                break
    bar.close()
    accelerator.end_training()
    return ckpt_dir


# ---------------------------------------------------------------------- CLI
@dataclass
class TrainCommand:
    """Train the ARFM track predictor.

    Attributes:
        out: run directory (checkpoint in <out>/checkpoint, tensorboard logs beside it).
        data: "synthetic" (moving shapes with exact tracks) or a directory written by `arfm label`.
        preset: "tiny" (CPU) or "base" (paper sizes).
        objective: "flow" (ARFM) or "regression" (the Table 5 ablation); default: the preset's.
        steps: optimiser steps (default: the preset's).
        batch_size: windows per step (default: the preset's).
        lr: learning rate (default: the preset's).
        horizon: future steps per window (default: the preset's).
        num_points: tracks per window (default: the preset's max_points).
        sam2_checkpoint: local SAM 2.1 hiera-tiny weights (base preset).
        clip_checkpoint: local CLIP ViT-B/32 weights (base preset).
        synthetic_size: windows in the synthetic dataset.
        resume: continue from <out>/checkpoint.
        seed: global seed.
    """

    out: Path
    data: str = "synthetic"
    preset: Literal["tiny", "base"] = "tiny"
    objective: Literal["flow", "regression"] | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    horizon: int | None = None
    num_points: int | None = None
    sam2_checkpoint: str | None = None
    clip_checkpoint: str | None = None
    synthetic_size: int = 2000
    resume: bool = False
    seed: int = 0


def configs_from_command(cmd: TrainCommand) -> tuple[ModelConfig, TrainConfig]:
    """Preset configs with the command's overrides applied."""
    model_cfg = MODEL_PRESETS[cmd.preset]()
    train_cfg = TRAIN_PRESETS[cmd.preset]()
    backbone = dataclasses.replace(
        model_cfg.backbone,
        sam2_checkpoint=cmd.sam2_checkpoint or model_cfg.backbone.sam2_checkpoint,
        clip_checkpoint=cmd.clip_checkpoint or model_cfg.backbone.clip_checkpoint,
    )
    model_over = {k: v for k, v in {"objective": cmd.objective, "horizon": cmd.horizon, "max_points": cmd.num_points}.items() if v is not None}
    train_over = {k: v for k, v in {"steps": cmd.steps, "batch_size": cmd.batch_size, "lr": cmd.lr}.items() if v is not None}
    model_cfg = dataclasses.replace(model_cfg, backbone=backbone, **model_over)
    train_cfg = dataclasses.replace(train_cfg, seed=cmd.seed, **train_over)
    if train_cfg.save_every > train_cfg.steps:
        train_cfg = dataclasses.replace(train_cfg, save_every=max(1, math.ceil(train_cfg.steps / 2)))
    return model_cfg, train_cfg


def build_dataset(data: str, model_cfg: ModelConfig, train_cfg: TrainConfig, synthetic_size: int = 2000) -> Dataset:
    """``"synthetic"`` or a labelled dataset directory -> a Dataset of windows."""
    if data == "synthetic":
        from arfm.data.synthetic import MovingShapesDataset

        return MovingShapesDataset(
            length=synthetic_size, num_points=model_cfg.max_points, horizon=model_cfg.horizon, max_cond_frames=train_cfg.max_cond_frames, seed=train_cfg.seed
        )
    from arfm.data.dataset import LabelledTrackDataset

    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"training data directory '{root}' does not exist (make one with `arfm label`)")
    return LabelledTrackDataset(
        root, split="train", num_points=model_cfg.max_points, horizon=model_cfg.horizon, max_cond_frames=train_cfg.max_cond_frames, seed=train_cfg.seed
    )


def main(argv: list[str] | None = None) -> None:
    import tyro

    cmd = tyro.cli(TrainCommand, args=argv, prog="arfm train")
    model_cfg, train_cfg = configs_from_command(cmd)
    if cmd.resume and (cmd.out / "checkpoint").is_dir():
        # The saved config wins on resume, so a run never silently changes architecture.
        from arfm.config import model_config_from_dict

        meta = read_checkpoint_config(cmd.out / "checkpoint")
        model_cfg = model_config_from_dict(meta["model"])
    dataset = build_dataset(cmd.data, model_cfg, train_cfg, cmd.synthetic_size)
    ckpt = run_training(model_cfg, train_cfg, dataset, cmd.out, resume=cmd.resume)
    print(f"checkpoint: {ckpt}")


if __name__ == "__main__":
    main()
