"""Regenerate the Table 2 analogue of the paper (§4.3: CHOIS with track conditioning).

    python experiments/table2.py                                  # config: experiments/configs/table2.json
    python experiments/table2.py --seeds 0 1 2 --chois-steps 3000 --max-windows 0

On the embedded FullBodyManipulation-format dataset built from the shared CMU mocap (a
joint-based proxy of SMPL-X, named as such in the table), one command:

1. builds the dataset if absent (:func:`integrations.chois.train.ensure_data`);
2. trains CHOIS (tiny preset) on ground-truth tracks for every seed with ``accelerate``
   (:func:`integrations.chois.train.run_training`);
3. trains (or reuses) a tiny ARFM on the 2-D tracks of the training sequences: per training
   sequence and camera placement, the frames drawn by the same fixed window camera as the
   evaluation (``render_frame``) at the tracks' temporal stride, with the exact projected joint
   and object-point tracks (depth-tested visibility) — the ARFM horizon is CHOIS's track horizon;
4. evaluates every seed with every row's predictor on the same test windows and diffusion noise
   (:func:`integrations.chois.eval.evaluate_predictor`);
5. writes the Table 2 layout (mean ± std over seeds, units in the header) as ``table2.md`` and
   ``table2.json``.

Stages are reused on a rerun when their settings are unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `integrations` importable
    sys.path.insert(0, str(REPO))

from arfm.evaluation.report import write_text_atomic  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling module when loaded by path
from stages import ARFM_PLACEHOLDER, SLUG, ensure_file, load_config, merge_timings, require_positive, resolve, same_record, slug  # noqa: E402


@dataclass
class ChoisSpec:
    """CHOIS training, identical for every seed.

    Attributes:
        preset: ``tiny`` (CPU) or ``base`` (published sizes).
        steps, batch_size, lr: optimisation.
        seeds: one CHOIS run per seed.
        pretrain_track_encoder_steps: steps of pre-training the track encoder alone on the training
            windows' ground-truth tracks (:mod:`integrations.chois.pretrain_tracks`, once, shared
            by every seed) before CHOIS training starts from it; 0: trained jointly from scratch.
        context_to_frames: add the conditioning vector (text + tracks) to every frame token as well
            as to the leading token (``ChoisConfig.context_to_frames``; off: CHOIS's layout).
    """

    preset: str = "tiny"
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrain_track_encoder_steps: int = 0
    context_to_frames: bool = False

    def __post_init__(self) -> None:
        if self.preset not in ("tiny", "base"):
            raise ValueError(f"invalid ChoisSpec field 'preset': 'tiny' or 'base', got {self.preset!r}")
        require_positive(self, "steps", "batch_size")
        if self.pretrain_track_encoder_steps < 0:
            raise ValueError(f"invalid ChoisSpec field 'pretrain_track_encoder_steps': must be >= 0, got {self.pretrain_track_encoder_steps}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"invalid ChoisSpec field 'seeds': need distinct seeds, got {self.seeds}")


@dataclass
class ArfmSpec:
    """The tiny ARFM trained on the training sequences' 2-D tracks.

    Attributes:
        steps, batch_size, seed: optimisation.
        num_points: tracks per training window (the data has 24 joints + 16 object points).
        camera_every: frames between camera placements along a sequence (one clip each).
    """

    steps: int = 300
    num_points: int = 32
    batch_size: int = 8
    seed: int = 0
    camera_every: int = 40

    def __post_init__(self) -> None:
        require_positive(self, "steps", "num_points", "batch_size", "camera_every")


@dataclass
class EvalSpec:
    """Evaluation on the test split.

    Attributes:
        max_windows: test windows per row (0 = all).
        seed: diffusion noise (the same for every row).
        guidance: CHOIS guidance in the last sampling steps.
    """

    max_windows: int = 0
    seed: int = 0
    guidance: bool = True

    def __post_init__(self) -> None:
        if self.max_windows < 0:
            raise ValueError(f"invalid EvalSpec field 'max_windows': must be >= 0, got {self.max_windows}")


@dataclass
class Table2Config:
    """The whole experiment.

    Attributes:
        title: heading of the table.
        rows: ``{row label: track predictor spec}``; ``{ckpt:arfm}`` is the ARFM run's checkpoint.
        data: FullBodyManipulation-format folder (built from ``mocap`` when empty).
        mocap: BVH folder of the embedded default (relative paths: to the repository).
        chois, arfm, eval: the stages.
        out: run folder.
    """

    title: str = "Table 2 analogue: CHOIS (tiny) on the embedded mocap interactions"
    rows: dict[str, str] = field(default_factory=lambda: {
        "CHOIS, no tracks": "none", "CHOIS + no-movement tracks": "no-movement",
        "CHOIS + ARFM tracks (ours)": "arfm:{ckpt:arfm}", "CHOIS + ground-truth tracks": "gt"})
    data: str = "runs/chois_data"
    mocap: str = "../shared/data/mocap"
    chois: ChoisSpec = field(default_factory=ChoisSpec)
    arfm: ArfmSpec = field(default_factory=ArfmSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    out: str = "runs/experiments/table2"

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("invalid Table2Config field 'rows': a table needs at least one row")

    @classmethod
    def from_json(cls, path: str | Path) -> "Table2Config":
        """Read a config; unknown keys (top level or in a stage) are an error naming them."""
        return load_config(cls, path, {"chois": ChoisSpec, "arfm": ArfmSpec, "eval": EvalSpec}, "table 2")


@dataclass
class Table2Command:
    """Command line; every size overrides the config's (``None``: keep it).

    Attributes:
        config: table config JSON.
        out: run folder.
        chois_steps: CHOIS training steps per seed.
        arfm_steps: ARFM training steps.
        seeds: CHOIS seeds.
        max_windows: test windows per row (0 = all).
    """

    config: Path = REPO / "experiments" / "configs" / "table2.json"
    out: Path | None = None
    chois_steps: int | None = None
    arfm_steps: int | None = None
    seeds: list[int] | None = None
    max_windows: int | None = None


def apply_overrides(cfg: Table2Config, cmd: Table2Command) -> Table2Config:
    """The config with the command line's sizes applied (validated again)."""
    def pick(value, default):
        return default if value is None else value

    return dataclasses.replace(
        cfg,
        out=str(cmd.out) if cmd.out is not None else cfg.out,
        chois=dataclasses.replace(cfg.chois, steps=pick(cmd.chois_steps, cfg.chois.steps), seeds=list(pick(cmd.seeds, cfg.chois.seeds))),
        arfm=dataclasses.replace(cfg.arfm, steps=pick(cmd.arfm_steps, cfg.arfm.steps)),
        eval=dataclasses.replace(cfg.eval, max_windows=pick(cmd.max_windows, cfg.eval.max_windows)),
    )


# ---------------------------------------------------------------- CHOIS training
def ensure_track_encoder(spec: ChoisSpec, data: Path, mocap: Path, out: Path) -> tuple[Path | None, float]:
    """Pre-train CHOIS's track encoder on the training windows' ground-truth tracks (once for all
    seeds; reused when unchanged); ``None`` when ``pretrain_track_encoder_steps`` is 0."""
    from integrations.chois.pretrain_tracks import PretrainArgs, pretrain

    if spec.pretrain_track_encoder_steps == 0:
        return None, 0.0
    args = PretrainArgs(out=str(out), data=str(data), mocap=str(mocap), preset=spec.preset, steps=spec.pretrain_track_encoder_steps)
    return ensure_file(out, dataclasses.asdict(args), lambda: f"python -m integrations.chois.pretrain_tracks --out {out} --steps {args.steps}: {pretrain(args)}",
                       "track encoder")


def ensure_chois(spec: ChoisSpec, data: Path, mocap: Path, out: Path, seed: int, track_encoder: Path | None = None) -> tuple[Path, float]:
    """Train one CHOIS run on ground-truth tracks (reused when the same run exists)."""
    from integrations.chois.train import TrainArgs, run_training

    args = TrainArgs(preset=spec.preset, data=data, mocap=mocap, out=out, steps=spec.steps, batch_size=spec.batch_size,
                     lr=spec.lr, tracks=True, save_every=spec.steps, seed=seed, track_encoder_init=track_encoder,
                     context_to_frames=spec.context_to_frames)
    # runs recorded before these fields existed had their defaults: the same record
    defaults = {"track_encoder_init": None, "context_to_frames": False}
    wanted = {k: str(v) for k, v in dataclasses.asdict(args).items() if not (k in defaults and v == defaults[k])}
    record = out / "table2_train_args.json"
    if (out / "checkpoint").is_dir() and same_record(record, wanted):
        print(f"[chois seed {seed}] reusing {out / 'checkpoint'}")
        return out / "checkpoint", 0.0
    if (out / "checkpoint").exists():
        import shutil

        shutil.rmtree(out / "checkpoint")  # other settings: train from scratch
    started = time.perf_counter()
    ckpt, losses = run_training(args)
    write_text_atomic(record, json.dumps(wanted))
    print(f"[chois seed {seed}] {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return ckpt, time.perf_counter() - started


# ---------------------------------------------------------------- ARFM on the 2-D tracks
def export_track_clips(data: Path, config, labelled: Path, camera_every: int, smplx_dir: Path | None = None) -> int:
    """Write the training sequences' camera views as an ARFM labelled dataset.

    Per training sequence and camera placement ``c`` (every ``camera_every`` frames, as long as a
    full window fits), the window camera of ``c`` (:func:`camera_for_window`, as the evaluation
    uses) films frames ``c, c + s, c + 2s, ...`` to the sequence end (``s`` = the CHOIS track
    stride): drawn frames, projected joints and object points, depth-tested visibility.

    Returns:
        The number of clips (existing ones are kept).
    """
    from arfm.data.clip_store import clip_exists, write_clip, write_manifest
    from arfm.data.dataset import TRACK_RANGE
    from integrations.chois.data.camera import camera_for_window, project_tracks, render_frame
    from integrations.chois.data.fbm_dataset import FbmWindowDataset
    from integrations.chois.data.mocap_to_fbm import heading
    from integrations.chois.objects import box_mesh

    dataset = FbmWindowDataset(data, "train", config, smplx_dir=smplx_dir)
    count = 0
    for seq in dataset.sequences:
        num = seq["positions"].shape[0]
        for start in range(0, num - config.window + 1, camera_every):
            clip_id = SLUG.sub("-", f"{seq['seq_name']}_c{start:05d}").strip("-")
            count += 1
            if clip_exists(labelled, clip_id):
                continue
            positions = seq["positions"].clone()
            positions[..., :2] -= positions[start, 0, :2]  # the window's canonical frame, as FbmWindowDataset
            com = seq["com"].clone()
            com[:, :2] -= seq["positions"][start, 0, :2]
            steps = np.arange(start, num, config.track_stride)
            camera = camera_for_window(positions[start, 0], float(heading(positions[start : start + 1])[0]))
            rot, centre = seq["obj_rot"][steps], com[steps]
            obj_pts = seq["track_points"] @ rot.transpose(-1, -2) + centre[:, None]
            tracks, visible = project_tracks(camera, positions[steps].float(), obj_pts.float(), seq["half"].float(), rot.float(), centre.float())
            box_v, box_f = box_mesh(seq["half"])
            frames = np.stack([
                (render_frame(camera, positions[t].float(), (box_v.double() @ seq["obj_rot"][t].T + com[t]).float(), box_f)
                 .permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                for t in steps])
            # a point behind the camera or far off to the side projects thousands of pixels away; it is
            # invisible there, so storing it at the edge of the range a labelled clip may hold loses nothing
            tracks = tracks.numpy().clip(*TRACK_RANGE)
            write_clip(labelled, clip_id, frames, tracks, visible.numpy(), 30.0 / config.track_stride, caption=seq["caption"],
                       source=f"{data} {seq['seq_name']} camera@{start}", extra={"tracker": "projected mocap joints/object points"})
    if count == 0:
        raise ValueError(f"{data}: no training sequence is {config.window} frames long")
    write_manifest(labelled)
    return count


def ensure_arfm(spec: ArfmSpec, data: Path, config, run: Path) -> tuple[Path, float]:
    """Export the clips and train the tiny ARFM (horizon = CHOIS's track horizon); reused when unchanged."""
    from arfm.config import tiny_model_config, tiny_train_config
    from arfm.data.dataset import LabelledTrackDataset
    from arfm.train import run_training

    ckpt, record = run / "checkpoint", run / "arfm_spec.json"
    wanted = {**dataclasses.asdict(spec), "data": str(data.resolve()), "horizon": config.track_horizon, "stride": config.track_stride,
              "window": config.window}
    if ckpt.is_dir() and same_record(record, wanted):
        print(f"[arfm] reusing {ckpt}")
        return ckpt, 0.0
    started = time.perf_counter()
    labelled = run / "labelled"
    print(f"[arfm] {export_track_clips(data, config, labelled, spec.camera_every)} clips in {labelled}")
    model_cfg = tiny_model_config(horizon=config.track_horizon, max_points=max(64, spec.num_points))
    train_cfg = tiny_train_config(steps=spec.steps, batch_size=spec.batch_size, seed=spec.seed, save_every=spec.steps)
    dataset = LabelledTrackDataset(labelled, split="train", num_points=spec.num_points, horizon=config.track_horizon,
                                   max_cond_frames=train_cfg.max_cond_frames, seed=spec.seed)
    ckpt = run_training(model_cfg, train_cfg, dataset, run)
    write_text_atomic(record, json.dumps(wanted))
    return ckpt, time.perf_counter() - started


# ---------------------------------------------------------------- the table
def track_ade(dataset, predictor, horizon: int, max_windows: int, seed: int) -> float | None:
    """Mean pixel error of a predictor's tracks against the ground truth on the test windows
    (points visible at the predicted step; the window camera's 256 x 256 pixels); ``None`` when the
    predictor gives no tracks. It says how good the conditioning is, separately from CHOIS."""
    import torch

    from arfm.predictors import PredictionRequest

    torch.manual_seed(seed)
    count = len(dataset) if max_windows <= 0 else min(max_windows, len(dataset))
    errors = []
    for i in range(count):
        item = dataset[i]
        tracks, visible = item["tracks"], item["track_visible"]  # (N, H + 1, 2), (N, H + 1)
        future = predictor.predict(PredictionRequest(
            frames=item["frame0"][None], observed_tracks=tracks[:, :1], observed_visible=visible[:, :1], caption=item["caption"],
            horizon=horizon, num_samples=1, future_tracks=tracks[:, 1:], future_visible=visible[:, 1:]))
        if future is None:
            return None
        distance = (future[0].float() - tracks[:, 1:]).norm(dim=-1)  # (N, H)
        errors.append(distance[visible[:, 1:]])
    return float(torch.cat(errors).mean())


def aggregate(per_seed: dict[int, dict]) -> dict:
    """Per metric: mean and std (``ddof=1``; 0 for one seed) over seeds; text entries (``skipped``) kept."""
    if not per_seed:
        raise ValueError("aggregate: no seed results")
    first = next(iter(per_seed.values()))
    ddof = 1 if len(per_seed) > 1 else 0
    out: dict = {"seeds": sorted(per_seed), "mean": {}, "std": {}, "per_seed": {str(s): r for s, r in per_seed.items()}}
    for key, value in first.items():
        if isinstance(value, str):
            out["mean"][key] = out["std"][key] = value
            continue
        values = np.array([float(r[key]) for r in per_seed.values()])
        out["mean"][key], out["std"][key] = float(values.mean()), float(values.std(ddof=ddof))
    return out


def format_table(title: str, body_model: str, rows: dict[str, dict], specs: dict[str, str]) -> str:
    """Markdown in the column order of the paper's Table 2, units in the header, mean ± std over seeds."""
    from integrations.chois.metrics import TABLE2_COLUMNS, UNITS

    def cell(mean, std) -> str:
        if isinstance(mean, str):
            return mean
        return f"{mean:.3f} ± {std:.3f}" if math.isfinite(mean) else "nan"

    lines = [f"### {title}", "", f"Body model: {body_model}", "",
             "| Method | Tracks | Seeds | " + " | ".join(f"{c} ({UNITS[c]})" for c in TABLE2_COLUMNS) + " |",
             "|---|---|---:|" + "---:|" * len(TABLE2_COLUMNS)]
    for label, agg in rows.items():
        cells = " | ".join(cell(agg["mean"][c], agg["std"][c]) for c in TABLE2_COLUMNS)
        lines.append(f"| {label} | `{specs[label]}` | {len(agg['seeds'])} | {cells} |")
    return "\n".join(lines)


def format_sensitivity(per_seed: dict[int, dict[str, float]]) -> str:
    """The track-sensitivity check of every seed (:func:`integrations.chois.diagnostics.track_sensitivity`) as markdown."""
    if not per_seed:
        return "Track sensitivity: not measured (it needs at least 2 test windows)."
    keys = list(next(iter(per_seed.values())))
    lines = ["Does CHOIS use its tracks? One-step clean-motion predictions on the test windows, every diffusion step "
             "(errors: mean |predicted - true| normalised motion; change: mean |difference| between two predictions; "
             "feature_ratio: track feature norm / text feature norm):", "",
             "| seed | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    lines += [f"| {seed} | " + " | ".join(f"{values[k]:.4f}" for k in keys) + " |" for seed, values in per_seed.items()]
    return "\n".join(lines)


def run_table2(cfg: Table2Config) -> Path:
    """Run every stage and write ``table2.md`` / ``table2.json``; returns the markdown path."""
    import torch

    from arfm.predictors import build_predictor
    from integrations.chois.checkpointing import load_checkpoint
    from integrations.chois.configuration_chois import PRESETS
    from integrations.chois.data.fbm_dataset import FbmWindowDataset
    from integrations.chois.diagnostics import track_sensitivity
    from integrations.chois.eval import evaluate_predictor
    from integrations.chois.train import ensure_data

    out, data, mocap = resolve(cfg.out), resolve(cfg.data), resolve(cfg.mocap)
    times: dict[str, float] = {}
    started = time.perf_counter()
    ensure_data(data, mocap)
    times["data"] = time.perf_counter() - started
    chois_config = PRESETS[cfg.chois.preset]()
    specs = dict(cfg.rows)
    if any(ARFM_PLACEHOLDER in s for s in specs.values()):
        arfm_ckpt, times["arfm_train"] = ensure_arfm(cfg.arfm, data, chois_config, out / "arfm")
        specs = {label: s.replace(ARFM_PLACEHOLDER, str(arfm_ckpt)) for label, s in specs.items()}
    predictors = {label: build_predictor(s) for label, s in specs.items()}  # fail fast on a bad spec
    test = FbmWindowDataset(data, "test", chois_config, render=True)
    windows = len(test) if cfg.eval.max_windows <= 0 else min(cfg.eval.max_windows, len(test))
    results: dict[str, dict[int, dict]] = {label: {} for label in specs}
    sensitivity: dict[int, dict[str, float]] = {}
    encoder, times["pretrain_track_encoder"] = ensure_track_encoder(cfg.chois, data, mocap, out / "track_encoder_pretrained.safetensors")
    for seed in cfg.chois.seeds:
        ckpt, times[f"train_chois_seed{seed}"] = ensure_chois(cfg.chois, data, mocap, out / f"chois_seed{seed}", seed, encoder)
        model = load_checkpoint(ckpt, use_tracks=True)
        if windows >= 2:  # the check compares each window's tracks with another window's
            sensitivity[seed] = track_sensitivity(model, test, cfg.eval.max_windows, cfg.eval.seed)
            print(f"[track sensitivity seed {seed}] " + ", ".join(f"{k} {v:.4f}" for k, v in sensitivity[seed].items()))
        for label, predictor in predictors.items():
            record = out / "eval" / f"chois_seed{seed}" / f"{slug(label)}.json"
            wanted = {"checkpoint": str(ckpt), "train": json.loads((ckpt.parent / "table2_train_args.json").read_text()),
                      "tracks": specs[label], **dataclasses.asdict(cfg.eval)}
            if record.is_file() and json.loads(record.read_text())["spec"] == wanted:
                results[label][seed] = json.loads(record.read_text())["result"]
                times[f"eval_seed{seed}_{slug(label)}"] = 0.0
                continue
            begun = time.perf_counter()
            torch.manual_seed(cfg.eval.seed)  # stochastic predictors draw from the global generator
            results[label][seed] = evaluate_predictor(model, test, predictor, cfg.eval.max_windows, cfg.eval.seed, cfg.eval.guidance)
            times[f"eval_seed{seed}_{slug(label)}"] = time.perf_counter() - begun
            write_text_atomic(record, json.dumps({"spec": wanted, "result": results[label][seed]}, indent=1))
    ade = {label: track_ade(test, predictors[label], chois_config.track_horizon, cfg.eval.max_windows, cfg.eval.seed) for label in specs}
    times = merge_timings(out / "timings.json", times)
    table = {label: aggregate(per_seed) for label, per_seed in results.items()}
    body_model = test.sequences[0]["body_model"]
    notes = ["", f"Mean ± std (ddof=1) over CHOIS seeds {cfg.chois.seeds}; {windows} test windows (subjects 16-17), "
             f"sampling seed {cfg.eval.seed}, guidance {'on' if cfg.eval.guidance else 'off'}. "
             "R_prec and FID need a text-motion evaluator (none here): skipped.",
             "Error of the conditioning tracks themselves on these windows (mean px over future-visible points, 256 x 256 camera): "
             + "; ".join(f"{label} {'—' if v is None else f'{v:.2f}'}" for label, v in ade.items()) + ".",
             f"CHOIS: {json.dumps(dataclasses.asdict(cfg.chois))}; ARFM: {json.dumps(dataclasses.asdict(cfg.arfm))}.",
             "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + " (stages reused by this run: the time they took when they ran).", f"Command: `{' '.join(sys.argv)}`",
             "", format_sensitivity(sensitivity)]
    markdown = format_table(cfg.title, body_model, table, specs) + "\n" + "\n".join(notes) + "\n"
    write_text_atomic(out / "table2.md", markdown)
    write_text_atomic(out / "table2.json", json.dumps({"title": cfg.title, "body_model": body_model, "config": dataclasses.asdict(cfg),
                                                         "test_windows": windows, "rows": table, "track_ade_px": ade, "specs": specs, "seconds": times,
                                                         "track_sensitivity": {str(k): v for k, v in sensitivity.items()}}, indent=1))
    print(markdown)
    return out / "table2.md"


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, apply its sizes to the config and run the experiment."""
    cmd = tyro.cli(Table2Command, args=argv)
    return run_table2(apply_overrides(Table2Config.from_json(cmd.config), cmd))


if __name__ == "__main__":
    main()
