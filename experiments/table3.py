"""Regenerate the Table 3 analogue of the paper (§4.4: GR-1 on CALVIN with track conditioning).

    python experiments/table3.py                                  # config: experiments/configs/table3.json
    python experiments/table3.py --num-chains 1000 --max-steps 360   # CALVIN's full protocol
    python experiments/table3.py --env calvin --calvin-dataset /data/task_D_D --num-chains 5
        # the real calvin_env: LK labels of training/ -> GR-1 tracks, CALVIN's official chains (first 5), no gt row

On the embedded CALVIN-compatible pybullet tabletop (``integrations/gr1/sim``), one command:

1. generates expert demonstrations in CALVIN's format with ground-truth track sidecars
   (:func:`integrations.gr1.sim.generate.generate`; skipped when the run folder has them);
2. trains a tiny ARFM track predictor on the static-camera videos of those demonstrations
   (horizon 15: GR-1's 16 track positions are the current one plus 15 predicted), on either the
   simulator's exact tracks (``labels = "sim"``, default) or LK pseudo-labels from
   ``arfm label --format calvin`` (``labels = "lk"``);
3. trains GR-1 (tiny preset) on ground-truth tracks with ``accelerate`` for every seed, with the
   same budget (:func:`integrations.gr1.train.main`); optionally a plain GR-1 without the track
   token per seed as well;
4. evaluates every seed with every row's track predictor on the same chains
   (:func:`integrations.gr1.evaluate.evaluate`);
5. writes the Table 3 layout (success rate of 1..5 tasks in a row, average length; mean ± std
   over seeds) as ``table3.md`` and ``table3.json`` in the output folder.

The settings of every stage are the dataclasses of :mod:`table3_config`.

Every stage is reused on a rerun when its settings are unchanged (demonstrations, ARFM run,
GR-1 runs, each evaluation), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `integrations` importable
    sys.path.insert(0, str(REPO))

from arfm.evaluation.report import write_text_atomic  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling module when loaded by path
from stages import ARFM_PLACEHOLDER, ensure_file, merge_timings, resolve, same_record, slug  # noqa: E402
from table3_config import PLAIN_ROW, ArfmSpec, DemoSpec, EvalSpec, Gr1Spec, Table3Config  # noqa: E402
from table3_diagnostics import diagnose_gr1, format_diagnostics  # noqa: E402


@dataclass
class Table3Command:
    """Command line; every size overrides the config's (``None``: keep it).

    Attributes:
        config: table config JSON.
        out: run folder.
        episodes: expert episodes to generate.
        arfm_steps: ARFM training steps.
        gr1_steps: GR-1 training steps per seed.
        seeds: GR-1 seeds.
        num_chains: evaluation chains (1000 = the full protocol).
        max_steps: control steps per subtask (360 = the full protocol).
        plain_baseline: also train GR-1 without the track token.
        env: ``embedded`` or ``calvin`` (the real ``calvin_env``; CALVIN's protocol: 1000 chains,
            360 steps, unless ``--num-chains``/``--max-steps`` say otherwise; LK labels; no ``gt`` row).
        calvin_dataset: CALVIN split root (with ``training/`` and ``validation/``), for ``--env calvin``.
    """

    config: Path = REPO / "experiments" / "configs" / "table3.json"
    out: Path | None = None
    episodes: int | None = None
    arfm_steps: int | None = None
    gr1_steps: int | None = None
    seeds: list[int] | None = None
    num_chains: int | None = None
    max_steps: int | None = None
    plain_baseline: bool | None = None
    env: Literal["embedded", "calvin"] = "embedded"
    calvin_dataset: Path | None = None


def apply_overrides(cfg: Table3Config, cmd: Table3Command) -> Table3Config:
    """The config with the command line's sizes applied (validated again)."""
    def pick(value, default):
        return default if value is None else value

    if cmd.env == "calvin":  # the real env: CALVIN's protocol and data, LK labels, no simulator ground truth
        cfg = dataclasses.replace(
            cfg, rows={k: v for k, v in cfg.rows.items() if v != "gt"}, arfm=dataclasses.replace(cfg.arfm, labels="lk"),
            eval=dataclasses.replace(cfg.eval, env="calvin", calvin_dataset=str(cmd.calvin_dataset) if cmd.calvin_dataset else None,
                                     num_chains=pick(cmd.num_chains, 1000), max_steps=pick(cmd.max_steps, 360)))
    return dataclasses.replace(
        cfg,
        out=str(cmd.out) if cmd.out is not None else cfg.out,
        demos=dataclasses.replace(cfg.demos, episodes=pick(cmd.episodes, cfg.demos.episodes)),
        arfm=dataclasses.replace(cfg.arfm, steps=pick(cmd.arfm_steps, cfg.arfm.steps)),
        gr1=dataclasses.replace(cfg.gr1, steps=pick(cmd.gr1_steps, cfg.gr1.steps), seeds=list(pick(cmd.seeds, cfg.gr1.seeds)),
                                plain_baseline=pick(cmd.plain_baseline, cfg.gr1.plain_baseline)),
        eval=dataclasses.replace(cfg.eval, num_chains=pick(cmd.num_chains, cfg.eval.num_chains), max_steps=pick(cmd.max_steps, cfg.eval.max_steps)),
    )


# ---------------------------------------------------------------- stage 1: demonstrations
def _record(spec: "DemoSpec | EvalSpec") -> dict:
    """A spec as recorded next to its outputs; the default ``task_set`` is left out, so the records
    of runs made before the field existed still match."""
    record = dataclasses.asdict(spec)
    if record.get("task_set") == "classic":
        del record["task_set"]
    return record


def ensure_demos(spec: DemoSpec, root: Path) -> tuple[Path, float]:
    """Generate the demonstrations into ``root`` unless they exist with this spec."""
    from integrations.gr1.sim.generate import GenerateConfig, generate

    record = root / "demo_spec.json"
    spec = dataclasses.replace(spec, heldout_episodes=0)  # the held-out set is a folder of its own
    if same_record(record, _record(spec)):
        print(f"[demos] reusing {root}")
        return root, 0.0
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} holds demonstrations of other settings (see {record}); remove it or choose another --out")
    started = time.perf_counter()
    stats = generate(GenerateConfig(root, spec.episodes, spec.seed, spec.tasks_per_episode, spec.num_points,
                                    movement_weighted=spec.movement_weighted, task_set=spec.task_set))
    write_text_atomic(record, json.dumps(_record(spec)))
    print(f"[demos] {stats}")
    return root, time.perf_counter() - started


def calvin_demos(cfg: Table3Config, out: Path) -> tuple[Path, float]:
    """The real CALVIN split's ``training/`` with GR-1 track sidecars from its LK labels
    (:func:`integrations.gr1.calvin_tracks.label_and_convert`; the ARFM stage reuses the labels)."""
    from integrations.gr1.calvin_tracks import label_and_convert

    split = resolve(cfg.eval.calvin_dataset) / "training"
    started = time.perf_counter()
    print(f"[demos] {label_and_convert(split, out / 'arfm' / 'labelled_lk', seed=cfg.arfm.seed)}")
    return split, time.perf_counter() - started


# ---------------------------------------------------------------- stage 2: ARFM
def sim_tracks_to_labelled(demos: Path, labelled: Path) -> int:
    """Write the demonstrations' static-camera segments with their exact simulator tracks as an
    ARFM labelled dataset (frames resized 200 -> 256 and tracks moved along with ``arfm.coords``).

    Returns:
        The number of clips written.
    """
    from arfm.coords import MODEL_FRAME_SIZE, rescale_pixels
    from arfm.data.calvin import CALVIN_FPS, iter_calvin_segments, load_segment_frames
    from arfm.data.clip_store import clip_exists, write_clip, write_manifest

    count = 0
    for seg in iter_calvin_segments(demos):
        sidecar = demos / "tracks" / f"ep_{seg.start:07d}_{seg.end:07d}.npz"
        if not sidecar.is_file():
            raise FileNotFoundError(f"ground-truth track sidecar missing for segment {seg.clip_id}: {sidecar}")
        count += 1
        if clip_exists(labelled, seg.clip_id):
            continue
        with np.load(sidecar) as side:
            tracks, visible, size = side["tracks"], side["visible"], side["frame_size"]
        if int(size[0]) != int(size[1]):
            raise ValueError(f"{sidecar}: expected a square static camera, got frame_size {size.tolist()}")
        frames = load_segment_frames(seg, "rgb_static", MODEL_FRAME_SIZE)
        write_clip(labelled, seg.clip_id, frames, rescale_pixels(tracks.astype(np.float32), int(size[0]), MODEL_FRAME_SIZE),
                   visible, CALVIN_FPS, caption=seg.instruction, source=str(sidecar), extra={"tracker": "simulator ground truth"})
    if count == 0:
        raise ValueError(f"{demos} has no language-annotated segments")
    write_manifest(labelled)
    return count


def ensure_arfm(spec: ArfmSpec, demos: Path, run: Path) -> tuple[Path, float]:
    """Label (or convert) the demonstrations and train the tiny ARFM; reused when unchanged."""
    from arfm.config import tiny_model_config, tiny_train_config
    from arfm.data.dataset import LabelledTrackDataset
    from arfm.train import run_training

    if spec.checkpoint is not None:
        ckpt = resolve(spec.checkpoint)
        if not (ckpt / "config.json").is_file():
            raise FileNotFoundError(f"ArfmSpec.checkpoint {ckpt} is not an ARFM checkpoint folder (no config.json)")
        print(f"[arfm] using {ckpt} (trained elsewhere)")
        return ckpt, 0.0
    ckpt, record = run / "checkpoint", run / "arfm_spec.json"
    wanted = {**dataclasses.asdict(spec), "demos": str(demos.resolve())}
    if ckpt.is_dir() and same_record(record, wanted):
        print(f"[arfm] reusing {ckpt}")
        return ckpt, 0.0
    started = time.perf_counter()
    labelled = run / f"labelled_{spec.labels}"
    if spec.labels == "sim":
        print(f"[arfm] {sim_tracks_to_labelled(demos, labelled)} clips with simulator tracks in {labelled}")
    else:
        from arfm.labelling.pipeline import LabelConfig, label_dataset

        print(label_dataset(LabelConfig(input=demos, output=labelled, format="calvin", seed=spec.seed)).format())
    model_cfg = tiny_model_config(horizon=spec.horizon, max_points=spec.num_points)
    train_cfg = tiny_train_config(steps=spec.steps, batch_size=spec.batch_size, seed=spec.seed, save_every=spec.steps)
    dataset = LabelledTrackDataset(labelled, split="train", num_points=spec.num_points, horizon=spec.horizon,
                                   max_cond_frames=train_cfg.max_cond_frames, seed=spec.seed)
    ckpt = run_training(model_cfg, train_cfg, dataset, run)
    write_text_atomic(record, json.dumps(wanted))
    return ckpt, time.perf_counter() - started


# ---------------------------------------------------------------- stage 3: GR-1
def ensure_track_encoder(spec: Gr1Spec, demos: Path, out: Path) -> tuple[Path | None, float]:
    """Pre-train the tiny track encoder on the demonstrations' ground-truth tracks (once for all
    seeds; reused when unchanged); ``None`` when ``pretrain_track_encoder_steps`` is 0."""
    from integrations.gr1.pretrain_tracks import PretrainArgs, pretrain

    if spec.pretrain_track_encoder_steps == 0:
        return None, 0.0
    args = PretrainArgs(data=str(demos), out=str(out), preset="tiny", steps=spec.pretrain_track_encoder_steps, max_points=spec.max_points)
    return ensure_file(out, dataclasses.asdict(args),
                       lambda: f"python -m integrations.gr1.pretrain_tracks --data {demos} --out {out} --steps {args.steps}: {pretrain(args)}", "track encoder")


def gr1_args(spec: Gr1Spec, demos: Path, out: Path, seed: int, use_tracks: bool, track_encoder: Path | None = None):
    """The :class:`integrations.gr1.train.TrainArgs` of one seed's run."""
    from integrations.gr1.train import TrainArgs

    return TrainArgs(data=str(demos), out=str(out), preset="tiny", steps=spec.steps, batch_size=spec.batch_size,
                     warmup_steps=spec.warmup_steps, max_points=spec.max_points, use_tracks=use_tracks, seed=seed,
                     save_every=min(spec.steps, 500), log_every=10, track_dropout=spec.track_dropout, cache_frames=True,
                     gripper_loss_weight=spec.gripper_loss_weight,
                     track_encoder_init=str(track_encoder) if use_tracks and track_encoder is not None else None)


def ensure_gr1(spec: Gr1Spec, demos: Path, out: Path, seed: int, use_tracks: bool, track_encoder: Path | None = None) -> tuple[Path, float]:
    """Train one GR-1 run with ``accelerate`` (same as ``accelerate launch integrations/gr1/train.py``)."""
    from integrations.gr1.train import main as train_gr1

    args = gr1_args(spec, demos, out, seed, use_tracks, track_encoder)
    saved = out / "checkpoint" / "train_args.json"
    if same_record(saved, dataclasses.asdict(args)):
        print(f"[gr1 seed {seed}] reusing {out / 'checkpoint'}")
        return out / "checkpoint", 0.0
    if (out / "checkpoint").exists():
        import shutil

        shutil.rmtree(out / "checkpoint")  # other settings: train from scratch
    print(f"[gr1 seed {seed}] accelerate launch integrations/gr1/train.py --preset tiny --data {demos} --out {out} "
          f"--steps {spec.steps} --batch-size {spec.batch_size} --seed {seed}" + ("" if use_tracks else " --no-use-tracks"))
    started = time.perf_counter()
    ckpt = train_gr1(args)
    return ckpt, time.perf_counter() - started


# ---------------------------------------------------------------- stage 4: evaluation
def evaluate_row(ckpt: Path, tracks: str, spec: EvalSpec, label: str, out: Path) -> tuple[dict, float]:
    """One seed x one row of the table (reused when the same evaluation exists)."""
    from integrations.gr1.eval_backends import make_backend
    from integrations.gr1.evaluate import evaluate, write_results
    from integrations.gr1.modeling_gr1 import GR1Policy

    wanted = {"checkpoint": str(ckpt), "checkpoint_args": json.loads((ckpt / "train_args.json").read_text()),
              "tracks": tracks, **_record(spec)}
    if same_record(out / "eval_spec.json", wanted) and (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text()), 0.0
    started = time.perf_counter()
    policy = GR1Policy.from_pretrained(ckpt)
    backend = make_backend(spec.env, spec.calvin_dataset, seed=spec.seed,  # a fresh env per row: the same query points for every row
                           ground_truth_mode=spec.ground_truth_mode, task_set=spec.task_set)
    try:
        result = evaluate(policy, backend, tracks, spec.num_chains, spec.seed, spec.max_steps, label, progress=out / "chains.jsonl")
    finally:
        backend.close()
    write_results(out, result)
    write_text_atomic(out / "eval_spec.json", json.dumps(wanted))
    return dataclasses.asdict(result), time.perf_counter() - started


# ---------------------------------------------------------------- stage 5: the table
def aggregate(per_seed: dict[int, dict]) -> dict:
    """Mean and std (``ddof=1``; 0 for one seed) over seeds of the success rates and average length."""
    if not per_seed:
        raise ValueError("aggregate: no seed results")
    rates = np.array([r["success_rates"] for r in per_seed.values()], dtype=np.float64)
    lengths = np.array([r["avg_len"] for r in per_seed.values()], dtype=np.float64)
    ddof = 1 if len(per_seed) > 1 else 0
    return {"seeds": sorted(per_seed), "num_chains": int(next(iter(per_seed.values()))["num_chains"]),
            "success_mean": rates.mean(0).tolist(), "success_std": rates.std(0, ddof=ddof).tolist(),
            "avg_len_mean": float(lengths.mean()), "avg_len_std": float(lengths.std(ddof=ddof)),
            "per_seed": {str(s): {"success_rates": r["success_rates"], "avg_len": r["avg_len"]} for s, r in per_seed.items()}}


def format_table(title: str, rows: dict[str, dict], specs: dict[str, str]) -> str:
    """Markdown in the layout of the paper's Table 3 (success rates in %, mean ± std over seeds)."""
    lines = [f"### {title}", "", "| Method | Tracks | Seeds | Chains | 1 | 2 | 3 | 4 | 5 | Avg. Len. |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, agg in rows.items():
        cells = " | ".join(f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(agg["success_mean"], agg["success_std"]))
        lines.append(f"| {label} | `{specs[label]}` | {len(agg['seeds'])} | {agg['num_chains']} | {cells} | "
                     f"{agg['avg_len_mean']:.2f} ± {agg['avg_len_std']:.2f} |")
    return "\n".join(lines)


def run_table3(cfg: Table3Config) -> Path:
    """Run every stage and write ``table3.md`` / ``table3.json``; returns the markdown path."""
    out = resolve(cfg.out)
    times: dict[str, float] = {}
    demos, times["demos"] = ensure_demos(cfg.demos, out / "demos") if cfg.eval.env == "embedded" else calvin_demos(cfg, out)
    probe = demos
    if cfg.demos.heldout_episodes > 0:
        probe, times["demos_heldout"] = ensure_demos(cfg.demos.heldout(), out / "demos_heldout")
    diagnostics: dict[int, dict[str, float]] = {}
    specs = dict(cfg.rows)
    arfm_ckpt = None
    if any(ARFM_PLACEHOLDER in s for s in specs.values()):
        arfm_ckpt, times["arfm_train"] = ensure_arfm(cfg.arfm, demos, out / "arfm")
        specs = {label: s.replace(ARFM_PLACEHOLDER, str(arfm_ckpt)) for label, s in specs.items()}
    results: dict[str, dict[int, dict]] = {label: {} for label in specs}
    variants = [(True, specs)] + ([(False, {PLAIN_ROW: "none"})] if cfg.gr1.plain_baseline else [])
    if cfg.gr1.plain_baseline:
        results[PLAIN_ROW] = {}
    encoder, times["pretrain_track_encoder"] = ensure_track_encoder(cfg.gr1, demos, out / "track_encoder_pretrained.safetensors")
    for seed in cfg.gr1.seeds:
        ckpts: dict[bool, Path] = {}
        for use_tracks, rows in variants:
            name = f"gr1_seed{seed}" + ("" if use_tracks else "_plain")
            ckpt, times[f"train_{name}"] = ensure_gr1(cfg.gr1, demos, out / name, seed, use_tracks, encoder)
            ckpts[use_tracks] = ckpt
            if use_tracks and cfg.gr1.diagnostic_windows > 0 and cfg.gr1.plain_baseline:
                ckpts[False], times[f"train_{name}_plain"] = ensure_gr1(cfg.gr1, demos, out / f"{name}_plain", seed, False)
            if use_tracks and cfg.gr1.diagnostic_windows > 0:
                diagnostics[seed] = diagnose_gr1(ckpt, ckpts.get(False), probe, cfg.gr1.diagnostic_windows, out / "diagnostics" / name)
                print(f"[diagnostic {name}] " + ", ".join(f"{k} {v:.4f}" for k, v in diagnostics[seed].items()))
            for label, tracks in rows.items():
                result, seconds = evaluate_row(ckpt, tracks, cfg.eval, label, out / "eval" / name / slug(label))
                times[f"eval_{name}_{slug(label)}"] = seconds
                results[label][seed] = result
                print(f"[eval {name}] {label}: success {result['success_rates']} avg len {result['avg_len']:.2f} ({seconds:.0f} s)")
    times = merge_timings(out / "timings.json", times)
    table = {label: aggregate(per_seed) for label, per_seed in results.items()}
    all_specs = {**specs, **({PLAIN_ROW: "none (no track token)"} if cfg.gr1.plain_baseline else {})}
    notes = ["", f"Success rate (%) of completing 1..5 instructions in a row and average length; mean ± std (ddof=1) over GR-1 seeds "
             f"{cfg.gr1.seeds}; {cfg.eval.num_chains} chains (seed {cfg.eval.seed}), at most {cfg.eval.max_steps} steps per subtask.",
             f"Demonstrations: {json.dumps(dataclasses.asdict(cfg.demos))}; ARFM: {json.dumps(dataclasses.asdict(cfg.arfm))}; "
             f"GR-1 (tiny): {json.dumps(dataclasses.asdict(cfg.gr1))}.",
             "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + " (stages reused by this run: the time they took when they ran).", f"Command: `{' '.join(sys.argv)}`"]
    if diagnostics:
        held = "held-out demonstrations (other scenes, seed " + str(cfg.demos.seed + 1) + ")" if probe != demos else "the training demonstrations"
        notes += ["", format_diagnostics(diagnostics, held)]
    markdown = format_table(cfg.title, table, all_specs) + "\n" + "\n".join(notes) + "\n"
    write_text_atomic(out / "table3.md", markdown)
    write_text_atomic(out / "table3.json", json.dumps({"title": cfg.title, "config": dataclasses.asdict(cfg), "rows": table,
                                                         "specs": all_specs, "seconds": times,
                                                         "diagnostics": {str(k): v for k, v in diagnostics.items()}}, indent=1))
    print(markdown)
    return out / "table3.md"


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, apply its sizes to the config and run the experiment."""
    from integrations.gr1.eval_backends import check_backend

    cmd = tyro.cli(Table3Command, args=argv)
    cfg = apply_overrides(Table3Config.from_json(cmd.config), cmd)
    check_backend(cfg.eval.env, cfg.eval.calvin_dataset)  # no calvin_env / dataset: fail before any training
    return run_table3(cfg)


if __name__ == "__main__":
    main()
