"""Train GR-1 with track conditioning on CALVIN-format demonstrations (ARFM paper §4.4).

One script for a CPU, one GPU or many (``accelerate`` picks the setting)::

    accelerate launch integrations/gr1/train.py --preset tiny --data DIR --out runs/gr1
    python integrations/gr1/train.py --preset tiny --data DIR --out runs/gr1        # single process

AdamW (lr 9e-4, weight decay 1e-4, GR-1's values) with linear warm-up then cosine decay
(:func:`arfm.schedules.lr_factor`); the run folder of every trainer (:mod:`arfm.run_layout`:
``<out>/config.json``, tensorboard ``<out>/logs``); ``--batch-size`` is the global batch; a tqdm
bar on the main process. Every ``save_every``
steps and at the end the run writes ``<out>/checkpoint/`` (``config.json``, ``model.safetensors``,
``training_state.safetensors`` + ``training_state.json``, ``train_args.json``) with
:func:`arfm.atomic.atomic_dir`: assembled in a temporary folder and swapped in with renames, so a
crash never leaves a half-written checkpoint, and a kill mid-swap is repaired on ``--resume``. The
training state holds no pickle (:func:`arfm.checkpoint.save_training_state`). Ctrl-C writes a
checkpoint at the last finished step before exiting. ``--resume`` continues from it.

Batches are a pure function of ``(seed, step)`` (:class:`StepBatchSampler`), so a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from integrations.gr1.configuration_gr1 import PRESETS, GR1Config

if TYPE_CHECKING:  # torch-heavy: imported where used, so `--help` starts fast
    import torch

    from integrations.gr1.modeling_gr1 import GR1Policy


@dataclass
class TrainArgs:
    """Command-line flags of the GR-1 trainer.

    Attributes:
        data: CALVIN-format folder (episodes, ep_start_end_ids.npy, lang_annotations/, tracks/).
        out: run folder (checkpoint/, tensorboard logs).
        preset: ``default`` (published GR-1 sizes) or ``tiny`` (CPU).
        steps: optimiser steps in total.
        batch_size: windows per step, summed over all processes (the global batch).
        lr: AdamW peak learning rate (GR-1: 9e-4).
        weight_decay: AdamW weight decay (GR-1: 1e-4).
        warmup_steps: linear warm-up steps before the cosine decay.
        max_grad_norm: gradient clipping (``None``: off).
        use_tracks: add the track token (``False``: plain GR-1, no track sidecars needed).
        track_dropout: overrides the preset's probability of training a sample without tracks.
        gripper_loss_weight: overrides the preset's weight of the gripper BCE.
        max_points: tracks kept per frame (evenly spaced).
        vit_checkpoint: local MAE or GR-1 weights of the default preset's ViT (``None``: random init).
        clip_checkpoint: local CLIP text-encoder weights of the default preset (``None``: the preset's).
        stride: step between window starts in an annotation.
        num_workers: data-loader worker processes.
        log_every: tensorboard logging interval (steps).
        save_every: checkpoint interval (steps).
        seed: seeds the model init and the batch order.
        resume: continue from ``<out>/checkpoint``.
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (accelerate).
        track_encoder_init: weights for the track encoder from
            ``python -m integrations.gr1.pretrain_tracks`` (pre-trained on ground-truth tracks);
            ``None``: random init, trained jointly only. Ignored on ``--resume``.
        cache_frames: resize the cameras to the policy's ``image_size`` when a frame is first read
            and keep them in memory (small datasets and the tiny preset: ~25 kB per frame at 32 px;
            the batches are the same up to float rounding).
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
    gripper_loss_weight: float | None = None
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
    cache_frames: bool = False
    track_encoder_init: str | None = None

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
        if self.gripper_loss_weight is not None:
            overrides["gripper_loss_weight"] = self.gripper_loss_weight
        base = PRESETS[self.preset]()
        return dataclasses.replace(base, **overrides)


class StepBatchSampler:
    """Batches as a function of the step: step ``k`` takes its indices from the epoch
    permutation seeded by ``(seed, epoch)``, so resuming at step ``k`` replays the same order.
    Yields ``num_replicas`` batches per step (accelerate hands them to the processes in turn).
    A ``DataLoader`` takes any iterable of index lists as ``batch_sampler``: no torch base class."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, total_steps: int, num_replicas: int = 1) -> None:
        if size < 1:
            raise ValueError("StepBatchSampler: the dataset is empty")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.total_steps, self.num_replicas = start_step, total_steps, num_replicas

    def _perm(self, epoch: int) -> torch.Tensor:
        import torch

        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        per_step = self.batch_size * self.num_replicas
        for step in range(self.start_step, self.total_steps):
            flat = torch.arange(step * per_step, (step + 1) * per_step)
            epochs, pos = flat // self.size, flat % self.size
            ids = [int(self._perm(int(e))[p]) for e, p in zip(epochs, pos)]
            for r in range(self.num_replicas):
                yield ids[r * self.batch_size : (r + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0) * self.num_replicas


def loss_module(policy: GR1Policy) -> torch.nn.Module:
    """The policy wrapped so the whole loss runs inside ``forward`` (what DDP needs to sync);
    built here rather than at import so that ``--help`` does not load torch."""
    import torch.nn as nn

    from integrations.gr1.modeling_gr1 import gr1_loss

    class LossModule(nn.Module):
        def __init__(self, policy: GR1Policy) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
            return gr1_loss(self.policy, batch, generator)

    return LossModule(policy)


def lr_lambda(warmup: int, total: int):
    """GR-1's schedule: linear warm-up to 1, then cosine decay to 0 at ``total``."""
    from arfm.schedules import lr_factor

    return lr_factor("cosine", warmup, total)


def save_training_checkpoint(out: Path, policy: GR1Policy, optimizer: torch.optim.Optimizer, scheduler, step: int, args: TrainArgs) -> Path:
    """Write ``out/checkpoint`` atomically (:func:`arfm.atomic.atomic_dir`), training state without pickle."""
    import torch

    from arfm.atomic import atomic_dir
    from arfm.checkpoint import save_training_state

    final = out / "checkpoint"
    with atomic_dir(final) as tmp:
        policy.save_pretrained(tmp)
        state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
        save_training_state(tmp, state)
        (tmp / "train_args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    return final


def find_checkpoint(out: Path) -> Path | None:
    """The checkpoint to resume from, after repairing a save that a kill interrupted; ``None`` if there is
    none with a training state."""
    from arfm.checkpoint import LEGACY_STATE_FILE, STATE_JSON
    from arfm.checkpoint import find_checkpoint as repair_checkpoint

    ckpt = repair_checkpoint(Path(out) / "checkpoint")
    if ckpt is None or not any((ckpt / name).is_file() for name in (STATE_JSON, LEGACY_STATE_FILE)):
        return None
    return ckpt


def main(args: TrainArgs) -> Path:
    """Train; returns the final checkpoint folder."""
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from arfm.checkpoint import load_training_state
    from arfm.run_layout import LOG_DIR, hparams, per_process_batch, write_run_config
    from arfm.train import StopRequest
    from integrations.gr1.data import CalvinWindowDataset, collate_gr1
    from integrations.gr1.modeling_gr1 import GR1Policy

    out = Path(args.out)
    accelerator = Accelerator(
        log_with="tensorboard", project_dir=str(out), mixed_precision=args.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # track dropout may skip the encoder
    )
    per_process = per_process_batch(args.batch_size, accelerator.num_processes)  # before any loading: a bad split fails at once
    set_seed(args.seed)
    if args.resume and accelerator.is_main_process:
        find_checkpoint(out)  # repairs a save that a kill interrupted (one process: it renames)
    accelerator.wait_for_everyone()
    start_step, resume_dir = 0, find_checkpoint(out) if args.resume else None
    if args.resume and resume_dir is None:
        raise FileNotFoundError(f"--resume given but no checkpoint with a training state under {out}")
    policy = GR1Policy.from_pretrained(resume_dir) if resume_dir else GR1Policy(args.model_config())
    if args.track_encoder_init is not None and resume_dir is None:
        from integrations.gr1.pretrain_tracks import load_track_encoder

        if not policy.config.use_tracks:
            raise ValueError("track_encoder_init was given but use_tracks is False: the policy has no track encoder")
        load_track_encoder(policy.track_encoder, args.track_encoder_init)
    config = policy.config
    dataset = CalvinWindowDataset(
        args.data, window=config.window, video_offset=config.video_offset, track_len=config.track_len, with_tracks=config.use_tracks,
        track_frame_size=config.track_frame_size, max_points=args.max_points, stride=args.stride,
        image_size=config.image_size if args.cache_frames else None,
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.warmup_steps, args.steps))
    if resume_dir is not None:
        state = load_training_state(resume_dir)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_step = int(state["step"])
    sampler = StepBatchSampler(len(dataset), per_process, args.seed, start_step, args.steps, accelerator.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_gr1, num_workers=args.num_workers)
    module, optimizer, loader = accelerator.prepare(loss_module(policy), optimizer, loader)
    # The schedule is stepped by hand once per optimiser step (accelerate would step it per process).
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, "GR1Policy", dataclasses.asdict(config), dataclasses.asdict(args))
    accelerator.init_trackers(LOG_DIR, config=hparams(dataclasses.asdict(args)))  # the tracker's folder: <project_dir>/<name>
    if accelerator.is_main_process:
        accelerator.print(f"GR-1 {args.preset}: {sum(p.numel() for p in params):,} trainable parameters, {len(dataset)} windows")

    def save() -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_training_checkpoint(out, accelerator.unwrap_model(module).policy, optimizer, scheduler, step, args)

    module.train()
    bar = tqdm(total=args.steps, initial=start_step, desc="train gr1", disable=not accelerator.is_local_main_process)
    step = start_step
    with StopRequest() as stop:  # Ctrl-C: finish the step, save, exit
        for batch in loader:
            step = _train_step(module, batch, optimizer, scheduler, params, step, args, accelerator, bar)
            saved = step % args.save_every == 0 or step == args.steps
            if saved:
                save()
            if stop.should_stop(accelerator):
                if not saved:
                    save()
                accelerator.print(f"\ninterrupted at step {step}: checkpoint saved to {out / 'checkpoint'} (continue with --resume)")
                raise KeyboardInterrupt
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and step == start_step:  # nothing left to train: keep the checkpoint current
        save_training_checkpoint(out, accelerator.unwrap_model(module).policy, optimizer, scheduler, step, args)
    accelerator.end_training()
    return out / "checkpoint"


def _train_step(module, batch, optimizer, scheduler, params, step: int, args: TrainArgs, accelerator, bar) -> int:
    """One optimiser step with its logging; returns the new step count."""
    import torch

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
    return step


if __name__ == "__main__":
    import tyro

    from arfm.errors import run_cli

    run_cli(lambda argv: main(tyro.cli(TrainArgs, args=argv)), "gr1 train")
