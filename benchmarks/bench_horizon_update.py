"""Benchmark 2 (issue 5): horizon update (paper §3.4) vs regenerating the horizon every frame.

Streams a real clip through :class:`arfm.online.HorizonPredictor` (LK tracker for the observed
positions) with ``H = 16`` and reports, per mode: time per frame, and temporal consistency =
mean displacement (px) between two successive horizons on the future steps they share.

    python benchmarks/bench_horizon_update.py [--checkpoint runs/x/checkpoint] [--preset tiny|base]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import build_model, machine, markdown_table

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "robot" / "bridge_data_v2_datacol2_toykitchen7_drawer_pnp_01.mp4"


def stream(model, frames: np.ndarray, queries: np.ndarray, mode: str, horizon: int) -> dict:
    from arfm.online import HorizonPredictor

    predictor = HorizonPredictor(model, horizon=horizon, mode=mode, seed=0)
    previous = predictor.reset(frames[0], queries, "")
    times, jumps = [], []
    for frame in frames[1:]:
        start = time.perf_counter()
        current = predictor.update(frame)
        times.append(time.perf_counter() - start)
        jumps.append(float(np.linalg.norm(current[:, :-1] - previous[:, 1:], axis=-1).mean()))
        previous = current
    return {"mode": mode, "ms_per_frame": 1000 * float(np.median(times)), "consistency_px": float(np.mean(jumps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained checkpoint (default: random tiny weights)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--video", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from arfm.checkpoint import load_model
    from arfm.data.video import read_video
    from arfm.predict import grid_queries

    model = load_model(args.checkpoint, device=args.device) if args.checkpoint else build_model(args.preset, device=args.device, cache_window=64)
    frames = read_video(args.video, transform="center_crop", max_frames=args.frames + 1).frames
    queries = grid_queries(args.points)
    rows = [stream(model, frames, queries, mode, args.horizon) for mode in ("update", "naive")]
    rows[0]["speedup_vs_naive"] = rows[1]["ms_per_frame"] / rows[0]["ms_per_frame"]
    rows[0]["smoother_by"] = rows[1]["consistency_px"] / max(rows[0]["consistency_px"], 1e-9)
    weights = str(args.checkpoint) if args.checkpoint else f"random {args.preset} weights"
    print(f"Horizon update vs naive regeneration, H={args.horizon}, {args.points} points, {len(frames) - 1} frames of {args.video.name} ({weights}; {machine()})\n")
    print(markdown_table(rows, ["mode", "ms_per_frame", "consistency_px", "speedup_vs_naive", "smoother_by"]))


if __name__ == "__main__":
    main()
