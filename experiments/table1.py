"""Regenerate Table 1 of the paper (track prediction vs baselines, §4.2) on a labelled dataset.

    python experiments/table1.py --data /tmp/arfm_labelled            # config: experiments/configs/table1.json

The config names the rows. Rows that need a trained model (``{ckpt:<run>}`` in the spec) train
it first with the tiny preset through :func:`arfm.train.run_training`, or fine-tune the run's
``init`` checkpoint (reused on later runs when the training spec is unchanged); rows that need
files this machine does not have (Chronos weights, generated videos of LARP / iVideoGPT /
Cosmos) are listed as not run, with the reason. The tables, CSV, JSON and plots go to
``<out>``; ``table.md`` there is what RESULTS.md quotes. Predictor paths in ``rows`` (such as
``arfm:checkpoints/tiny-sim``) are opened as given, so run the script from the repository root.

:func:`run_table` is shared with ``experiments/table5.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tyro

from arfm.config import tiny_model_config, tiny_train_config
from arfm.evaluation.report import write_text_atomic

if TYPE_CHECKING:
    from arfm.config import ModelConfig

REPO = Path(__file__).resolve().parents[1]
_PLACEHOLDER = re.compile(r"\{(ckpt|dir):([A-Za-z0-9_.-]+)\}")


@dataclass
class TrainSpec:
    """A tiny-preset model trained for a table row.

    Attributes:
        objective: ``"flow"`` (ARFM) or ``"regression"`` (Table 5 ablation).
        steps: optimiser steps.
        horizon: future steps per training window.
        num_points: tracks per training window.
        batch_size: windows per step.
        split: dataset split trained on.
        seed: training seed.
        init: checkpoint folder to start from (fine-tuning; a relative path is taken from the
            repository root), or ``None`` to train from a fresh initialisation. The model config
            is the checkpoint's, and the training windows are made for that model, so its
            ``objective``, ``horizon`` and ``max_points`` must equal this spec's ``objective``,
            ``horizon`` and ``num_points``: a mismatch is an error naming the field rather than
            a silent override, so that ``train_spec.json`` always says what was trained. The
            optimiser, schedule (warm-up included) and EMA start afresh; the weights start from
            the checkpoint's EMA weights (the ones its predictor row evaluates).
    """

    objective: str = "flow"
    steps: int = 100
    horizon: int = 16
    num_points: int = 64
    batch_size: int = 8
    split: str = "all"
    seed: int = 0
    init: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in ("flow", "regression"):
            raise ValueError(f"invalid TrainSpec field 'objective': 'flow' or 'regression', got {self.objective!r}")
        if min(self.steps, self.horizon, self.num_points, self.batch_size) < 1:
            raise ValueError("invalid TrainSpec: steps, horizon, num_points and batch_size must be >= 1")
        if self.init is not None and (not isinstance(self.init, str) or not self.init.strip()):
            raise ValueError(f"invalid TrainSpec field 'init': a checkpoint folder or null, got {self.init!r}")


@dataclass
class TableConfig:
    """One table: its rows, the models to train and the evaluation protocol.

    Attributes:
        title: heading of the table.
        rows: ``{row label: predictor spec}`` in table order. ``{ckpt:<run>}`` is replaced by the
            checkpoint of training run ``<run>``, ``{dir:<name>}`` by ``dirs[<name>]``.
        train: ``{run name: TrainSpec}``.
        dirs: local directories rows may need (Chronos weights, generated videos); an empty or
            missing one marks its rows as not run.
        eval: keyword arguments of :class:`arfm.evaluation.cli.EvalConfig` (without data/out/predictors).
        runs_dir: where trained runs live (shared by tables so a model trains once).
        out: output folder of the table.
    """

    title: str
    rows: dict[str, str]
    train: dict[str, TrainSpec] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    runs_dir: str = "runs/experiments"
    out: str = "runs/experiments/table"

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("invalid TableConfig field 'rows': a table needs at least one row")
        bad = [label for label in self.rows if "," in label]
        if bad:
            raise ValueError(f"invalid TableConfig field 'rows': labels may not contain commas: {bad}")

    @classmethod
    def from_json(cls, path: str | Path) -> "TableConfig":
        """Read a table config; unknown keys are an error naming them."""
        data = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        if set(data) - known:
            raise ValueError(f"{path}: unknown keys {sorted(set(data) - known)}; known: {sorted(known)}")
        data["train"] = {name: TrainSpec(**spec) for name, spec in data.get("train", {}).items()}
        return cls(**data)


@dataclass
class TableCommand:
    """Command line of the table scripts.

    Attributes:
        data: labelled dataset root (``arfm label <videos> <root>``).
        config: table config JSON.
        out: output folder (default: the config's).
        steps: override the training steps of every run (quick checks).
        max_clips: override the number of evaluation windows (0 = the config's).
        retrain: train again even when a run with the same spec exists.
        chronos_dir: local Chronos model directory (fills ``dirs.chronos``).
    """

    data: Path
    config: Path
    out: Path | None = None
    steps: int | None = None
    max_clips: int = 0
    retrain: bool = False
    chronos_dir: str | None = None


def _resolve(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else REPO / path


def _init_model_config(name: str, spec: TrainSpec, init_dir: Path) -> ModelConfig:
    """The model config of ``spec.init``, checked against the windows ``spec`` asks for."""
    from arfm.checkpoint import read_checkpoint_config
    from arfm.config import model_config_from_dict
    from arfm.model import TrackShiftFlowPredictor

    if not (init_dir / "config.json").is_file():
        raise FileNotFoundError(f"training run {name!r}: TrainSpec field 'init' is '{init_dir}', which is not a checkpoint folder (no config.json)")
    cfg = model_config_from_dict(read_checkpoint_config(init_dir, expected_kind=TrackShiftFlowPredictor.__name__)["model"])
    for field_name, ckpt_field in (("objective", "objective"), ("horizon", "horizon"), ("num_points", "max_points")):
        if getattr(spec, field_name) != getattr(cfg, ckpt_field):
            raise ValueError(
                f"training run {name!r}: TrainSpec field {field_name!r} is {getattr(spec, field_name)!r} but the init checkpoint "
                f"'{init_dir}' has {ckpt_field}={getattr(cfg, ckpt_field)!r}; set {field_name!r} to {getattr(cfg, ckpt_field)!r} "
                "(fine-tuning windows are made for the checkpoint's model)"
            )
    return cfg


def _init_digest(init_dir: Path) -> str:
    """SHA-256 of the init checkpoint's config and of the weights :func:`arfm.checkpoint.load_model` reads.

    Part of the reuse record, so a checkpoint retrained in place (same path) also retrains the run.
    """
    from arfm.checkpoint import EMA_FILE, MODEL_FILE

    weights = init_dir / (EMA_FILE if (init_dir / EMA_FILE).is_file() else MODEL_FILE)
    digest = hashlib.sha256()
    for path in (init_dir / "config.json", weights):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def train_record(spec: TrainSpec, data: Path) -> dict:
    """What ``train_spec.json`` holds; a run is reused only when this is unchanged.

    ``init`` appears only when set (resolved, with its digest), so records written before the
    field existed still match their from-scratch specs.
    """
    record = {key: value for key, value in dataclasses.asdict(spec).items() if key != "init"}
    record["data"] = str(data.resolve())
    if spec.init is not None:
        init_dir = _resolve(spec.init).resolve()
        record["init"] = str(init_dir)
        record["init_sha256"] = _init_digest(init_dir) if (init_dir / "config.json").is_file() else None
    return record


def train_run(name: str, spec: TrainSpec, data: Path, runs_dir: Path, retrain: bool) -> tuple[Path, float]:
    """Train (or reuse) run ``name``; return its checkpoint and the seconds spent training.

    With ``spec.init`` the run fine-tunes that checkpoint through the same :func:`arfm.train.fit`
    loop that :func:`arfm.train.run_training` uses for a fresh model.
    """
    from arfm.data.batch import collate_windows
    from arfm.data.dataset import LabelledTrackDataset
    from arfm.train import fit, run_training

    run_dir = runs_dir / name
    ckpt, record = run_dir / "checkpoint", run_dir / "train_spec.json"
    wanted = train_record(spec, data)
    if not retrain and ckpt.is_dir() and record.is_file() and json.loads(record.read_text()) == wanted:
        print(f"[{name}] reusing {ckpt}")
        return ckpt, 0.0
    init_dir = None if spec.init is None else _resolve(spec.init)
    if init_dir is None:
        model_cfg = tiny_model_config(objective=spec.objective, horizon=spec.horizon, max_points=spec.num_points)
    else:
        model_cfg = _init_model_config(name, spec, init_dir)
    train_cfg = tiny_train_config(steps=spec.steps, batch_size=spec.batch_size, seed=spec.seed, save_every=spec.steps)
    dataset = LabelledTrackDataset(
        data, split=spec.split, num_points=spec.num_points, horizon=model_cfg.horizon, max_cond_frames=train_cfg.max_cond_frames, seed=spec.seed
    )
    started = time.perf_counter()
    if init_dir is None:
        ckpt = run_training(model_cfg, train_cfg, dataset, run_dir)
    else:
        from arfm.checkpoint import load_model

        print(f"[{name}] fine-tuning {init_dir} for {spec.steps} steps on split {spec.split!r}")
        ckpt = fit(lambda: load_model(init_dir).train(), dataset, collate_windows, train_cfg, run_dir)
    seconds = time.perf_counter() - started
    write_text_atomic(record, json.dumps(wanted, indent=1))
    print(f"[{name}] trained {spec.steps} steps in {seconds:.0f} s -> {ckpt}")
    return ckpt, seconds


def run_table(cfg: TableConfig, cmd: TableCommand) -> Path:
    """Train what the rows need, evaluate every runnable row, write the table; return ``table.md``."""
    from arfm.evaluation.cli import EvalConfig, run_eval  # torch-heavy: here, so `--help` starts fast
    from arfm.predictors import build_predictor

    out = cmd.out or _resolve(cfg.out)
    dirs = {**cfg.dirs, **({"chronos": cmd.chronos_dir} if cmd.chronos_dir else {})}
    runs = {name: dataclasses.replace(spec, steps=cmd.steps or spec.steps) for name, spec in cfg.train.items()}
    checkpoints: dict[str, Path] = {}
    trained: dict[str, float] = {}
    not_run: dict[str, str] = {}
    predictors = {}
    for label, template in cfg.rows.items():
        missing = [f"{kind}:{name}" for kind, name in _PLACEHOLDER.findall(template) if kind == "dir" and not (dirs.get(name) and Path(dirs[name]).is_dir())]
        if missing:
            hint = "set it in the config's 'dirs'" + (" or pass --chronos-dir" if "dir:chronos" in missing else "")
            not_run[label] = f"needs a local {', '.join(missing)} directory ({hint}); none on this machine"
            continue
        for kind, name in _PLACEHOLDER.findall(template):
            if kind == "ckpt" and name not in checkpoints:
                if name not in runs:
                    raise ValueError(f"row {label!r} uses {{ckpt:{name}}} but the config has no training run {name!r}")
                checkpoints[name], trained[name] = train_run(name, runs[name], cmd.data, _resolve(cfg.runs_dir), cmd.retrain)
        spec = _PLACEHOLDER.sub(lambda m: str(checkpoints[m[2]] if m[1] == "ckpt" else dirs[m[2]]), template)
        predictors[label] = build_predictor(spec)
    if not predictors:
        raise ValueError(f"no row of {cfg.title!r} can run here: " + "; ".join(f"{k}: {v}" for k, v in not_run.items()))

    eval_options = {**cfg.eval, **({"max_clips": cmd.max_clips} if cmd.max_clips else {})}
    eval_cfg = EvalConfig(data=cmd.data, predictors=",".join(predictors), out=out, title=cfg.title, **eval_options)
    started = time.perf_counter()
    result, paths = run_eval(eval_cfg, predictors=predictors)
    eval_seconds = time.perf_counter() - started

    notes = ["", "### Rows", ""]
    for label, template in cfg.rows.items():
        notes.append(f"- {label}: `{template}`" + (f" — **not run**: {not_run[label]}" if label in not_run else ""))
    for name, spec in runs.items():
        if name in checkpoints:
            spent = f"{trained[name]:.0f} s" if trained[name] else "reused"
            notes.append(f"- training run `{name}`: tiny preset, {json.dumps(dataclasses.asdict(spec))} ({spent})")
    seconds = ", ".join(f"{p.spec}: {p.seconds:.1f} s" for p in result.predictors)
    notes += [f"- evaluation: {eval_seconds:.0f} s in all; time inside predict: {seconds}", f"- command: `{' '.join(sys.argv)}`"]
    markdown = paths["markdown"].read_text() + "\n".join(notes) + "\n"
    write_text_atomic(paths["markdown"], markdown)
    print(markdown)
    return paths["markdown"]


def main(default_config: str = "experiments/configs/table1.json") -> None:
    """Parse the command line (``--config`` defaults to this table's) and run the table."""
    argv = sys.argv[1:]
    if "--config" not in argv:
        argv += ["--config", str(_resolve(default_config))]
    cmd = tyro.cli(TableCommand, args=argv)
    run_table(TableConfig.from_json(cmd.config), cmd)


if __name__ == "__main__":
    main()
