"""The Table 3 analogue's settings: one dataclass per stage (demonstrations, ARFM, GR-1,
evaluation) and the whole experiment (:class:`Table3Config`), read from a JSON config
(``experiments/configs/table3*.json``) by :mod:`experiments.table3`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from stages import load_config, require_positive, slug

PLAIN_ROW = "GR-1 (trained without tracks)"


@dataclass
class DemoSpec:
    """Expert demonstrations (``integrations.gr1.sim.generate``).

    Attributes:
        episodes: continuous episodes, each a chain of ``tasks_per_episode`` tasks.
        tasks_per_episode: tasks per episode (one language annotation each).
        num_points: ground-truth tracks per task segment.
        seed: scenes, chains and track points.
        movement_weighted: track points favour the bodies expected to move (the arm's hand and
            forearm; ``integrations.gr1.sim.tracks.movement_prior``), as the evaluation's query
            points do; ``False``: the earlier sampling (mostly static points).
        heldout_episodes: episodes of other scenes (seed ``seed + 1``) for the policies' held-out
            action error (:mod:`integrations.gr1.diagnostics`); 0: measure on the training demos.
        task_set: ``"classic"`` (default) or ``"calvin"`` (CALVIN's 34 tasks on the tabletop with its
            plank and open drawer; ``integrations.gr1.sim.generate --task-set``).
    """

    episodes: int = 30
    tasks_per_episode: int = 5
    num_points: int = 64
    seed: int = 0
    movement_weighted: bool = True
    heldout_episodes: int = 0
    task_set: str = "classic"

    def __post_init__(self) -> None:
        if self.task_set not in ("classic", "calvin"):
            raise ValueError(f"invalid DemoSpec field 'task_set': 'classic' or 'calvin', got {self.task_set!r}")
        require_positive(self, "episodes", "tasks_per_episode", "num_points")
        if self.heldout_episodes < 0:
            raise ValueError(f"invalid DemoSpec field 'heldout_episodes': must be >= 0, got {self.heldout_episodes}")

    def heldout(self) -> "DemoSpec":
        """The held-out demonstrations' spec: other scenes and chains (seed + 1)."""
        return dataclasses.replace(self, episodes=self.heldout_episodes, seed=self.seed + 1, heldout_episodes=0)


@dataclass
class ArfmSpec:
    """The tiny ARFM track predictor trained on the demonstrations' static camera.

    Attributes:
        labels: ``"sim"`` (exact simulator tracks) or ``"lk"`` (``arfm label --format calvin``).
        steps, batch_size, seed: optimisation.
        horizon: future steps per training window (GR-1 needs 15 after the current position).
        num_points: tracks per training window.
        checkpoint: an ARFM checkpoint trained elsewhere (e.g. ``checkpoints/tiny-sim``): used
            for ``{ckpt:arfm}`` instead of training one here (the other fields are then ignored).
    """

    labels: str = "sim"
    steps: int = 300
    horizon: int = 15
    num_points: int = 64
    batch_size: int = 8
    seed: int = 0
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.labels not in ("sim", "lk"):
            raise ValueError(f"invalid ArfmSpec field 'labels': 'sim' or 'lk', got {self.labels!r}")
        require_positive(self, "steps", "horizon", "num_points", "batch_size")


@dataclass
class Gr1Spec:
    """GR-1 training, identical for every seed.

    Attributes:
        steps, batch_size, warmup_steps: optimisation (AdamW 9e-4 as published).
        max_points: tracks per frame given to the track encoder.
        seeds: one GR-1 run per seed (model init and batch order).
        plain_baseline: also train a GR-1 without the track token per seed (same budget).
        track_dropout: probability of training a sample with the "no tracks" token (``None``:
            the preset's 0.1).
        diagnostic_windows: windows of the track-sensitivity check run on every trained seed
            (:mod:`integrations.gr1.diagnostics`; 0 = skip).
        pretrain_track_encoder_steps: steps of pre-training the track encoder alone on the
            demonstrations' ground-truth tracks (:mod:`integrations.gr1.pretrain_tracks`, once, shared
            by every seed) before GR-1 training starts from it; 0: trained jointly from scratch.
        gripper_loss_weight: weight of the gripper BCE (``None``: the preset's 1, GR-1's).
    """

    steps: int = 400
    batch_size: int = 16
    warmup_steps: int = 40
    max_points: int = 64
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    plain_baseline: bool = False
    track_dropout: float | None = None
    diagnostic_windows: int = 64
    pretrain_track_encoder_steps: int = 0
    gripper_loss_weight: float | None = None

    def __post_init__(self) -> None:
        require_positive(self, "steps", "batch_size", "max_points")
        if self.track_dropout is not None and not 0.0 <= self.track_dropout <= 1.0:
            raise ValueError(f"invalid Gr1Spec field 'track_dropout': must be in [0, 1], got {self.track_dropout}")
        if self.diagnostic_windows < 0 or self.pretrain_track_encoder_steps < 0:
            raise ValueError("invalid Gr1Spec field 'diagnostic_windows'/'pretrain_track_encoder_steps': must be >= 0, "
                             f"got {self.diagnostic_windows}, {self.pretrain_track_encoder_steps}")
        if self.gripper_loss_weight is not None and self.gripper_loss_weight <= 0:
            raise ValueError(f"invalid Gr1Spec field 'gripper_loss_weight': must be > 0, got {self.gripper_loss_weight}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"invalid Gr1Spec field 'seeds': need distinct seeds, got {self.seeds}")


@dataclass
class EvalSpec:
    """The long-horizon protocol.

    Attributes:
        num_chains: chains of 5 instructions (1000 = CALVIN's full protocol).
        max_steps: control steps per subtask (CALVIN: 360).
        seed: chain sampling (the same chains for every row and GR-1 seed); seeds the env.
        env: ``embedded`` (pybullet tabletop) or ``calvin`` (the real ``calvin_env``: CALVIN's
            official chains, their first ``num_chains``).
        calvin_dataset: the CALVIN split root (``env = "calvin"``): GR-1 and ARFM train on its
            ``training/`` (tracks from ``arfm label --format calvin``), the env comes from its ``validation/``.
        ground_truth_mode: how the embedded env defines the ``gt`` row's future in closed loop
            (:mod:`integrations.gr1.sim.oracle`): ``"from_state"`` (the expert continued from the
            current state) or ``"from_start"`` (the expert's run from the subtask start, by step).
        task_set: the embedded env's tasks: ``"classic"`` (default, sampled chains) or ``"calvin"``
            (CALVIN's official chains and 34 tasks on the tabletop; ignored by ``env = "calvin"``).
    """

    num_chains: int = 10
    max_steps: int = 360
    seed: int = 0
    env: str = "embedded"
    calvin_dataset: str | None = None
    ground_truth_mode: str = "from_state"
    task_set: str = "classic"

    def __post_init__(self) -> None:
        if self.task_set not in ("classic", "calvin"):
            raise ValueError(f"invalid EvalSpec field 'task_set': 'classic' or 'calvin', got {self.task_set!r}")
        if self.ground_truth_mode not in ("from_state", "from_start"):
            raise ValueError(f"invalid EvalSpec field 'ground_truth_mode': 'from_state' or 'from_start', got {self.ground_truth_mode!r}")
        if self.env not in ("embedded", "calvin"):
            raise ValueError(f"invalid EvalSpec field 'env': 'embedded' or 'calvin', got {self.env!r}")
        if self.env == "calvin" and not self.calvin_dataset:
            raise ValueError("invalid EvalSpec field 'calvin_dataset': required with env 'calvin'")
        if self.num_chains < 1 or self.max_steps < 1:
            raise ValueError(f"invalid EvalSpec field 'num_chains'/'max_steps': both >= 1, got {self.num_chains}, {self.max_steps}")


@dataclass
class Table3Config:
    """The whole experiment.

    Attributes:
        title: heading of the table.
        rows: ``{row label: track predictor spec}``; ``{ckpt:arfm}`` is the ARFM run's checkpoint.
        demos, arfm, gr1, eval: the stages.
        out: run folder (demonstrations, models, evaluations, the table).
    """

    title: str = "Table 3 analogue: GR-1 (tiny) on the embedded CALVIN-like tabletop"
    rows: dict[str, str] = field(default_factory=lambda: {
        "GR-1, no tracks": "none", "GR-1 + no-movement tracks": "no-movement",
        "GR-1 + ARFM tracks (ours)": "arfm:{ckpt:arfm}", "GR-1 + ground-truth tracks (oracle)": "gt"})
    demos: DemoSpec = field(default_factory=DemoSpec)
    arfm: ArfmSpec = field(default_factory=ArfmSpec)
    gr1: Gr1Spec = field(default_factory=Gr1Spec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    out: str = "runs/experiments/table3"

    def __post_init__(self) -> None:
        if not self.rows:
            raise ValueError("invalid Table3Config field 'rows': a table needs at least one row")
        if PLAIN_ROW in self.rows:
            raise ValueError(f"invalid Table3Config field 'rows': {PLAIN_ROW!r} is reserved for gr1.plain_baseline")
        slugs = [slug(label) for label in self.rows]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"invalid Table3Config field 'rows': labels must differ in letters/digits, got {list(self.rows)}")

    @classmethod
    def from_json(cls, path: str | Path) -> "Table3Config":
        """Read a config; unknown keys (top level or in a stage) are an error naming them."""
        return load_config(cls, path, {"demos": DemoSpec, "arfm": ArfmSpec, "gr1": Gr1Spec, "eval": EvalSpec}, "table 3")
