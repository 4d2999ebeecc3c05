"""Run every benchmark with settings that fit a 2-core CPU and print their tables.

    python benchmarks/run_all.py            # CPU defaults (`make bench`)
    python benchmarks/run_all.py --gpu      # on a CUDA machine: tiny and base presets, bf16 too

The horizon-update benchmark uses the checkpoint ``make demo`` trains (``demo_out/run/checkpoint``)
when it exists, so that its consistency and error columns mean something; otherwise random
weights. The base-size 50-step KV-cache run takes about 16 CPU minutes and is left to
``python benchmarks/bench_kv_cache.py --presets base --repeats 1``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_CHECKPOINT = HERE.parent / "demo_out" / "run" / "checkpoint"


FAILED: list[str] = []


def run(script: str, *args: str) -> None:
    """Run one benchmark; a failure (e.g. out of GPU memory) is reported and the rest still run."""
    command = f"python benchmarks/{script} {' '.join(args)}"
    print(f"\n$ {command}", flush=True)
    if subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0:
        FAILED.append(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    gpu = parser.parse_args().gpu
    trained = ["--checkpoint", str(DEMO_CHECKPOINT)] if (DEMO_CHECKPOINT / "config.json").exists() else []
    if gpu:
        run("bench_kv_cache.py", "--presets", "tiny", "base", "--device", "cuda")
        run("bench_horizon_update.py", "--device", "cuda", "--frames", "30", *trained)
        run("bench_horizon_update.py", "--preset", "base", "--device", "cuda")
        run("bench_merged_vs_decoupled.py", "--preset", "base", "--device", "cuda")
        for dtype in ("fp32", "bf16"):
            run("bench_throughput.py", "--presets", "tiny", "base", "--batch", "16", "--device", "cuda", "--dtype", dtype)
    else:
        run("bench_kv_cache.py", "--presets", "tiny")
        run("bench_kv_cache.py", "--presets", "base", "--steps", "16", "--repeats", "1")
        run("bench_horizon_update.py", "--frames", "30", *trained)
        run("bench_horizon_update.py", "--preset", "base", "--frames", "3", "--points", "100")
        run("bench_merged_vs_decoupled.py")
        run("bench_throughput.py", "--presets", "tiny")
    if FAILED:
        print("\nfailed:\n  " + "\n  ".join(FAILED), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
