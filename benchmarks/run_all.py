"""Run every benchmark with settings that fit a 2-core CPU and print their tables.

    python benchmarks/run_all.py            # CPU defaults (`make bench`)
    python benchmarks/run_all.py --gpu      # on a CUDA machine: tiny and base presets, bf16 too
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> None:
    print(f"\n$ python benchmarks/{script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true")
    gpu = parser.parse_args().gpu
    if gpu:
        run("bench_kv_cache.py", "--presets", "tiny", "base", "--device", "cuda")
        run("bench_horizon_update.py", "--preset", "base", "--device", "cuda")
        run("bench_merged_vs_decoupled.py", "--preset", "base", "--device", "cuda")
        for dtype in ("fp32", "bf16"):
            run("bench_throughput.py", "--presets", "tiny", "base", "--batch", "16", "--device", "cuda", "--dtype", dtype)
    else:
        run("bench_kv_cache.py", "--presets", "tiny")
        run("bench_kv_cache.py", "--presets", "base", "--steps", "8")
        run("bench_horizon_update.py")
        run("bench_merged_vs_decoupled.py")
        run("bench_throughput.py", "--presets", "tiny")


if __name__ == "__main__":
    main()
