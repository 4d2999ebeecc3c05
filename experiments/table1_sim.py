"""Table 1, simulator analogue: ARFM vs regression vs no-movement on unseen tabletop episodes (§4.2).

    python experiments/sim_data.py --out data/sim --train-episodes 60 --val-episodes 12   # exact-track clips
    python experiments/table1_sim.py --data data/sim                                      # train, curves, table
    python experiments/table1_sim.py --data data/sim --train-demo-checkpoint              # + checkpoints/tiny-sim
    python experiments/table1_sim.py --data data/sim --diagnose --skip-table              # target scales, motion check

Config: ``experiments/configs/table1_sim.json``. Each run (flow = ARFM, regression = the Table 5
ablation) trains the tiny preset on the ``train`` split (scene seeds the held-out episodes never
use) in ``chunks``; after every chunk the EMA weights are scored on the first ``curve_windows``
held-out windows, which gives the learning curves (``curves.json`` / ``learning_curves.png``).
The final table scores every held-out window with the §4.2 protocol (one conditioning frame,
50 steps, best-of-5 ``δ`` and mean ADE).

``--train-demo-checkpoint`` copies the flow run's EMA weights and config to
``checkpoints/tiny-sim`` (what ``make demo`` loads).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from arfm.atomic import write_text_atomic
from arfm.config import tiny_model_config, tiny_train_config

REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "checkpoints" / "tiny-sim"


@dataclass
class SimRun:
    """One tiny-preset model of the table.

    Attributes:
        objective: ``"flow"`` (ARFM) or ``"regression"``.
        steps: optimiser steps in all.
        chunks: training is split into this many equal chunks, each followed by a curve point.
        horizon: future steps per training window.
        max_cond_frames: most conditioning frames per training window (the protocol uses 1).
        num_points: tracks per training window.
        batch_size: windows per step.
        lr: AdamW learning rate.
        shift_scale: pixels per model unit of a shift (``ModelConfig.shift_scale``).
        cache_window: ``ModelConfig.cache_window``, the streaming KV window saved with the checkpoint
            (``model.sample`` itself attends to every past row).
        seed: training seed.
    """

    objective: str = "flow"
    steps: int = 240
    chunks: int = 3
    horizon: int = 16
    max_cond_frames: int = 1
    num_points: int = 48
    batch_size: int = 8
    lr: float = 1e-3
    shift_scale: float = 1.0
    cache_window: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in ("flow", "regression"):
            raise ValueError(f"invalid SimRun field 'objective': 'flow' or 'regression', got {self.objective!r}")
        if self.chunks < 1 or self.steps < self.chunks or self.steps % self.chunks:
            raise ValueError(f"invalid SimRun field 'chunks': must divide steps={self.steps}, got {self.chunks}")

    def configs(self):
        """The (model, train) configs of this run."""
        model = tiny_model_config(objective=self.objective, horizon=self.horizon, max_points=self.num_points,
                                  shift_scale=self.shift_scale, cache_window=self.cache_window)
        train = tiny_train_config(steps=self.steps, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                                  max_cond_frames=self.max_cond_frames, save_every=self.steps // self.chunks, log_every=10)
        return model, train


@dataclass
class SimTableConfig:
    """The table: runs, rows and evaluation.

    Attributes:
        runs: ``{name: SimRun}``; rows refer to them as ``{ckpt:<name>}``.
        rows: ``{label: predictor spec}`` in table order.
        eval: keyword arguments of :class:`arfm.evaluation.cli.EvalConfig` for the final table.
        curve_windows: held-out windows scored after every chunk.
        runs_dir / out: where runs and the table go (relative to the repository).
    """

    runs: dict[str, SimRun] = field(default_factory=dict)
    rows: dict[str, str] = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    curve_windows: int = 3
    runs_dir: str = "runs/table1_sim"
    out: str = "runs/table1_sim/table"

    @classmethod
    def from_json(cls, path: str | Path) -> "SimTableConfig":
        """Read the config; unknown keys are an error naming them."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise ValueError(f"{path}: unknown keys {sorted(set(data) - known)}; known: {sorted(known)}")
        data["runs"] = {name: SimRun(**spec) for name, spec in data.get("runs", {}).items()}
        return cls(**data)


@dataclass
class SimTableCommand:
    """Command line.

    Attributes:
        data: labelled dataset root written by ``experiments/sim_data.py``.
        config: table config JSON.
        only: train/evaluate only these runs (comma-separated names); the table needs all.
        skip_table: train and write curves only.
        diagnose: print the target-scale statistics of the training data and, per trained run,
            how far / in which direction it moves the moving points of the curve windows.
        train_demo_checkpoint: copy the flow run to ``checkpoints/tiny-sim`` afterwards.
        max_clips: override the number of held-out windows of the table (0 = all of them).
        out: override the table's output folder.
        threads: torch CPU threads.
    """

    data: Path
    config: Path = REPO / "experiments" / "configs" / "table1_sim.json"
    only: str = ""
    skip_table: bool = False
    diagnose: bool = False
    train_demo_checkpoint: bool = False
    max_clips: int | None = None
    out: Path | None = None
    threads: int = 1


def _resolve(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def curve_windows(data: Path, count: int, horizon: int = 50) -> list:
    """The first ``count`` held-out evaluation windows (the same for every curve point)."""
    from arfm.data.dataset import eval_windows, open_labelled_dataset  # torch-heavy imports live in the functions: fast `--help`

    held_out = open_labelled_dataset(data, split="val")
    return list(itertools.islice(eval_windows(held_out, horizon=horizon, min_movement=0.0), count))


def train_with_curve(name: str, run: SimRun, data: Path, runs_dir: Path, windows: list) -> tuple[Path, list[dict]]:
    """Train ``run`` chunk by chunk (exact resume), scoring the EMA weights after each chunk."""
    from arfm.data.dataset import LabelledTrackDataset
    from arfm.evaluation.protocol import EvalProtocol, evaluate
    from arfm.predictors import build_predictor
    from arfm.train import run_training

    model_cfg, train_cfg = run.configs()
    run_dir = runs_dir / name
    record = run_dir / "curve.json"
    wanted = {**dataclasses.asdict(run), "data": str(data.resolve())}
    if record.is_file() and json.loads(record.read_text())["spec"] == wanted:
        print(f"[{name}] reusing {run_dir}")
        return run_dir / "checkpoint", json.loads(record.read_text())["points"]
    if run_dir.exists():
        shutil.rmtree(run_dir)  # another spec: start clean rather than resume a different run
    dataset = LabelledTrackDataset(data, split="train", num_points=run.num_points, horizon=run.horizon,
                                   max_cond_frames=run.max_cond_frames, seed=run.seed)
    spec = f"{'arfm' if run.objective == 'flow' else 'regression'}"
    protocol = EvalProtocol(horizon=50, paper_samples=5, k_values=(1, 5))
    points, seconds = [], 0.0
    per_chunk = run.steps // run.chunks
    for chunk in range(1, run.chunks + 1):
        started = time.perf_counter()
        chunk_cfg = dataclasses.replace(train_cfg, steps=per_chunk * chunk)
        ckpt = run_training(model_cfg, chunk_cfg, dataset, run_dir, resume=chunk > 1, show_progress=False)
        seconds += time.perf_counter() - started
        predictors = {"no-movement": build_predictor("no-movement"), spec: build_predictor(f"{spec}:{ckpt}")}
        summary = evaluate(predictors, windows, protocol).predictors[1].summary()
        point = {"step": per_chunk * chunk, "train_seconds": round(seconds, 1), "delta_avg": summary["delta_avg"],
                 "ade": summary["ade"], "delta": summary["delta"]}
        points.append(point)
        print(f"[{name}] step {point['step']}: delta_avg {point['delta_avg']:.3f} ADE {point['ade']:.1f} ({seconds:.0f} s)", flush=True)
    write_text_atomic(record, json.dumps({"spec": wanted, "windows": len(windows), "points": points}, indent=1))
    return run_dir / "checkpoint", points


def baseline_on(windows: list) -> dict:
    """No-movement on the curve windows (a flat line on the curves)."""
    from arfm.evaluation.protocol import EvalProtocol, evaluate
    from arfm.predictors import build_predictor

    return evaluate({"no-movement": build_predictor("no-movement")}, windows,
                    EvalProtocol(horizon=50, paper_samples=5, k_values=(1, 5))).predictors[0].summary()


def plot_curves(curves: dict[str, list[dict]], baseline: dict, path: Path) -> Path:
    """δ_avg and ADE against training steps, no-movement as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, points in curves.items():
        steps = [p["step"] for p in points]
        axes[0].plot(steps, [p["delta_avg"] for p in points], "o-", label=name)
        axes[1].plot(steps, [p["ade"] for p in points], "o-", label=name)
    axes[0].axhline(baseline["delta_avg"], ls="--", c="k", label="no movement")
    axes[1].axhline(baseline["ade"], ls="--", c="k", label="no movement")
    axes[0].set(xlabel="training step", ylabel="<δ^x_avg (best of 5, higher is better)")
    axes[1].set(xlabel="training step", ylabel="ADE px (mean of 5, lower is better)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Held-out simulator episodes (curve subset), tiny preset on CPU", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def shift_statistics(data: Path, num_points: int = 48, horizon: int = 16, every: int = 3, seed: int = 0) -> dict:
    """Scale of the flow targets: per-step shifts of all tracks and of the §3.1 movement-weighted draw (px)."""
    import numpy as np

    from arfm.data.dataset import open_labelled_dataset
    from arfm.data.subsample import DEFAULT_TEMPERATURE, sample_tracks

    train = open_labelled_dataset(data, split="train")
    rng = np.random.default_rng(seed)
    every_shift, drawn_shift = [], []
    for index in range(0, len(train), every):
        arrays = train.open_arrays(index)
        tracks, visible = np.asarray(arrays["tracks"], np.float32), np.asarray(arrays["visible"])
        if tracks.shape[1] <= horizon:
            continue
        start = int(rng.integers(0, tracks.shape[1] - horizon))
        tracks, visible = tracks[:, start : start + horizon + 1], visible[:, start : start + horizon + 1]
        chosen = sample_tracks(tracks, visible, num_points, 1, rng, DEFAULT_TEMPERATURE)
        shifts, ok = np.diff(tracks, axis=1), visible[:, 1:] & visible[:, :-1]
        every_shift.append(shifts[ok])
        drawn_shift.append(shifts[chosen][ok[chosen]])
    a, b = np.concatenate(every_shift), np.concatenate(drawn_shift)
    speed = np.linalg.norm(b, axis=-1)
    return {"std_all_px": a.std(0).round(3).tolist(), "std_drawn_px": b.std(0).round(3).tolist(),
            "still_fraction_drawn": round(float((speed < 0.1).mean()), 3),
            "speed_drawn_p90_p99_px": np.percentile(speed, [90, 99]).round(2).tolist()}


def motion_diagnostic(ckpt: Path, windows: list, num_samples: int = 5, seed: int = 0) -> list[dict]:
    """Per window: how far the predictions move the truly moving points (> 10 px at step 50), and in which direction."""
    import numpy as np
    import torch

    from arfm.checkpoint import load_model

    model = load_model(ckpt)
    draws = num_samples if model.config.objective == "flow" else 1
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for clip_id, window in windows:
        start = window.tracks[:, :1]
        future = model.sample(window.frames[:1][None], start[None], [window.caption], horizon=50, num_samples=draws, generator=generator)[0].numpy()
        truth = window.tracks.numpy()
        true_d, pred_d = truth[:, -1] - truth[:, 0], future[:, :, -1] - truth[None, :, 0]
        moving = np.linalg.norm(true_d, axis=-1) > 10
        cos = (pred_d[:, moving] * true_d[moving]).sum(-1) / (
            np.linalg.norm(pred_d[:, moving], axis=-1) * np.linalg.norm(true_d[moving], axis=-1) + 1e-6)
        rows.append({"clip": clip_id, "moving_points": int(moving.sum()),
                     "true_px": round(float(np.linalg.norm(true_d[moving], axis=-1).mean()), 1),
                     "predicted_px": round(float(np.linalg.norm(pred_d[:, moving], axis=-1).mean()), 1),
                     "cosine_mean": round(float(cos.mean()), 2), "cosine_best_sample": round(float(cos.mean(1).max()), 2)})
    return rows


def export_demo_checkpoint(ckpt: Path, target: Path = DEMO_CHECKPOINT) -> Path:
    """Copy a run's EMA weights (as ``model.safetensors``) and config: a small, loadable checkpoint."""
    weights = ckpt / "ema.safetensors"
    if not weights.is_file():
        weights = ckpt / "model.safetensors"
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copy2(weights, tmp / "model.safetensors")
    shutil.copy2(ckpt / "config.json", tmp / "config.json")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    cmd = tyro.cli(SimTableCommand, args=argv, prog="table1_sim.py")
    import torch

    from arfm.evaluation.cli import EvalConfig, run_eval
    from arfm.predictors import build_predictor

    torch.set_num_threads(cmd.threads)
    cfg = SimTableConfig.from_json(cmd.config)
    runs_dir = _resolve(cfg.runs_dir)
    names = [n.strip() for n in cmd.only.split(",") if n.strip()] or list(cfg.runs)
    unknown = set(names) - set(cfg.runs)
    if unknown:
        raise ValueError(f"--only names runs {sorted(unknown)} not in the config ({sorted(cfg.runs)})")
    windows = curve_windows(cmd.data, cfg.curve_windows)
    checkpoints, curves = {}, {}
    for name in names:
        checkpoints[name], curves[name] = train_with_curve(name, cfg.runs[name], cmd.data, runs_dir, windows)
    if cmd.diagnose:
        print("shift statistics:", json.dumps(shift_statistics(cmd.data)))
        for name in names:
            for row in motion_diagnostic(checkpoints[name], windows):
                print(f"[{name}] motion:", json.dumps(row))
    baseline = baseline_on(windows)
    plot_curves(curves, baseline, runs_dir / f"learning_curves{'_' + '_'.join(names) if cmd.only else ''}.png")
    if cmd.train_demo_checkpoint:
        flow = [n for n in names if cfg.runs[n].objective == "flow"]
        if not flow:
            raise ValueError("--train-demo-checkpoint needs a flow run among the runs trained")
        print(f"demo checkpoint: {export_demo_checkpoint(checkpoints[flow[0]])}")
    if cmd.skip_table or cmd.only:
        return
    predictors = {}
    for label, template in cfg.rows.items():
        spec = template
        for name, ckpt in checkpoints.items():
            spec = spec.replace(f"{{ckpt:{name}}}", str(ckpt))
        predictors[label] = build_predictor(spec)
    started = time.perf_counter()
    eval_options = {**cfg.eval, **({"max_clips": cmd.max_clips} if cmd.max_clips is not None else {})}
    eval_cfg = EvalConfig(data=cmd.data, predictors=",".join(predictors), out=cmd.out or _resolve(cfg.out),
                          title="Table 1, simulator analogue (held-out seeds, exact tracks)", **eval_options)
    result, paths = run_eval(eval_cfg, predictors=predictors)
    notes = ["", "### Runs", ""]
    for name in names:
        last = curves[name][-1]
        notes.append(f"- `{name}`: {json.dumps(dataclasses.asdict(cfg.runs[name]))}, {last['train_seconds']:.0f} s training")
    notes += [f"- evaluation: {time.perf_counter() - started:.0f} s; command: `{' '.join(sys.argv)}`"]
    write_text_atomic(paths["markdown"], paths["markdown"].read_text() + "\n".join(notes) + "\n")
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
