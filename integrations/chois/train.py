"""Train CHOIS with ground-truth track conditioning (ARFM paper §3.5, §4.3).

    python integrations/chois/train.py --preset tiny --out runs/chois_tiny --steps 200

Data default: the embedded mocap-derived dataset (built on first use under ``--data``). With the
real FullBodyManipulation files pass ``--data <folder> --smplx-dir <SMPL-X models>``. Checkpoints
(``<out>/checkpoint``) are atomic and ``--resume`` continues from them; scalars go to tensorboard.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the workspace root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import tyro
from accelerate import Accelerator
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from integrations.chois.checkpointing import load_checkpoint, load_training_state, save_checkpoint
from integrations.chois.configuration_chois import PRESETS
from integrations.chois.data.fbm_dataset import FbmWindowDataset, collate_items
from integrations.chois.data.mocap_to_fbm import build_mocap_dataset
from integrations.chois.modeling_chois import ChoisModel

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
        out: run folder (``checkpoint/`` and ``tb/`` inside).
        steps, batch_size, lr: optimisation.
        tracks: condition on ground-truth tracks (the paper's training).
        save_every, log_every: bookkeeping.
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
    tracks: bool = True
    save_every: int = 100
    log_every: int = 10
    resume: bool = False
    seed: int = 0


def ensure_data(data: Path, mocap: Path) -> Path:
    """Build the embedded dataset into ``data`` unless it already holds the train file."""
    if not (data / "train_diffusion_manip_seq_joints24.p").is_file():
        build_mocap_dataset(data, mocap)
    return data


def run_training(args: TrainArgs) -> tuple[Path, list[float]]:
    """Train and return the checkpoint folder and the per-step losses."""
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    torch.manual_seed(args.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    ckpt = args.out / "checkpoint"
    config = PRESETS[args.preset]()
    dataset = FbmWindowDataset(ensure_data(args.data, args.mocap), "train", config, smplx_dir=args.smplx_dir)
    if args.resume and ckpt.is_dir():
        model, state = load_checkpoint(ckpt), load_training_state(ckpt)
    else:
        model, state = ChoisModel(config), None
        model.set_normalizer(torch.stack([dataset[i]["motion"] for i in range(len(dataset))]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate_items, drop_last=len(dataset) > args.batch_size)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    writer = SummaryWriter(str(args.out / "tb")) if accelerator.is_main_process else None
    losses: list[float] = []
    step = start
    bar = tqdm(total=args.steps, initial=start, desc="train CHOIS", disable=not accelerator.is_main_process)
    while step < args.steps:
        for batch in loader:
            parts = model(batch, batch["tracks"] if args.tracks else None)
            optimizer.zero_grad()
            accelerator.backward(parts["total"])
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            losses.append(float(parts["total"].detach()))
            bar.update(1)
            if writer is not None and step % args.log_every == 0:
                for name, value in parts.items():
                    writer.add_scalar(f"loss/{name}", float(value.detach()), step)
            if accelerator.is_main_process and (step % args.save_every == 0 or step == args.steps):
                save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, step)
            if step >= args.steps:
                break
    bar.close()
    if writer is not None:
        writer.close()
    if start >= args.steps and accelerator.is_main_process and not ckpt.is_dir():
        save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, step)
    return ckpt, losses


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    args = tyro.cli(TrainArgs, args=argv)
    ckpt, losses = run_training(dataclasses.replace(args))
    if losses:
        print(f"trained {len(losses)} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}; checkpoint {ckpt}")


if __name__ == "__main__":
    main()
