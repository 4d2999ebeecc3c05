"""Benchmark 3 (issue 5): ARFM's decoupled design vs the "merged" design of the paper's App. D.

Merged: one causal transformer takes the noised target at its input, so each of the ``K``
denoising steps of a timestep is a full forward of the (fusion-sized) model, and matching
training requires the past rows noised to the same flow time: ``K`` key/value caches, one per
denoising level. Decoupled (ARFM): the fusion module runs once per timestep, only the light
flow head runs ``K`` times, and one cache holds the past.

The merged variant here reuses the fusion module's layers at the same width/depth (random
weights: only cost is measured). Reports FLOPs, time and KV-cache memory of a rollout.

    python benchmarks/bench_merged_vs_decoupled.py --preset tiny --points 100 --steps 50
"""

from __future__ import annotations

import argparse

import torch

from common import build_model, count_flops, machine, markdown_table, timed


@torch.no_grad()
def merged_rollout(model, frames: torch.Tensor, observed: torch.Tensor, steps: int) -> int:
    """Cost model of the merged design; returns the bytes held in its K caches at the end."""
    k_steps = model.config.sample_steps
    state = model.prepare(frames, observed, [""])
    caches = [state.cache.clone(window=0) for _ in range(k_steps)]  # one per denoising level
    index = torch.zeros(1, 1, dtype=torch.long)
    for _ in range(steps):
        tokens = model._row_tokens(state.last_frame, state.positions[:, None], state.prev_shift[:, None], index, torch.zeros(1, 1, dtype=torch.bool), state.frame_size)
        x = torch.randn_like(state.positions)
        for level in range(k_steps):
            # the noised target enters the big model: one full row forward per denoising step
            noise_tokens = torch.zeros_like(tokens)
            noise_tokens[:, :, : x.shape[1]] = model.shift_proj(x)[:, None]
            fused = model.fusion.step(tokens + noise_tokens, caches[level], state.key_mask)[:, -1, : x.shape[1]]
            x = x + (1.0 / k_steps) * fused[..., :2]  # a linear read-out in a real model; its cost is negligible
        state.positions = state.positions + x
        state.prev_shift = x
    return sum(c.nbytes() for c in caches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = build_model(args.preset, device=args.device, horizon=args.steps, cache_window=0)
    frames = torch.rand(1, 1, 3, 256, 256, device=args.device)
    observed = torch.rand(1, args.points, 1, 2, device=args.device) * 256

    def decoupled() -> None:
        model.sample(frames, observed, [""], horizon=args.steps)

    holder = {}

    def merged() -> None:
        holder["bytes"] = merged_rollout(model, frames, observed, args.steps)

    state = model.prepare(frames, observed, [""])
    for _ in range(args.steps):
        model.advance(state, torch.randn_like(state.positions), 0.0, model.config.sample_steps)
    rows = [
        {"design": "decoupled (ARFM)", "tflop": count_flops(decoupled) / 1e12, "seconds": timed(decoupled, args.device, repeats=3, warmup=1), "kv_cache_mib": state.cache.nbytes() / 2**20},
        {"design": "merged (App. D)", "tflop": count_flops(merged) / 1e12, "seconds": timed(merged, args.device, repeats=1, warmup=0)},
    ]
    rows[1]["kv_cache_mib"] = holder["bytes"] / 2**20
    rows[1]["flop_ratio"] = rows[1]["tflop"] / rows[0]["tflop"]
    rows[1]["time_ratio"] = rows[1]["seconds"] / rows[0]["seconds"]
    print(f"{args.steps}-step rollout, {args.points} points, K={model.config.sample_steps}, preset {args.preset} ({machine()})\n")
    print(markdown_table(rows, ["design", "tflop", "seconds", "kv_cache_mib", "flop_ratio", "time_ratio"]))


if __name__ == "__main__":
    main()
