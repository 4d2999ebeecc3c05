"""Environments for the CALVIN long-horizon evaluation (ARFM paper §4.4, Table 3).

Two backends behind one small interface (:class:`EvalBackend`):

- :class:`EmbeddedBackend` (default): the pybullet tabletop of :mod:`integrations.gr1.sim` and
  its chains, judged by CALVIN's task oracle (as the real env); with ``task_set="calvin"`` the
  tabletop hosts CALVIN's 34 tasks and runs CALVIN's official chains and instructions; query points are 3-D points
  attached to the scene's surfaces (sampled at each subtask start, as in the training sidecars)
  and projected exactly; ground
  truth for the ``gt`` oracle comes from the scripted expert (see :meth:`EmbeddedBackend.ground_truth`).
- :class:`RealCalvinBackend`: the real ``calvin_env`` (and only it: nothing from ``calvin_agent``).
  The official 1000 chains, their start states, the instructions and the 34 task oracles come
  from :mod:`integrations.gr1.calvin_chains` and :mod:`integrations.gr1.calvin_tasks`. Install
  ``calvin_env`` from its repository (:data:`CALVIN_ENV_INSTALL`); the unrelated PyPI package
  ``calvin`` must not be installed. :func:`check_backend` reports a missing install or dataset
  before anything is built. Query points are a regular grid over the static image; no ground
  truth is available there.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

FutureFn = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ChainSpec:
    """One evaluation chain: the start state and the subtasks with their instructions."""

    tasks: tuple[str, ...]
    instructions: tuple[str, ...]
    scene_obs: np.ndarray
    robot_obs: np.ndarray | None = None


class EvalBackend(Protocol):
    """What :func:`integrations.gr1.evaluate.evaluate` needs from an environment."""

    frame_size: int

    def sample_chains(self, num_chains: int, seed: int) -> list[ChainSpec]: ...
    def reset(self, chain: ChainSpec) -> dict[str, Any]: ...
    def step(self, action: np.ndarray) -> dict[str, Any]: ...
    def info(self) -> dict[str, Any]: ...
    def completed(self, task: str, start_info: dict[str, Any], info: dict[str, Any]) -> bool: ...
    def begin_subtask(self, task: str) -> None: ...
    def query_points(self) -> tuple[np.ndarray, np.ndarray]: ...
    def ground_truth(self, step: int) -> FutureFn | None: ...
    def close(self) -> None: ...


def grid_points(frame_size: int, per_side: int) -> np.ndarray:
    """``(per_side**2, 2)`` pixel centres of a regular grid over a square frame."""
    c = (np.arange(per_side) + 0.5) * (frame_size / per_side)
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)


class _CalvinApiBackend:
    """What every backend over a CALVIN-API env (``reset``/``step``/``get_info``) shares."""

    env: Any

    def reset(self, chain: ChainSpec) -> dict[str, Any]:
        return self.env.reset(robot_obs=chain.robot_obs, scene_obs=chain.scene_obs)

    def step(self, action: np.ndarray) -> dict[str, Any]:
        return self.env.step(action)[0]

    def info(self) -> dict[str, Any]:
        return self.env.get_info()


class EmbeddedBackend(_CalvinApiBackend):
    """The embedded pybullet tabletop.

    Args:
        seed: seeds the env and the track-point sampling.
        num_points: query points per subtask.
        max_lookahead: longest expert look-ahead of the ``"from_start"`` ground truth (CALVIN: 360 steps).
        ground_truth_mode: how the ``gt`` row's future is defined in closed loop
            (:mod:`integrations.gr1.sim.oracle`): ``"from_state"`` (default: the expert's plan
            continued from the current state at every step) or ``"from_start"`` (the expert's run
            from the subtask's start, indexed by step; the definition before session 4).
        oracle: ``"calvin"`` (default: CALVIN's own task oracle, :class:`integrations.gr1.calvin_tasks.Tasks`,
            on the env's CALVIN-layout info, as for the real env) or ``"embedded"`` (the simulator's
            looser checks, :func:`integrations.gr1.sim.tasks.get_task_info`).
        all_tasks: draw chains from all 25 embedded tasks (with CALVIN's six rotations and
            ``unstack_block``) instead of the 18 of :data:`integrations.gr1.sim.tasks.CLASSIC_TASKS`
            (``task_set="classic"`` only).
        task_set: ``"classic"`` (default: the scene and sampled chains as before) or ``"calvin"``:
            the tabletop with CALVIN's cabinet plank and open drawer and its 34 tasks
            (:mod:`integrations.gr1.sim.calvin_task_set`), and :meth:`sample_chains` returns CALVIN's
            official chains realised in this scene. Needs ``oracle="calvin"``.
    """

    frame_size = 200

    def __init__(self, seed: int = 0, num_points: int = 64, max_lookahead: int = 360, oracle: str = "calvin",
                 all_tasks: bool = False, ground_truth_mode: str = "from_state", task_set: str = "classic") -> None:
        from integrations.gr1.calvin_tasks import Tasks
        from integrations.gr1.sim import CalvinTabletopEnv
        from integrations.gr1.sim.oracle import GROUND_TRUTH_MODES

        if ground_truth_mode not in GROUND_TRUTH_MODES:
            raise ValueError(f"EmbeddedBackend ground_truth_mode must be one of {GROUND_TRUTH_MODES}, got {ground_truth_mode!r}")
        self.ground_truth_mode = ground_truth_mode
        if oracle not in ("calvin", "embedded"):
            raise ValueError(f"EmbeddedBackend oracle must be 'calvin' or 'embedded', got {oracle!r}")
        if task_set == "calvin" and oracle != "calvin":
            raise ValueError("EmbeddedBackend task_set='calvin' is judged by CALVIN's oracle: use oracle='calvin'")
        self.oracle = Tasks.from_yaml() if oracle == "calvin" else None
        self.all_tasks = bool(all_tasks)
        self.env = CalvinTabletopEnv(use_relative_actions=True, seed=seed, task_set=task_set)  # checks task_set
        self.task_set = task_set
        self.frame_size = int(self.env.static_cam.width)
        self.num_points, self.max_lookahead = num_points, max_lookahead
        self.rng = np.random.default_rng(seed)
        self.points = None
        self.task: str | None = None
        self._future = None  # the subtask's ground-truth source, made on first use

    def sample_chains(self, num_chains: int, seed: int) -> list[ChainSpec]:
        """``task_set="classic"``: ``num_chains`` chains sampled from ``seed``. ``task_set="calvin"``:
        the first ``num_chains`` of CALVIN's official chains (``seed`` unused), their symbolic start
        states realised in this scene (:func:`integrations.gr1.sim.calvin_fixtures.realise_initial_state`;
        the arm starts in its neutral pose), with CALVIN's instructions."""
        from integrations.gr1.sim.tasks import CLASSIC_TASKS, TASKS, sample_task_chains

        if self.task_set == "calvin":
            from integrations.gr1.calvin_chains import load_chains, validation_instructions
            from integrations.gr1.sim.calvin_fixtures import realise_initial_state

            text = validation_instructions()
            return [ChainSpec(c.subtasks, tuple(text[t] for t in c.subtasks), realise_initial_state(c.initial_state))
                    for c in load_chains(num_chains)]
        chains = sample_task_chains(num_chains, seed, tasks=TASKS if self.all_tasks else CLASSIC_TASKS)
        return [ChainSpec(tuple(c.tasks), tuple(c.instructions), np.asarray(c.scene_obs)) for c in chains]

    def completed(self, task: str, start_info: dict[str, Any], info: dict[str, Any]) -> bool:
        from integrations.gr1.sim import get_task_info

        if self.oracle is not None:
            return bool(self.oracle.get_task_info_for_set(start_info, info, {task}))
        return task in get_task_info(start_info, info)

    def begin_subtask(self, task: str) -> None:
        """New query points on what the camera sees now (like each training segment)."""
        from integrations.gr1.sim.tracks import sample_scene_points

        self.task = task
        self.points = sample_scene_points(self.env, self.num_points, self.rng)  # the training sidecars' prior
        self._future = None

    def _project(self) -> tuple[np.ndarray, np.ndarray]:
        if self.points is None:
            raise RuntimeError("EmbeddedBackend: call begin_subtask() before asking for points")
        return self.env.static_cam.project(self.points.world(self.env.cid))

    def query_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Current pixels ``(N, 2)`` and visibility ``(N,)`` of the subtask's points."""
        from integrations.gr1.sim.tracks import visibility

        pixels, depth = self._project()
        return pixels.astype(np.float32), visibility(pixels, depth, self.env.last_depth_static, self.env.static_cam)

    def ground_truth(self, step: int) -> FutureFn:
        """Ground truth at step ``step`` of the subtask: the current positions plus the expert's
        displacements, as :attr:`ground_truth_mode` defines them (:mod:`integrations.gr1.sim.oracle`)."""
        from integrations.gr1.sim.oracle import make_oracle

        def future(horizon: int) -> tuple[np.ndarray, np.ndarray]:
            if self._future is None:  # made at the first step of the subtask: its plan starts there
                self._future = make_oracle(self.ground_truth_mode, self.env, self.task, lambda: self._project()[0], self.max_lookahead)
            moves = self._future.displacements(step, horizon)
            now, visible = self.query_points()
            return now[:, None] + moves, np.repeat(visible[:, None], horizon, axis=1)

        return future

    def close(self) -> None:
        self.env.close()


CALVIN_ENV_INSTALL = (
    "git clone --recurse-submodules https://github.com/mees/calvin_env.git && pip install -e calvin_env/tacto && "
    "pip install -e calvin_env (the PyPI package named 'calvin' is unrelated and must not be installed; "
    "calvin_agent is not needed)"
)


def calvin_validation_dir(dataset: str | Path | None) -> Path:
    """The ``validation/`` folder of a CALVIN split root, checked for the env config it holds.

    Raises:
        FileNotFoundError: no dataset given, or no ``validation/.hydra/merged_config.yaml`` under it.
    """
    if dataset is None:
        raise FileNotFoundError("--calvin-dataset is required with --env calvin (a CALVIN split root such as task_D_D)")
    config = Path(dataset) / "validation" / ".hydra" / "merged_config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"--calvin-dataset must be a CALVIN split root with validation/.hydra/merged_config.yaml, "
                                f"not found: {config}")
    return config.parents[1]


def check_backend(kind: str, dataset: str | Path | None = None) -> None:
    """Fail fast, before any policy, model or env is built, when a backend cannot run here.

    Raises:
        ValueError: unknown ``kind``.
        ImportError: ``calvin_env`` (or hydra/omegaconf) missing, with the install commands.
        FileNotFoundError: the CALVIN dataset is missing or incomplete.
    """
    if kind == "embedded":
        return
    if kind != "calvin":
        raise ValueError(f"unknown evaluation env {kind!r}; use 'embedded' or 'calvin'")
    try:
        import hydra  # noqa: F401
        import omegaconf  # noqa: F401
        from calvin_env.envs import play_table_env  # noqa: F401
    except ImportError as err:
        raise ImportError(f"the real CALVIN environment is not installed ({err}). Install it with: {CALVIN_ENV_INSTALL}") from err
    calvin_validation_dir(dataset)


def _build_calvin_env(validation: Path, seed: int) -> Any:
    """``calvin_env``'s ``get_env`` with the env seed set: instantiate the dataset's env config."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not GlobalHydra.instance().is_initialized():  # as calvin_env's own get_env does
        hydra.initialize(version_base=None, config_path=None)
    conf = OmegaConf.load(validation / ".hydra" / "merged_config.yaml")
    return hydra.utils.instantiate(conf.env, show_gui=False, use_vr=False, use_scene_info=True, seed=int(seed))


class RealCalvinBackend(_CalvinApiBackend):
    """The real CALVIN environment (``calvin_env`` only).

    Args:
        dataset: a CALVIN split root (e.g. ``task_ABC_D``); its ``validation/`` folder configures the env.
        grid: query points per image side.
        seed: the env's random generator (``PlayTableSimEnv(seed=...)``).
    """

    frame_size = 200

    def __init__(self, dataset: str | Path | None, grid: int = 8, seed: int = 0) -> None:
        from integrations.gr1.calvin_chains import validation_instructions
        from integrations.gr1.calvin_tasks import Tasks

        check_backend("calvin", dataset)
        self.seed = int(seed)
        self.oracle = Tasks.from_yaml()
        self.instructions = validation_instructions()
        self.points = grid_points(self.frame_size, grid)
        self.env = _build_calvin_env(calvin_validation_dir(dataset), self.seed)

    def sample_chains(self, num_chains: int, seed: int) -> list[ChainSpec]:
        """The first ``num_chains`` official chains (``seed`` is not used: the list is fixed)."""
        from integrations.gr1.calvin_chains import initial_state_to_obs, load_chains

        chains = []
        for chain in load_chains(num_chains):
            robot_obs, scene_obs = initial_state_to_obs(chain.initial_state)
            chains.append(ChainSpec(chain.subtasks, tuple(self.instructions[t] for t in chain.subtasks), scene_obs, robot_obs))
        return chains

    def completed(self, task: str, start_info: dict[str, Any], info: dict[str, Any]) -> bool:
        return bool(self.oracle.get_task_info_for_set(start_info, info, {task}))

    def begin_subtask(self, task: str) -> None:
        return None

    def query_points(self) -> tuple[np.ndarray, np.ndarray]:
        return self.points, np.ones(len(self.points), dtype=bool)

    def ground_truth(self, step: int) -> None:
        return None  # the real env exposes no tracked points

    def close(self) -> None:
        """Disconnect once, quietly. ``PlayTableSimEnv.close`` prints, and its ``__del__`` calls it
        again, which raises ``pybullet.error: Not connected to physics server``: the instance's
        ``close`` is replaced by a no-op once done (idempotent)."""
        env, self.env = getattr(self, "env", None), None
        if env is None:
            return
        import pybullet

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                env.close()
        except pybullet.error as err:
            if "not connected" not in str(err).lower():
                raise
        finally:
            env.close = lambda: None


def make_backend(kind: str, dataset: str | None = None, seed: int = 0, ground_truth_mode: str = "from_state",
                 task_set: str = "classic") -> EvalBackend:
    """``"embedded"`` (default tabletop) or ``"calvin"`` (real CALVIN, needs ``dataset``); ``seed``
    seeds either env; ``ground_truth_mode`` and ``task_set`` (``"classic"`` or ``"calvin"``: CALVIN's
    34 tasks and official chains on the tabletop) are the embedded env's (:class:`EmbeddedBackend`;
    the real env always runs CALVIN's tasks)."""
    check_backend(kind, dataset)
    if kind == "embedded":
        return EmbeddedBackend(seed=seed, ground_truth_mode=ground_truth_mode, task_set=task_set)
    return RealCalvinBackend(dataset, seed=seed)
