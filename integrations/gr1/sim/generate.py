"""Generate expert demonstrations in CALVIN's format with ground-truth track sidecars (paper §4.4).

    python -m integrations.gr1.sim.generate --out data/tabletop/training --episodes 10 --seed 0
    python -m integrations.gr1.sim.generate --out data/tabletop_calvin/training --task-set calvin

Each episode starts from a seeded scene and runs the scripted expert through a chain of
``--tasks-per-episode`` tasks sampled like the long-horizon protocol, recorded as one
continuous CALVIN episode with one language annotation (and one track sidecar) per task.
A task the expert fails ends its episode early; only confirmed tasks are written.
``--task-set calvin`` records CALVIN's 34 tasks (with its instructions) in the scene with the
cabinet plank and the open drawer, from CALVIN-style start states
(:func:`integrations.gr1.sim.calvin_task_set.sample_calvin_chains`); the default (``classic``)
generates exactly what it did before.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from integrations.gr1.sim.calvin_format import CalvinWriter
from integrations.gr1.sim.calvin_task_set import sample_calvin_chains
from integrations.gr1.sim.expert import collect_demos
from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv
from integrations.gr1.sim.tasks import sample_task_chains


@dataclass
class GenerateConfig:
    """Options of :func:`generate`.

    Attributes:
        out: output split directory.
        episodes: number of continuous episodes (>= 1).
        seed: seed of the scenes, task chains and track points.
        tasks_per_episode: tasks chained in each episode (CALVIN's protocol chains 5).
        num_points: ground-truth tracks per task segment (0 disables tracks).
        compress: compress the frame files.
        movement_weighted: sample track points favouring the bodies expected to move
            (:func:`integrations.gr1.sim.tracks.movement_prior`, as the evaluation does);
            ``False``: the earlier sampling (half over all movable bodies evenly, half uniform).
        task_set: ``"classic"`` (default) or ``"calvin"`` (CALVIN's 34 tasks, see the module docstring).
    """

    out: Path
    episodes: int = 10
    seed: int = 0
    tasks_per_episode: int = 5
    num_points: int = 256
    compress: bool = True
    movement_weighted: bool = True
    task_set: str = "classic"

    @classmethod
    def tiny(cls, out: str | Path, seed: int = 0) -> "GenerateConfig":
        """A few seconds of data for tests: 2 episodes of 1 task, 32 tracks per segment."""
        return cls(Path(out), episodes=2, seed=seed, tasks_per_episode=1, num_points=32)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.task_set not in ("classic", "calvin"):
            raise ValueError(f"task_set must be 'classic' or 'calvin', got {self.task_set!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.tasks_per_episode < 1:
            raise ValueError(f"tasks_per_episode must be >= 1, got {self.tasks_per_episode}")
        if self.num_points < 0:
            raise ValueError(f"num_points must be >= 0, got {self.num_points}")


def generate(cfg: GenerateConfig) -> dict[str, float]:
    """Write the dataset; returns counts and timing (also saved as ``generate_stats.json``)."""
    t0 = time.perf_counter()
    if cfg.task_set == "calvin":
        chains = sample_calvin_chains(cfg.episodes, cfg.seed, cfg.tasks_per_episode)
    else:
        chains = sample_task_chains(cfg.episodes, cfg.seed, cfg.tasks_per_episode)
    writer = CalvinWriter(cfg.out, compress=cfg.compress)
    attempted = completed = 0
    env = CalvinTabletopEnv(use_relative_actions=True, seed=cfg.seed, task_set=cfg.task_set)
    try:
        bar = tqdm(chains, desc="expert episodes", unit="ep")
        for i, chain in enumerate(bar):
            env.reset(scene_obs=chain.scene_obs)
            attempted += len(chain.tasks)
            demos = collect_demos(env, chain.tasks, num_points=max(cfg.num_points, 1), seed=cfg.seed * 100003 + i,
                                  record_tracks=cfg.num_points > 0, movement_weighted=cfg.movement_weighted)
            for demo in demos:
                ids = [writer.write_frame(frame) for frame in demo.frames]
                size = (demo.frames[0]["rgb_static"].shape[1], demo.frames[0]["rgb_static"].shape[0])
                writer.annotate(ids[0], ids[-1], demo.task, demo.instruction, demo.tracks, demo.visible, size)
                completed += 1
            writer.end_episode()
            bar.set_postfix(tasks=f"{completed}/{attempted}", frames=writer.next_index)
    finally:
        env.close()
        writer.close()
    stats = {"episodes": len(writer.episodes), "frames": writer.next_index, "tasks_attempted": attempted,
             "tasks_completed": completed, "seconds": round(time.perf_counter() - t0, 2)}
    (cfg.out / "generate_stats.json").write_text(json.dumps({"config": {k: str(v) for k, v in asdict(cfg).items()}, **stats},
                                                            indent=2))
    return stats


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output split directory")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks-per-episode", type=int, default=5)
    parser.add_argument("--num-points", type=int, default=256, help="tracks per task segment (0: no tracks)")
    parser.add_argument("--no-compress", action="store_true", help="write uncompressed frame files")
    parser.add_argument("--even-points", action="store_true",
                        help="earlier track points: half split evenly over the movable bodies, half uniform "
                             "(default: favour the bodies expected to move, as the evaluation does)")
    parser.add_argument("--task-set", choices=("classic", "calvin"), default="classic",
                        help="calvin: CALVIN's 34 tasks and instructions in the scene with its cabinet plank and open drawer")
    args = parser.parse_args(argv)
    stats = generate(GenerateConfig(args.out, args.episodes, args.seed, args.tasks_per_episode, args.num_points,
                                    not args.no_compress, not args.even_points, args.task_set))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
