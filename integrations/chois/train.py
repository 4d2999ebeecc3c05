"""Train CHOIS with ground-truth track conditioning (ARFM paper §3.5, §4.3).

    python integrations/chois/train.py --preset tiny --out runs/chois_tiny --steps 200

Data default: the embedded mocap-derived dataset (built on first use under ``--data``). With the
real FullBodyManipulation files pass ``--data <folder> --smplx-dir <SMPL-X models>``. The run
folder is every trainer's (:mod:`arfm.run_layout`: ``<out>/config.json``, tensorboard
``<out>/logs``, atomic ``<out>/checkpoint`` that ``--resume`` continues from); ``--batch-size`` is
the global batch. Like the CHOIS release, training keeps an EMA copy of the weights (decay 0.995,
updated every 10 steps from step 2000; before that it follows the weights), saved as
``ema.safetensors`` and used for sampling.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a script: make the workspace root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tyro

# Only the flags' dependencies at import; torch and the model load in the functions that use
# them, so that `--help` starts fast.
from integrations.chois.configuration_chois import PRESETS

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MOCAP = REPO / ".." / "shared" / "data" / "mocap"


@dataclass
class TrainArgs:
    """Command-line options.

    Attributes:
        preset: ``tiny`` (CPU) or ``base`` (published CHOIS sizes).
        data: FullBodyManipulation-format folder; built from ``mocap`` when it has no data yet.
        mocap: BVH folder for the embedded default.
        smplx_dir: SMPL-X model folder (real data); ``None`` for the mocap proxy.
        out: run folder (``config.json``, ``logs/``, ``checkpoint/`` inside).
        steps: optimiser steps in total.
        batch_size: windows per step, summed over all processes (the global batch).
        lr: AdamW peak learning rate.
        warmup_steps: linear learning-rate warm-up steps.
        lr_schedule: after the warm-up: ``constant`` (CHOIS) or ``cosine`` decay to 0 at the last step.
        ema_decay: decay of the EMA copy used for sampling (CHOIS: 0.995; ema_pytorch warms it up).
        ema_update_every: steps between EMA updates (CHOIS: 10).
        ema_start: the EMA copy equals the weights until this step (CHOIS: 2000).
        mixed_precision: ``no``, ``fp16`` or ``bf16`` (accelerate).
        num_workers: data-loader worker processes.
        tracks: condition on ground-truth tracks (the paper's training).
        track_encoder_init: start the track encoder from weights written by
            ``python -m integrations.chois.pretrain_tracks`` (pre-trained on ground-truth tracks;
            ignored on ``--resume``, whose checkpoint holds the encoder).
        context_to_frames: add the conditioning vector (text + tracks) to every frame token too
            (``ChoisConfig.context_to_frames``; off = CHOIS's leading token only).
        save_every: checkpoint interval (steps).
        log_every: tensorboard logging interval (steps).
        resume: continue from ``<out>/checkpoint``.
        seed: global seed.
    """

    preset: str = "tiny"
    data: Path = REPO / "runs" / "chois_data"
    mocap: Path = DEFAULT_MOCAP
    smplx_dir: Path | None = None
    out: Path = REPO / "runs" / "chois_tiny"
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    ema_decay: float = 0.995
    ema_update_every: int = 10
    ema_start: int = 2000
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    num_workers: int = 0
    tracks: bool = True
    track_encoder_init: Path | None = None
    context_to_frames: bool = False
    save_every: int = 100
    log_every: int = 10
    resume: bool = False
    seed: int = 0


def ensure_data(data: Path, mocap: Path) -> Path:
    """Build the embedded dataset into ``data`` unless it already holds the train file."""
    if not (data / "train_diffusion_manip_seq_joints24.p").is_file():
        from integrations.chois.data.mocap_to_fbm import build_mocap_dataset

        build_mocap_dataset(data, mocap)
    return data


def run_training(args: TrainArgs) -> tuple[Path, list[float]]:
    """Train and return the checkpoint folder and the per-step losses."""
    import torch
    from accelerate import Accelerator
    from ema_pytorch import EMA
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from arfm.run_layout import CHECKPOINT_DIR, LOG_DIR, hparams, per_process_batch, write_run_config
    from arfm.schedules import lr_factor
    from arfm.train import StopRequest
    from integrations.chois.checkpointing import find_checkpoint, load_checkpoint, load_training_state, save_checkpoint
    from integrations.chois.configuration_chois import chois_config_to_dict
    from integrations.chois.data.fbm_dataset import FbmWindowDataset, collate_items
    from integrations.chois.modeling_chois import ChoisModel

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    torch.manual_seed(args.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision, log_with="tensorboard", project_dir=str(args.out))
    per_process = per_process_batch(args.batch_size, accelerator.num_processes)
    ckpt = args.out / CHECKPOINT_DIR
    config = dataclasses.replace(PRESETS[args.preset](), context_to_frames=args.context_to_frames)
    dataset = FbmWindowDataset(ensure_data(args.data, args.mocap), "train", config, smplx_dir=args.smplx_dir)
    if args.resume and accelerator.is_main_process:
        find_checkpoint(ckpt)  # repairs a save that a kill interrupted (one process: it renames)
    accelerator.wait_for_everyone()
    if args.resume and not ckpt.is_dir():
        raise FileNotFoundError(f"--resume: no checkpoint in '{args.out}' to continue from (drop --resume to start a new run)")
    if args.resume:
        model, state = load_checkpoint(ckpt, use_ema=False), load_training_state(ckpt)
    else:
        model, state = ChoisModel(config), None
        model.set_normalizer(torch.stack([dataset[i]["motion"] for i in range(len(dataset))]))
        if args.track_encoder_init is not None:
            from integrations.chois.pretrain_tracks import load_track_encoder

            if not config.use_tracks:
                raise ValueError("track_encoder_init was given but this CHOIS preset has no track branch (use_tracks=False)")
            load_track_encoder(model.denoiser.track_encoder, args.track_encoder_init)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(args.lr_schedule, args.warmup_steps, args.steps))
    loader = DataLoader(
        dataset, batch_size=per_process, shuffle=True, collate_fn=collate_items, drop_last=len(dataset) > per_process, num_workers=args.num_workers,
    )
    # Built before `prepare` (which patches the model's forward for mixed precision: a copy made
    # after it would share the patched method), then moved to the training device with the model.
    ema = EMA(model, beta=args.ema_decay, update_every=args.ema_update_every, update_after_step=args.ema_start, include_online_model=False)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    ema.to(accelerator.device)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        if "scheduler" in state:  # checkpoints of earlier versions had no schedule (a constant rate)
            scheduler.load_state_dict(state["scheduler"])
        if "ema" in state:  # the frozen CLIP tower is not saved (_ema_state): the only keys allowed to be missing
            missing, unexpected = ema.load_state_dict(state["ema"], strict=False)
            if unexpected or any(not k.startswith("ema_model.denoiser.text.model.") for k in missing):
                raise ValueError(f"{ckpt}: the EMA state does not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    if accelerator.is_main_process:
        write_run_config(args.out, "ChoisModel", chois_config_to_dict(accelerator.unwrap_model(model).config), dataclasses.asdict(args))
    accelerator.init_trackers(LOG_DIR, config=hparams(dataclasses.asdict(args)))  # the tracker's folder: <project_dir>/<name>

    def save() -> None:
        extra = {"scheduler": scheduler.state_dict(), "ema": _ema_state(ema)}
        save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, step, ema_model=ema.ema_model, extra_state=extra)

    losses: list[float] = []
    step = start
    bar = tqdm(total=args.steps, initial=start, desc="train CHOIS", disable=not accelerator.is_main_process)
    with StopRequest() as stop:  # Ctrl-C: finish the step, save, exit
        while step < args.steps:
            for batch in loader:
                parts = model(batch, batch["tracks"] if args.tracks else None)
                optimizer.zero_grad()
                accelerator.backward(parts["total"])
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                ema.update()
                step += 1
                losses.append(float(parts["total"].detach()))
                bar.update(1)
                if step % args.log_every == 0 or step == args.steps:
                    scalars = {f"train/{'loss' if name == 'total' else name}": float(value.detach()) for name, value in parts.items()}
                    accelerator.log(scalars | {"train/lr": scheduler.get_last_lr()[0]}, step=step)
                interrupted = stop.should_stop(accelerator)
                if accelerator.is_main_process and (step % args.save_every == 0 or step == args.steps or interrupted):
                    save()
                if interrupted:
                    accelerator.print(f"\ninterrupted at step {step}: checkpoint saved to {ckpt} (continue with --resume)")
                    accelerator.end_training()
                    raise KeyboardInterrupt
                if step >= args.steps:
                    break
    bar.close()
    if start >= args.steps and accelerator.is_main_process and not ckpt.is_dir():
        save()
    accelerator.end_training()
    return ckpt, losses


def _ema_state(ema) -> dict:
    """The EMA's state without the frozen CLIP tower (rebuilt from its own weights, as in the checkpoint)."""
    return {k: v for k, v in ema.state_dict().items() if not k.startswith("ema_model.denoiser.text.model.")}


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    args = tyro.cli(TrainArgs, args=argv)
    ckpt, losses = run_training(dataclasses.replace(args))
    if losses:
        print(f"trained {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}; checkpoint {ckpt}")


if __name__ == "__main__":
    from arfm.errors import run_cli

    run_cli(main, "chois train")
