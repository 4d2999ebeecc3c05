"""CALVIN long-horizon evaluation of GR-1 with any track predictor (ARFM paper §4.4, Table 3).

The protocol of CALVIN (Mees et al. 2022): ``num_chains`` chains of 5 language instructions
(1000 in the full protocol); each subtask gets at most 360 control steps and succeeds when the
environment's task oracle reports it completed; a chain stops at its first failure. Reported:
the success rate of completing 1..5 tasks in a row and the average number completed.

Tracks come from ``--tracks SPEC`` resolved only through :func:`arfm.predictors.build_predictor`
(``none``, ``gt``, ``no-movement``, ``arfm:<ckpt>``, ...) and are refreshed at every control
step (:class:`integrations.gr1.policy_runner.OnlineTrackConditioner`).

What ``gt`` means in closed loop (embedded env; :mod:`integrations.gr1.sim.oracle`): the current
position of each point plus the displacements the scripted expert makes when it carries on, in a
copy of the simulator state (physics only, then the state is restored). By default
(``ground_truth_mode="from_state"``) the expert continues its plan from the policy's current state
at every step; ``"from_start"`` replays its run from the subtask's start state, indexed by step.

Usage::

    python integrations/gr1/evaluate.py --checkpoint runs/gr1/checkpoint --tracks gt --num-chains 20 --out results/gr1_gt
    python integrations/gr1/evaluate.py --table results/gr1_none/results.json results/gr1_gt/results.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from integrations.gr1.eval_backends import EvalBackend, check_backend, make_backend

if TYPE_CHECKING:  # torch-heavy: imported where used, so `--help` starts fast
    from integrations.gr1.modeling_gr1 import GR1Policy
    from integrations.gr1.policy_runner import GR1Runner, OnlineTrackConditioner

CHAIN_LENGTH = 5
MAX_STEPS_PER_SUBTASK = 360


@dataclass
class EvalResult:
    """Outcome of a long-horizon evaluation.

    Attributes:
        label: row name in the table.
        tracks: predictor spec.
        num_chains: chains evaluated.
        success_rates: fraction of chains with at least ``i + 1`` tasks completed in a row.
        avg_len: mean number of tasks completed in a row.
        chains: per chain, its tasks and how many were completed.
    """

    label: str
    tracks: str
    num_chains: int
    success_rates: list[float]
    avg_len: float
    chains: list[dict] = field(default_factory=list)


def summarize(completed: list[int], chain_length: int = CHAIN_LENGTH) -> tuple[list[float], float]:
    """Success rates for 1..chain_length in a row and the average length, from per-chain counts."""
    if not completed:
        raise ValueError("summarize: no chains were evaluated")
    counts = np.asarray(completed)
    if counts.min() < 0 or counts.max() > chain_length:
        raise ValueError(f"summarize: completed counts must lie in [0, {chain_length}], got {counts.tolist()}")
    rates = [float((counts >= i).mean()) for i in range(1, chain_length + 1)]
    return rates, float(counts.mean())


def run_chain(runner: GR1Runner, backend: EvalBackend, chain, conditioner: OnlineTrackConditioner | None, max_steps: int) -> int:
    """Roll out one chain; returns how many of its tasks were completed in a row."""
    obs = backend.reset(chain)
    done = 0
    for task, instruction in zip(chain.tasks, chain.instructions):
        runner.reset(instruction)
        if conditioner is not None:
            conditioner.reset()
        start_info = backend.info()
        backend.begin_subtask(task)
        success = False
        for step in range(max_steps):
            tracks = None
            if conditioner is not None:
                points, visible = backend.query_points()
                tracks = conditioner(obs["rgb_obs"]["rgb_static"], points, visible, instruction, backend.ground_truth(step))
            obs = backend.step(runner.act(obs, tracks))
            if backend.completed(task, start_info, backend.info()):
                success = True
                break
        if not success:
            break
        done += 1
    return done


def evaluate(
    policy: GR1Policy, backend: EvalBackend, tracks: str = "none", num_chains: int = 1000, seed: int = 0,
    max_steps: int = MAX_STEPS_PER_SUBTASK, label: str | None = None, device: str = "cpu",
    progress: str | Path | None = None,
) -> EvalResult:
    """Run the CALVIN long-horizon protocol.

    Args:
        policy: the GR-1 policy (a ``use_tracks=False`` policy ignores ``tracks``).
        backend: the environment (:func:`integrations.gr1.eval_backends.make_backend`).
        tracks: predictor spec for :func:`arfm.predictors.build_predictor`.
        num_chains: chains of 5 instructions (1000 = full protocol).
        seed: chain sampling and stochastic predictors.
        max_steps: control steps per subtask (CALVIN: 360).
        label: table row name (default: ``GR-1 + tracks:<spec>``).
        device: where the policy runs.
        progress: a JSON-lines file that gets one line per finished chain (its tasks and how many
            were completed), so a long run's partial outcome is on disk before the end; it is
            started afresh.
    """
    import torch
    from tqdm import tqdm

    from arfm.predictors import build_predictor
    from integrations.gr1.policy_runner import GR1Runner, OnlineTrackConditioner

    if num_chains < 1 or max_steps < 1:
        raise ValueError(f"num_chains and max_steps must be >= 1, got {num_chains}, {max_steps}")
    predictor = build_predictor(tracks)
    torch.manual_seed(seed)  # stochastic predictors draw from the global generator
    conditioner = None
    if policy.config.use_tracks:
        conditioner = OnlineTrackConditioner(predictor, policy.config.track_len, backend.frame_size, seed=seed)
    runner = GR1Runner(policy, device)
    chains = backend.sample_chains(num_chains, seed)
    completed, records = [], []
    if progress is not None:
        Path(progress).parent.mkdir(parents=True, exist_ok=True)
        Path(progress).write_text("")
    bar = tqdm(chains, desc=f"CALVIN chains ({tracks})")
    for chain in bar:
        n = run_chain(runner, backend, chain, conditioner, max_steps)
        completed.append(n)
        records.append({"tasks": list(chain.tasks), "completed": n})
        if progress is not None:
            with open(progress, "a") as f:  # appended line by line: a partial file is still valid JSON lines
                f.write(json.dumps(records[-1]) + "\n")
        bar.set_postfix(avg_len=f"{np.mean(completed):.2f}")
    rates, avg = summarize(completed)
    return EvalResult(label or f"GR-1 + tracks:{tracks}", tracks, len(chains), rates, avg, records)


def format_table(results: list[EvalResult]) -> str:
    """Markdown table in the layout of the paper's Table 3."""
    lines = ["| Method | Tracks | Chains | 1 | 2 | 3 | 4 | 5 | Avg. Len. |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rates = " | ".join(f"{x:.3f}" for x in r.success_rates)
        lines.append(f"| {r.label} | {r.tracks} | {r.num_chains} | {rates} | {r.avg_len:.2f} |")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(out: str | Path, result: EvalResult) -> None:
    """``out/results.json`` (everything) and ``out/results.md`` (the table), each atomically."""
    out = Path(out)
    _write_atomic(out / "results.json", json.dumps(dataclasses.asdict(result), indent=2))
    _write_atomic(out / "results.md", format_table([result]) + "\n")


def load_result(path: str | Path) -> EvalResult:
    """Read a ``results.json`` written by :func:`write_results`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation result not found: {path}")
    return EvalResult(**json.loads(path.read_text()))


@dataclass
class EvalArgs:
    """Command-line flags.

    Attributes:
        checkpoint: GR-1 checkpoint folder (``config.json`` + ``model.safetensors``).
        tracks: predictor spec (``none``, ``gt``, ``no-movement``, ``arfm:<ckpt>``, ...).
        num_chains: chains of 5 instructions (1000 = CALVIN's full protocol).
        max_steps: control steps per subtask (CALVIN: 360; lower only for smoke tests).
        env: ``embedded`` (pybullet tabletop) or ``calvin`` (the real ``calvin_env``).
        calvin_dataset: the real CALVIN split folder (``env=calvin`` only).
        task_set: the embedded env's tasks: ``classic`` (default: chains sampled from ``seed``) or
            ``calvin`` (CALVIN's 34 tasks on the tabletop with its plank and open drawer, and CALVIN's
            official chains, the first ``num_chains``, with its instructions; ignored by ``env=calvin``).
        ground_truth_mode: what the ``gt`` row's future is in closed loop (embedded env,
            :mod:`integrations.gr1.sim.oracle`): ``from_state`` (the expert continued from the current
            state at every step) or ``from_start`` (the expert's run from the subtask start, by step).
        seed: chain sampling seed.
        out: folder for results.json / results.md (``None``: print only).
        label: row name in the table.
        device: torch device of the policy.
        table: instead of evaluating, print one table from these results.json files.
    """

    checkpoint: str | None = None
    tracks: str = "none"
    num_chains: int = 1000
    max_steps: int = MAX_STEPS_PER_SUBTASK
    env: Literal["embedded", "calvin"] = "embedded"
    calvin_dataset: str | None = None
    task_set: Literal["classic", "calvin"] = "classic"
    ground_truth_mode: Literal["from_state", "from_start"] = "from_state"
    seed: int = 0
    out: str | None = None
    label: str | None = None
    device: str = "cpu"
    table: list[str] = field(default_factory=list)


def main(args: EvalArgs) -> str:
    """Evaluate (or merge tables); prints and returns the markdown table."""
    if args.table:
        text = format_table([load_result(p) for p in args.table])
        print(text)
        return text
    if args.checkpoint is None:
        raise ValueError("--checkpoint is required unless --table is given")
    check_backend(args.env, args.calvin_dataset)  # a missing calvin_env or dataset fails before anything is loaded
    from integrations.gr1.modeling_gr1 import GR1Policy

    policy = GR1Policy.from_pretrained(args.checkpoint, device=args.device)
    backend = make_backend(args.env, dataset=args.calvin_dataset, seed=args.seed, task_set=args.task_set,
                           ground_truth_mode=args.ground_truth_mode)
    try:
        result = evaluate(policy, backend, args.tracks, args.num_chains, args.seed, args.max_steps, args.label, args.device)
    finally:
        backend.close()
    if args.out is not None:
        write_results(args.out, result)
    text = format_table([result])
    print(text)
    return text


if __name__ == "__main__":
    import tyro

    from arfm.errors import run_cli

    run_cli(lambda argv: main(tyro.cli(EvalArgs, args=argv)), "gr1 evaluate")
