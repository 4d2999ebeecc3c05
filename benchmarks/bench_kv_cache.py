"""Benchmark 1 (issue 5): KV-cached rollout vs recomputing the fusion module over the whole prefix.

A rollout of ``--points`` points x ``--steps`` steps from one frame; "recompute" re-runs the
fusion transformer over every row so far at each step (what a model without a KV cache does).
Reports, per preset and mode: wall-clock seconds and FLOPs of the whole rollout and of its two
parts (fusion module, flow head), peak RSS (each configuration in its own process), and the
ratios recompute / cache for the whole rollout and for the fusion module alone.

The cache only changes the fusion module's work; the flow head's 16 passes per step are the
same in both modes, so the end-to-end ratio is bounded by the head's share of a cached step
(see benchmarks/RESULTS.md).

    python benchmarks/bench_kv_cache.py --presets tiny --points 100 --steps 50
    python benchmarks/bench_kv_cache.py --presets base --repeats 1   # one run, FLOPs counted in it
"""

from __future__ import annotations

import argparse

import torch

from common import ModuleProfile, build_model, in_subprocess, machine, markdown_table, timed


def rollout(preset: str, use_cache: bool, points: int, steps: int, device: str, repeats: int) -> dict:
    model = build_model(preset, device=device, horizon=steps)
    frames = torch.rand(1, 1, 3, 256, 256, device=device)
    observed = torch.rand(1, points, 1, 2, device=device) * 256

    def run() -> None:
        model.sample(frames, observed, ["a robot arm picks up a block"], horizon=steps, use_cache=use_cache)

    if repeats > 1:  # timing runs, then one run timing the two modules, then one counting FLOPs
        seconds = timed(run, device, repeats=repeats, warmup=1)
        with ModuleProfile(model, device) as profile:
            run()
        with ModuleProfile(model, device, flops=True) as counted:
            run()
    else:  # a single run too slow to repeat: time, split and count it at once
        with ModuleProfile(model, device, flops=True) as profile:
            seconds = timed(run, device, repeats=1, warmup=0)
        counted = profile
    fusion_s, head_s = profile.seconds["fusion"], profile.seconds["head"]
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return {
        "preset": preset,
        "mode": "kv-cache" if use_cache else "recompute",
        "seconds": seconds,
        "fusion_s": fusion_s,
        "head_s": head_s,
        "tflop": counted.flops["total"] / 1e12,
        "fusion_tflop": counted.flops["fusion"] / 1e12,
        "head_tflop": counted.flops["head"] / 1e12,
        "peak_gpu_mib": peak_gpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median); 1 = one run that is also FLOP-counted")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows, ratios = [], []
    for preset in args.presets:
        kw = dict(preset=preset, points=args.points, steps=args.steps, device=args.device, repeats=args.repeats)
        cached = in_subprocess(rollout, use_cache=True, **kw)
        full = in_subprocess(rollout, use_cache=False, **kw)
        rows += [cached, full]
        ratios.append(
            {
                "preset": preset,
                "speedup_total": full["seconds"] / cached["seconds"],
                "speedup_fusion": full["fusion_s"] / cached["fusion_s"],
                "flop_ratio_total": full["tflop"] / cached["tflop"],
                "flop_ratio_fusion": full["fusion_tflop"] / cached["fusion_tflop"],
                "head_share_of_cached_s": cached["head_s"] / cached["seconds"],
            }
        )
    print(f"KV-cached rollout vs recomputation, {args.points} points x {args.steps} steps ({machine()})\n")
    print(markdown_table(rows, ["preset", "mode", "seconds", "fusion_s", "head_s", "tflop", "fusion_tflop", "head_tflop", "peak_rss_mib", "peak_gpu_mib"]))
    print()
    print(markdown_table(ratios, ["preset", "speedup_total", "speedup_fusion", "flop_ratio_total", "flop_ratio_fusion", "head_share_of_cached_s"]))


if __name__ == "__main__":
    main()
