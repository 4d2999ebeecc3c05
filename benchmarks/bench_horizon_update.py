"""Benchmark 2 (issue 5): horizon update (paper §3.4) vs regenerating the horizon every frame.

Streams a real clip through :class:`arfm.online.HorizonPredictor` (LK tracker for the observed
positions) with ``H = 16`` and reports, per mode: time per frame (median) and its split between
the fusion module and the flow head, calls of each per frame, FLOPs per frame, temporal
consistency = mean displacement (px) between two successive horizons on the future steps
they share, and error = mean distance (px) of the horizon's steps to the clip's own LK tracks
on the frames that follow (meaningful with a trained ``--checkpoint`` only). Modes: the paper's update with the sequential and the parallel re-integration
schedule (see ``arfm.online``), and naive regeneration.

    python benchmarks/bench_horizon_update.py [--checkpoint demo_out/run/checkpoint] [--preset tiny|base]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import ModuleProfile, build_model, machine, markdown_table, synchronize

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "robot" / "bridge_data_v2_datacol2_toykitchen7_drawer_pnp_01.mp4"
MODES = {"update, sequential": ("update", "sequential"), "update, parallel": ("update", "parallel"), "naive": ("naive", "sequential")}


def horizon_error(horizon: np.ndarray, frame: int, reference: np.ndarray, visible: np.ndarray) -> list[float]:
    """Distances (px) of ``horizon (N, H, 2)`` predicted after ``frame`` to the reference tracks."""
    steps = min(horizon.shape[1], reference.shape[1] - frame - 1)
    if steps <= 0:
        return []
    ref, vis = reference[:, frame + 1 : frame + 1 + steps], visible[:, frame + 1 : frame + 1 + steps]
    return np.linalg.norm(horizon[:, :steps] - ref, axis=-1)[vis].tolist()


def stream(model, frames: np.ndarray, queries: np.ndarray, reference: tuple[np.ndarray, np.ndarray], label: str, horizon: int, device: str) -> dict:
    from arfm.online import HorizonPredictor, horizon_consistency

    mode, schedule = MODES[label]
    predictor = HorizonPredictor(model, horizon=horizon, mode=mode, schedule=schedule, seed=0)
    previous = predictor.reset(frames[0], queries, "")
    times, jumps, errors = [], [], []

    def update(index: int) -> None:
        nonlocal previous
        synchronize(device)
        start = time.perf_counter()
        current = predictor.update(frames[index])
        synchronize(device)
        times.append(time.perf_counter() - start)
        jumps.append(horizon_consistency(previous, current))
        errors.extend(horizon_error(current, index, *reference))
        previous = current

    with ModuleProfile(model, device) as profile:
        for index in range(1, len(frames) - 1):
            update(index)
    updates = len(times)
    # The last frame's update is FLOP-counted (counting slows the operators it sees, so its
    # time is left out of the timing columns).
    with ModuleProfile(model, device, flops=True) as flops:
        update(len(frames) - 1)
    times.pop()
    return {
        "mode": label,
        "ms_per_frame": 1000 * float(np.median(times)),
        "fusion_ms": 1000 * profile.seconds["fusion"] / updates,
        "head_ms": 1000 * profile.seconds["head"] / updates,
        "fusion_calls": profile.calls["fusion"] // updates,
        "head_calls": profile.calls["head"] // updates,
        "gflop_per_frame": flops.flops["total"] / 1e9,
        "consistency_px": float(np.mean(jumps)),
        "error_px": float(np.mean(errors)) if errors else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained checkpoint (default: random weights of --preset)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--video", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20, help="updates per mode (>= 2; the last one is FLOP-counted)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.frames < 2:
        parser.error("--frames must be >= 2")

    from arfm.checkpoint import load_model
    from arfm.data.video import read_video
    from arfm.predict import grid_queries
    from arfm.tracking import LucasKanadeTracker

    model = load_model(args.checkpoint, device=args.device) if args.checkpoint else build_model(args.preset, device=args.device, cache_window=64)
    frames = read_video(args.video, transform="center_crop", max_frames=args.frames + 1).frames
    queries = grid_queries(args.points)
    reference = LucasKanadeTracker().track(frames, np.concatenate([np.zeros((len(queries), 1), np.float32), queries], axis=1))
    rows = [stream(model, frames, queries, reference, label, args.horizon, args.device) for label in MODES]
    naive = rows[-1]
    for row in rows[:-1]:
        row["speedup_vs_naive"] = naive["ms_per_frame"] / row["ms_per_frame"]
        row["flop_ratio_vs_naive"] = naive["gflop_per_frame"] / row["gflop_per_frame"]
        row["smoother_by"] = naive["consistency_px"] / max(row["consistency_px"], 1e-9)
    # Context for the error column: a horizon that holds every point where it is now.
    tracks, visible = reference
    still = [e for f in range(1, len(frames)) for e in horizon_error(np.repeat(tracks[:, f : f + 1], args.horizon, axis=1), f, tracks, visible)]
    rows.append({"mode": "no-movement (error only)", "error_px": float(np.mean(still)) if still else float("nan")})
    weights = str(args.checkpoint) if args.checkpoint else f"random {args.preset} weights"
    print(f"Horizon update vs naive regeneration, H={args.horizon}, {args.points} points, {len(frames) - 1} frames of {args.video.name} ({weights}; {machine()})\n")
    columns = ["mode", "ms_per_frame", "fusion_ms", "head_ms", "fusion_calls", "head_calls", "gflop_per_frame", "consistency_px", "error_px"]
    print(markdown_table(rows, columns + ["speedup_vs_naive", "flop_ratio_vs_naive", "smoother_by"]))


if __name__ == "__main__":
    main()
