"""Benchmark 1 (issue 5): KV-cached rollout vs recomputing the fusion module over the whole prefix.

A rollout of ``--points`` points x ``--steps`` steps from one frame; "recompute" re-runs the
fusion transformer over every row so far at each step (what a model without a KV cache does).
Reports time, peak RSS (each configuration in its own process), FLOPs and the ratios.

    python benchmarks/bench_kv_cache.py --presets tiny base --points 100 --steps 50
"""

from __future__ import annotations

import argparse

import torch

from common import build_model, count_flops, in_subprocess, machine, markdown_table, timed


def rollout(preset: str, use_cache: bool, points: int, steps: int, device: str) -> dict:
    model = build_model(preset, device=device, horizon=steps)
    frames = torch.rand(1, 1, 3, 256, 256, device=device)
    observed = torch.rand(1, points, 1, 2, device=device) * 256

    def run() -> None:
        model.sample(frames, observed, ["a robot arm picks up a block"], horizon=steps, use_cache=use_cache)

    seconds = timed(run, device, repeats=3, warmup=1)
    flops = count_flops(run)
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return {"preset": preset, "mode": "kv-cache" if use_cache else "recompute", "seconds": seconds, "tflop": flops / 1e12, "peak_gpu_mib": peak_gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        cached = in_subprocess(rollout, preset=preset, use_cache=True, points=args.points, steps=args.steps, device=args.device)
        full = in_subprocess(rollout, preset=preset, use_cache=False, points=args.points, steps=args.steps, device=args.device)
        full["speedup_of_cache"] = full["seconds"] / cached["seconds"]
        full["flop_ratio"] = full["tflop"] / cached["tflop"]
        rows += [cached, full]
    print(f"KV-cached rollout vs recomputation, {args.points} points x {args.steps} steps ({machine()})\n")
    print(markdown_table(rows, ["preset", "mode", "seconds", "tflop", "peak_rss_mib", "peak_gpu_mib", "speedup_of_cache", "flop_ratio"]))


if __name__ == "__main__":
    main()
