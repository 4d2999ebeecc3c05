"""``arfm train``: the training loop (paper App. B), one script for CPU, one GPU or many.

Run it directly (``arfm train ...``) or under ``accelerate launch -m arfm.train ...`` for
several processes. The run folder follows :mod:`arfm.run_layout` (``config.json``, tensorboard
``logs/``, atomic ``checkpoint/`` with the config beside the weights; docs/training.md), the
batch size is the global one, and ``--resume`` continues from the checkpoint exactly: same data
order, same random draws, same optimiser state.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from arfm.checkpoint import MODEL_FILE, find_checkpoint, load_safetensors_into, load_training_state, read_checkpoint_config, save_checkpoint
from arfm.config import MODEL_PRESETS, TRAIN_PRESETS, ModelConfig, TrainConfig, config_from_dict, config_to_dict, model_config_from_dict
from arfm.data.batch import collate_windows
from arfm.model import TrackShiftFlowPredictor
from arfm.run_layout import CHECKPOINT_DIR, LOG_DIR, hparams, merge, per_process_batch, read_config_file, write_run_config
from arfm.schedules import lr_factor


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
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _ignore_sigint(worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which finishes the step and saves
    (a worker killed by it would make that last batch fail instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequest:
    """Defers Ctrl-C (SIGINT) to the end of the current optimiser step.

    The checkpoint written on the way out then holds the state of a whole step, from which
    ``--resume`` continues exactly. A second Ctrl-C interrupts at once (without a checkpoint).
    Outside the main thread signals cannot be caught and Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def should_stop(self, accelerator) -> bool:
        """Whether any process was asked to stop; all processes agree, so they stop at one step."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


def run_training(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path,
    resume: bool | Literal["auto"] = False,
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Train the track predictor and return the final checkpoint directory (``<out_dir>/checkpoint``).

    Args:
        model_config, train_config: what to train and how.
        dataset: a ``Dataset`` of :class:`~arfm.data.batch.TrackWindow`.
        out_dir: run directory (checkpoint, tensorboard logs).
        resume: continue from ``<out_dir>/checkpoint`` (an error if there is none);
            ``"auto"``: continue if it exists, else start afresh.
        show_progress: tqdm bar on the main process.
        on_step: called with the step count after every optimiser step (see :func:`fit`).
    """
    model = lambda: TrackShiftFlowPredictor(model_config)  # noqa: E731
    return fit(model, dataset, collate_windows, train_config, out_dir, resume, show_progress, on_step)


def _restore(ckpt_dir: Path, model: torch.nn.Module, optimizer, scheduler, ema, dataset: Dataset) -> int:
    """Load everything that decides the next step from a checkpoint; return its step."""
    meta = read_checkpoint_config(ckpt_dir)
    state = load_training_state(ckpt_dir)
    if state is None:
        raise FileNotFoundError(f"checkpoint '{ckpt_dir}' has no training state (saved for inference only): it cannot be resumed")
    load_safetensors_into(model, str(ckpt_dir / MODEL_FILE), strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ema.load_state_dict(state["ema"])
    if "dataset" in state and hasattr(dataset, "load_state_dict"):
        dataset.load_state_dict(state["dataset"])
    _set_rng_state(state["rng"])
    return int(meta["step"])


def fit(
    build_model: Callable[[], torch.nn.Module],
    dataset: Dataset,
    collate_fn: Callable,
    train_config: TrainConfig,
    out_dir: str | Path,
    resume: bool | Literal["auto"] = False,
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """The training loop shared by every model of the package.

    ``build_model()`` returns a module whose ``forward(batch)`` is the loss and which has a
    dataclass ``config`` (saved with the checkpoint). It is called after seeding, so the
    initialisation is reproducible.

    Resuming is exact, mid-epoch included: the checkpoint holds the weights, optimiser,
    scheduler, EMA, the torch / CUDA / numpy / python RNG states and the dataset's state
    (``dataset.state_dict()`` when it has one). The batch order is a function of
    ``(seed, epoch)``; the data loader's generator is re-seeded per epoch, so creating an
    iterator never draws from the global RNG; a dataset with ``set_epoch`` is told the epoch,
    so its windows do not depend on batches loaded ahead and discarded at a stop. Ctrl-C (or a
    ``KeyboardInterrupt`` raised by ``on_step``) writes a checkpoint at the last completed step
    before re-raising.

    Args:
        resume: ``True``: continue from ``<out_dir>/checkpoint``, repairing a save that a kill
            interrupted; no checkpoint is an error. ``"auto"``: the same if one exists.
        on_step: called with the step count after every optimiser step (and any save).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from ema_pytorch import EMA

    if resume not in (True, False, "auto"):
        raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    accelerator = Accelerator(mixed_precision=train_config.mixed_precision, log_with="tensorboard", project_dir=str(out_dir))
    per_process = per_process_batch(train_config.batch_size, accelerator.num_processes)
    if len(dataset) < per_process:
        raise ValueError(f"dataset has {len(dataset)} windows, fewer than one batch of {per_process}")
    resume_from = None
    if resume:
        if accelerator.is_main_process:
            find_checkpoint(ckpt_dir)  # repair an interrupted save (one process only: it renames)
        accelerator.wait_for_everyone()
        resume_from = ckpt_dir if ckpt_dir.is_dir() else None
        if resume_from is None and resume is True:
            raise FileNotFoundError(f"--resume: no checkpoint in '{out_dir}' to continue from (drop --resume to start a new run)")
    set_seed(train_config.seed)

    model = build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train_config.lr_schedule, train_config.warmup_steps, train_config.steps))
    sampler = EpochShuffleSampler(len(dataset), train_config.seed)
    # The loader's own generator (re-seeded per epoch) seeds its workers: creating an iterator
    # must not draw from the global RNG, or a mid-epoch resume would shift every later draw.
    loader_generator = torch.Generator()
    loader = DataLoader(
        dataset, batch_size=per_process, sampler=sampler, collate_fn=collate_fn, num_workers=train_config.num_workers,
        drop_last=True, generator=loader_generator, worker_init_fn=_ignore_sigint,
    )
    # EMA of the trainable weights (frozen backbones are identical in both copies).
    ema = EMA(model, beta=train_config.ema_decay, update_every=train_config.ema_update_every, update_after_step=0, include_online_model=False)
    # The scheduler stays unprepared: accelerate would step it once per process and optimiser
    # step, and our schedules count optimiser steps (batch_size is already the global batch).
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    ema.to(accelerator.device)  # prepare moved the model only; the EMA update lerps the two in place

    step = 0
    if resume_from is not None:
        step = _restore(resume_from, accelerator.unwrap_model(model), optimizer, scheduler, ema, dataset)
        accelerator.print(f"resumed from {resume_from} at step {step}")

    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        write_run_config(out_dir, type(unwrapped).__name__, config_to_dict(unwrapped.config), config_to_dict(train_config))
    accelerator.init_trackers(LOG_DIR, config=hparams(config_to_dict(train_config)))  # the tracker's folder: <project_dir>/<name>

    def save() -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "ema": ema.state_dict(), "rng": _rng_state()}
            if hasattr(dataset, "state_dict"):
                state["dataset"] = dataset.state_dict()
            save_checkpoint(ckpt_dir, accelerator.unwrap_model(model), ema.ema_model, state, train_config, step)

    batches_per_epoch = len(loader)
    bar = tqdm(total=train_config.steps, initial=step, desc="train", disable=not (show_progress and accelerator.is_local_main_process))

    def train_step(batch, epoch: int) -> None:
        nonlocal step
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

    model.train()
    at_boundary = False  # True only between a finished step and the next batch's loading
    try:
        with StopRequest() as stop:
            while step < train_config.steps:
                epoch, offset = divmod(step, batches_per_epoch)
                loader.set_epoch(epoch)
                if hasattr(dataset, "set_epoch"):  # accelerate forwards it only in some layouts
                    dataset.set_epoch(epoch)
                loader_generator.manual_seed(train_config.seed * 1_000_003 + epoch)
                epoch_loader = accelerator.skip_first_batches(loader, offset) if offset else loader
                for batch in epoch_loader:
                    train_step(batch, epoch)
                    if step % train_config.save_every == 0 or step == train_config.steps:
                        save()
                    at_boundary = True
                    if on_step is not None:
                        on_step(step)
                    if stop.should_stop(accelerator):
                        raise KeyboardInterrupt
                    at_boundary = False
                    if step >= train_config.steps:
                        break
    except KeyboardInterrupt:
        if at_boundary:  # elsewhere the state may be half a step (or half a batch of draws) ahead
            save()
            accelerator.print(f"\ninterrupted at step {step}: checkpoint saved to {ckpt_dir} (continue with --resume)")
        accelerator.end_training()  # flush the logged scalars
        raise
    finally:
        bar.close()
    accelerator.end_training()
    return ckpt_dir


# ---------------------------------------------------------------------- CLI
@dataclass
class TrainCommand:
    """Train the ARFM track predictor.

    Settings come from the preset, then the ``--config`` file, then the flags given; a flag left
    out (``None``) keeps the value before it.

    Attributes:
        out: run directory (<out>/config.json, tensorboard <out>/logs, <out>/checkpoint).
        data: "synthetic" (moving shapes with exact tracks) or a directory written by `arfm label`.
        preset: "tiny" (CPU) or "base" (paper sizes).
        config: a .json/.yaml file with "model" and/or "train" sections (fields of ModelConfig /
            TrainConfig; either may be partial); a run's or a checkpoint's config.json works.
        objective: "flow" (ARFM) or "regression" (the Table 5 ablation).
        steps: optimiser steps.
        batch_size: windows per step, summed over all processes (the global batch).
        lr: peak AdamW learning rate.
        warmup_steps: linear learning-rate warm-up steps.
        lr_schedule: after the warm-up: "constant" (paper) or "cosine" decay to 0 at the last step.
        ema_decay: EMA decay of the sampling weights (paper 0.9999).
        ema_update_every: steps between EMA updates (paper 100).
        mixed_precision: "no", "fp16" or "bf16".
        log_every: steps between tensorboard scalars.
        save_every: steps between checkpoints.
        num_workers: data-loader worker processes per training process.
        horizon: future steps per window.
        num_points: tracks per window (the model's max_points).
        sam2_checkpoint: local SAM 2.1 hiera-tiny weights (base preset).
        clip_checkpoint: local CLIP ViT-B/32 weights (base preset).
        synthetic_size: windows in the synthetic dataset.
        resume: continue from <out>/checkpoint (an error if there is none).
        seed: global seed.
        bad_clips: a labelled clip with NaN/Inf or out-of-range tracks or non-bool visibility:
            "error" stops naming it, "skip" leaves it out with a warning.
    """

    out: Path
    data: str = "synthetic"
    preset: Literal["tiny", "base"] = "tiny"
    config: Path | None = None
    objective: Literal["flow", "regression"] | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup_steps: int | None = None
    lr_schedule: Literal["constant", "cosine"] | None = None
    ema_decay: float | None = None
    ema_update_every: int | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    log_every: int | None = None
    save_every: int | None = None
    num_workers: int | None = None
    horizon: int | None = None
    num_points: int | None = None
    sam2_checkpoint: str | None = None
    clip_checkpoint: str | None = None
    synthetic_size: int = 2000
    resume: bool = False
    seed: int | None = None
    bad_clips: Literal["error", "skip"] = "error"


_TRAIN_FLAGS = ("steps", "batch_size", "lr", "warmup_steps", "lr_schedule", "ema_decay", "ema_update_every", "mixed_precision",
                "log_every", "save_every", "num_workers", "seed")


def configs_from_command(cmd: TrainCommand) -> tuple[ModelConfig, TrainConfig]:
    """The preset's configs, then the ``--config`` file's fields, then the flags given."""
    model_cfg = MODEL_PRESETS[cmd.preset]()
    train_cfg = TRAIN_PRESETS[cmd.preset]()
    if cmd.config is not None:
        sections = read_config_file(cmd.config)
        model_cfg = model_config_from_dict(merge(config_to_dict(model_cfg), sections["model"]))
        train_cfg = config_from_dict(TrainConfig, merge(config_to_dict(train_cfg), sections["train"]), "train")
    backbone = dataclasses.replace(
        model_cfg.backbone,
        sam2_checkpoint=cmd.sam2_checkpoint or model_cfg.backbone.sam2_checkpoint,
        clip_checkpoint=cmd.clip_checkpoint or model_cfg.backbone.clip_checkpoint,
    )
    model_over = {k: v for k, v in {"objective": cmd.objective, "horizon": cmd.horizon, "max_points": cmd.num_points}.items() if v is not None}
    train_over = {name: getattr(cmd, name) for name in _TRAIN_FLAGS if getattr(cmd, name) is not None}
    model_cfg = dataclasses.replace(model_cfg, backbone=backbone, **model_over)
    train_cfg = dataclasses.replace(train_cfg, **train_over)
    if train_cfg.save_every > train_cfg.steps and cmd.save_every is None:  # a short run still saves midway
        train_cfg = dataclasses.replace(train_cfg, save_every=max(1, math.ceil(train_cfg.steps / 2)))
    return model_cfg, train_cfg


def build_dataset(data: str, model_cfg: ModelConfig, train_cfg: TrainConfig, synthetic_size: int = 2000, bad_clips: str = "error") -> Dataset:
    """``"synthetic"`` or a labelled dataset directory -> a Dataset of windows.

    Clips a labelled dataset leaves out are listed in its warning and ``dataset.dropped``."""
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
        root, split="train", num_points=model_cfg.max_points, horizon=model_cfg.horizon, max_cond_frames=train_cfg.max_cond_frames, seed=train_cfg.seed,
        bad_clips=bad_clips,
    )


def main(argv: list[str] | None = None) -> None:
    import tyro

    cmd = tyro.cli(TrainCommand, args=argv, prog="arfm train")
    model_cfg, train_cfg = configs_from_command(cmd)
    if cmd.resume:
        if find_checkpoint(cmd.out / "checkpoint") is None:
            raise FileNotFoundError(f"--resume: no checkpoint in '{cmd.out}' to continue from (drop --resume to start a new run)")
        # The saved config wins on resume, so a run never silently changes architecture.
        meta = read_checkpoint_config(cmd.out / "checkpoint")
        model_cfg = model_config_from_dict(meta["model"])
    with warnings.catch_warnings():  # the clips left out are printed below, one per line
        warnings.filterwarnings("ignore", message=".*left out")
        dataset = build_dataset(cmd.data, model_cfg, train_cfg, cmd.synthetic_size, cmd.bad_clips)
    dropped = getattr(dataset, "dropped", {})
    if dropped:
        print(f"left out {len(dropped)} clip(s):\n" + "\n".join(f"  {clip_id}: {reason}" for clip_id, reason in dropped.items()))
    ckpt = run_training(model_cfg, train_cfg, dataset, cmd.out, resume=cmd.resume)
    print(f"checkpoint: {ckpt}")


if __name__ == "__main__":  # `accelerate launch -m arfm.train`: user errors print one line
    from arfm.errors import run_cli

    run_cli(main, "arfm train")
