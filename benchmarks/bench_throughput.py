"""Benchmark 4 (issue 5): training samples/s and rollout points x steps / s.

    python benchmarks/bench_throughput.py --presets tiny base [--device cuda] [--dtype bf16]

Training: full optimiser steps (forward, backward, AdamW) on synthetic windows of
``--points`` points, one conditioning frame and ``--horizon`` steps. Rollout: KV-cached
sampling of ``--points`` points x ``--horizon`` steps, 16 Euler steps per step.
"""

from __future__ import annotations

import argparse

import torch

from common import build_model, machine, markdown_table, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()

    from arfm.data.batch import collate_windows
    from arfm.data.synthetic import MovingShapesDataset

    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    rows = []
    for preset in args.presets:
        model = build_model(preset, device=args.device, horizon=args.horizon, max_points=args.points)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        batch_size = args.batch
        while True:  # on a GPU, halve the batch until a training step fits in memory
            data = MovingShapesDataset(length=batch_size, num_points=args.points, horizon=args.horizon, fixed_cond_frames=1)
            batch = collate_windows([data[i] for i in range(batch_size)]).to(args.device)
            model.train()

            def train_step() -> None:
                with autocast:
                    loss = model.loss(batch)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            try:
                train_s = timed(train_step, args.device, repeats=args.train_steps, warmup=1)
                break
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise
            # Out of memory: free what the failed step held (outside the except block, whose
            # traceback keeps the step's tensors alive) and retry with half the batch.
            opt.zero_grad(set_to_none=True)
            del batch, train_step
            torch.cuda.empty_cache()
            print(f"{preset} {args.dtype}: batch {batch_size} is out of memory, trying {batch_size // 2}", flush=True)
            batch_size //= 2
        model.eval()
        frames, observed = batch.frames[:1, :1], batch.tracks[:1, :, :1]

        def rollout() -> None:
            with autocast:
                model.sample(frames, observed, [""], horizon=args.horizon)

        roll_s = timed(rollout, args.device, repeats=2, warmup=1)
        rows.append({
            "preset": preset,
            "dtype": args.dtype,
            "batch": batch_size,
            "train_samples_per_s": batch_size / train_s,
            "rollout_points_steps_per_s": args.points * args.horizon / roll_s,
            "rollout_s": roll_s,
        })
    print(f"Throughput, {args.points} points x {args.horizon} steps ({machine()})\n")
    print(markdown_table(rows, ["preset", "dtype", "batch", "train_samples_per_s", "rollout_points_steps_per_s", "rollout_s"]))


if __name__ == "__main__":
    main()
