"""Train GR-1 with track conditioning on CALVIN-format demonstrations (ARFM paper §4.4).

One script for a CPU, one GPU or many (``accelerate`` picks the setting)::

    accelerate launch integrations/gr1/train.py --preset tiny --data DIR --out runs/gr1
    python integrations/gr1/train.py --preset tiny --data DIR --out runs/gr1        # single process

AdamW (lr 9e-4, weight decay 1e-4, GR-1's values) with linear warm-up then cosine decay;
tensorboard scalars under ``<out>/gr1``; a tqdm bar on the main process. Every ``save_every``
steps and at the end the run writes ``<out>/checkpoint/`` (``config.json``, ``model.safetensors``,
``training_state.pt``, ``train_args.json``): assembled in a temporary folder and swapped in with
renames, so a crash never leaves a half-written checkpoint. ``--resume`` continues from it.

Batches are a pure function of ``(seed, step)`` (:class:`StepBatchSampler`), so a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from integrations.gr1.configuration_gr1 import PRESETS, GR1Config
from integrations.gr1.data import CalvinWindowDataset, collate_gr1
from integrations.gr1.modeling_gr1 import GR1Policy, gr1_loss


@dataclass
class TrainArgs:
    """Command-line flags of the GR-1 trainer.

    Attributes:
        data: CALVIN-format folder (episodes, ep_start_end_ids.npy, lang_annotations/, tracks/).
        out: run folder (checkpoint/, tensorboard logs).
        preset: ``default`` (published GR-1 sizes) or ``tiny`` (CPU).
        steps: optimiser steps in total.
        batch_size: windows per step and process.
        lr, weight_decay, warmup_steps: AdamW and the warm-up of the cosine schedule.
        max_grad_norm: gradient clipping (``None``: off).
        use_tracks: add the track token (``False``: plain GR-1, no track sidecars needed).
        track_dropout: overrides the preset's probability of training a sample without tracks.
        max_points: tracks kept per frame (evenly spaced).
        vit_checkpoint, clip_checkpoint: local backbone weights (default preset).
        stride: step between window starts in an annotation.
        num_workers: data-loader worker processes.
        log_every, save_every: tensorboard and checkpoint intervals (steps).
        seed: seeds the model init and the batch order.
        resume: continue from ``<out>/checkpoint``.
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (accelerate).
    """

    data: str
    out: str
    preset: Literal["default", "tiny"] = "tiny"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 9e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    max_grad_norm: float | None = None
    use_tracks: bool = True
    track_dropout: float | None = None
    max_points: int | None = 64
    vit_checkpoint: str | None = None
    clip_checkpoint: str | None = None
    stride: int = 1
    num_workers: int = 0
    log_every: int = 10
    save_every: int = 500
    seed: int = 0
    resume: bool = False
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "save_every", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid TrainArgs field '{name}': must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.lr <= 0:
            raise ValueError("invalid TrainArgs field 'warmup_steps'/'lr': warmup_steps >= 0 and lr > 0 required")

    def model_config(self) -> GR1Config:
        """The preset with this run's overrides."""
        overrides: dict = {"use_tracks": self.use_tracks, "vit_checkpoint": self.vit_checkpoint}
        if self.clip_checkpoint is not None:
            overrides["clip_checkpoint"] = self.clip_checkpoint
        if self.track_dropout is not None:
            overrides["track_dropout"] = self.track_dropout
        base = PRESETS[self.preset]()
        return dataclasses.replace(base, **overrides)


class StepBatchSampler(Sampler[list[int]]):
    """Batches as a function of the step: step ``k`` takes its indices from the epoch
    permutation seeded by ``(seed, epoch)``, so resuming at step ``k`` replays the same order.
    Yields ``num_replicas`` batches per step (accelerate hands them to the processes in turn)."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, total_steps: int, num_replicas: int = 1) -> None:
        if size < 1:
            raise ValueError("StepBatchSampler: the dataset is empty")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.total_steps, self.num_replicas = start_step, total_steps, num_replicas

    def _perm(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))

    def __iter__(self) -> Iterator[list[int]]:
        per_step = self.batch_size * self.num_replicas
        for step in range(self.start_step, self.total_steps):
            flat = torch.arange(step * per_step, (step + 1) * per_step)
            epochs, pos = flat // self.size, flat % self.size
            ids = [int(self._perm(int(e))[p]) for e, p in zip(epochs, pos)]
            for r in range(self.num_replicas):
                yield ids[r * self.batch_size : (r + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0) * self.num_replicas


class LossModule(nn.Module):
    """Wraps the policy so the whole loss runs inside ``forward`` (what DDP needs to sync)."""

    def __init__(self, policy: GR1Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        return gr1_loss(self.policy, batch, generator)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to 1, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def save_training_checkpoint(out: Path, policy: GR1Policy, optimizer: torch.optim.Optimizer, scheduler, step: int, args: TrainArgs) -> Path:
    """Write ``out/checkpoint`` atomically (build in ``checkpoint.tmp``, then swap by renames)."""
    final, tmp, old = out / "checkpoint", out / "checkpoint.tmp", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
    torch.save(state, tmp / "training_state.pt")
    (tmp / "train_args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out: Path) -> Path | None:
    """The checkpoint to resume from (``checkpoint``, or ``checkpoint.old`` after a crash mid-swap)."""
    for name in ("checkpoint", "checkpoint.old"):
        if (out / name / "training_state.pt").is_file():
            return out / name
    return None


def main(args: TrainArgs) -> Path:
    """Train; returns the final checkpoint folder."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    out = Path(args.out)
    accelerator = Accelerator(
        log_with="tensorboard", project_dir=str(out), mixed_precision=args.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # track dropout may skip the encoder
    )
    set_seed(args.seed)
    start_step, resume_dir = 0, find_checkpoint(out) if args.resume else None
    if args.resume and resume_dir is None:
        raise FileNotFoundError(f"--resume given but no checkpoint with training_state.pt under {out}")
    policy = GR1Policy.from_pretrained(resume_dir) if resume_dir else GR1Policy(args.model_config())
    config = policy.config
    dataset = CalvinWindowDataset(
        args.data, window=config.window, video_offset=config.video_offset, track_len=config.track_len, with_tracks=config.use_tracks,
        track_frame_size=config.track_frame_size, max_points=args.max_points, stride=args.stride,
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.warmup_steps, args.steps))
    if resume_dir is not None:
        state = torch.load(resume_dir / "training_state.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_step = int(state["step"])
    sampler = StepBatchSampler(len(dataset), args.batch_size, args.seed, start_step, args.steps, accelerator.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_gr1, num_workers=args.num_workers)
    module, optimizer, loader = accelerator.prepare(LossModule(policy), optimizer, loader)
    # The schedule is stepped by hand once per optimiser step (accelerate would step it per process).
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        flat = {k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("gr1", config=flat)
        accelerator.print(f"GR-1 {args.preset}: {sum(p.numel() for p in params):,} trainable parameters, {len(dataset)} windows")

    module.train()
    bar = tqdm(total=args.steps, initial=start_step, desc="train gr1", disable=not accelerator.is_local_main_process)
    step = start_step
    for batch in loader:
        generator = torch.Generator().manual_seed(args.seed * 1000003 + step)
        loss, parts = module(batch, generator)
        accelerator.backward(loss)
        if args.max_grad_norm is not None:
            accelerator.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if step % args.log_every == 0 or step == args.steps:
            accelerator.log({f"train/{k}": v for k, v in parts.items()} | {"train/lr": scheduler.get_last_lr()[0]}, step=step)
        if step % args.save_every == 0 or step == args.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_training_checkpoint(out, accelerator.unwrap_model(module).policy, optimizer, scheduler, step, args)
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and step == start_step:  # nothing left to train: keep the checkpoint current
        save_training_checkpoint(out, accelerator.unwrap_model(module).policy, optimizer, scheduler, step, args)
    accelerator.end_training()
    return out / "checkpoint"


if __name__ == "__main__":
    import tyro

    main(tyro.cli(TrainArgs))
