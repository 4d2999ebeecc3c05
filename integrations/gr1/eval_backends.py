"""Environments for the CALVIN long-horizon evaluation (ARFM paper §4.4, Table 3).

Two backends behind one small interface (:class:`EvalBackend`):

- :class:`EmbeddedBackend` (default): the pybullet tabletop of :mod:`integrations.gr1.sim`,
  its task oracle and chains; query points are 3-D points attached to the scene's surfaces
  (sampled at each subtask start, as in the training sidecars) and projected exactly; ground
  truth for the ``gt`` oracle comes from the scripted expert (see :meth:`EmbeddedBackend.ground_truth`).
- :class:`RealCalvinBackend`: the real ``calvin_env`` with CALVIN's task oracle, validation
  annotations and evaluation sequences. CALVIN is not on the package registries: install it
  from its repository (``git clone --recurse-submodules https://github.com/mees/calvin.git &&
  cd calvin && sh install.sh``, which installs ``calvin_env`` and ``calvin_agent``); the
  unrelated PyPI package ``calvin`` must not be installed. Imports are lazy. Query points are a
  regular grid over the static image; no ground truth is available there.
"""

from __future__ import annotations

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


class _StopLookahead(Exception):
    """Raised inside the expert look-ahead once enough steps are recorded."""


class EmbeddedBackend(_CalvinApiBackend):
    """The embedded pybullet tabletop.

    Args:
        seed: seeds the env and the track-point sampling.
        num_points: query points per subtask.
        max_lookahead: longest expert look-ahead for ground truth (CALVIN: 360 steps).
    """

    frame_size = 200

    def __init__(self, seed: int = 0, num_points: int = 64, max_lookahead: int = 360) -> None:
        from integrations.gr1.sim import CalvinTabletopEnv

        self.env = CalvinTabletopEnv(use_relative_actions=True, seed=seed)
        self.frame_size = int(self.env.static_cam.width)
        self.num_points, self.max_lookahead = num_points, max_lookahead
        self.rng = np.random.default_rng(seed)
        self.points = None
        self.task: str | None = None
        self._expert_pixels: np.ndarray | None = None

    def sample_chains(self, num_chains: int, seed: int) -> list[ChainSpec]:
        from integrations.gr1.sim import sample_task_chains

        return [ChainSpec(tuple(c.tasks), tuple(c.instructions), np.asarray(c.scene_obs)) for c in sample_task_chains(num_chains, seed)]

    def completed(self, task: str, start_info: dict[str, Any], info: dict[str, Any]) -> bool:
        from integrations.gr1.sim import get_task_info

        return task in get_task_info(start_info, info)

    def begin_subtask(self, task: str) -> None:
        """New query points on what the camera sees now (like each training segment)."""
        from integrations.gr1.sim.tracks import sample_points

        self.task = task
        self.points = sample_points(self.env.cid, self.env.static_cam, self.num_points, self.rng, self.env.moving_objects())
        self._expert_pixels = None

    def _project(self) -> tuple[np.ndarray, np.ndarray]:
        if self.points is None:
            raise RuntimeError("EmbeddedBackend: call begin_subtask() before asking for points")
        return self.env.static_cam.project(self.points.world(self.env.cid))

    def query_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Current pixels ``(N, 2)`` and visibility ``(N,)`` of the subtask's points."""
        from integrations.gr1.sim.tracks import visibility

        pixels, depth = self._project()
        return pixels.astype(np.float32), visibility(pixels, depth, self.env.last_depth_static, self.env.static_cam)

    def expert_lookahead(self, max_steps: int) -> np.ndarray:
        """Pixels ``(N, S + 1, 2)`` of the points while the scripted expert performs the current
        subtask from the current state, for at most ``max_steps`` steps; the simulator is then put
        back (pybullet state, gripper command, LED latch; pybullet does not restore its solver warm start,
        so later states differ by ~1e-8 m). Physics only: nothing is rendered."""
        import pybullet as pb

        from integrations.gr1.sim import ScriptedExpert

        env, scene = self.env, self.env.scene
        pixels = [self._project()[0]]
        state = pb.saveState(physicsClientId=env.cid)
        saved = (env._gripper_action, scene.led_on, scene._button_was_pressed)
        true_step = env.step

        def step(action: np.ndarray):
            out = true_step(action)
            pixels.append(self._project()[0])
            if len(pixels) > max_steps:
                raise _StopLookahead
            return out

        env.get_obs = lambda: {"robot_obs": env.get_robot_obs()}  # instance attributes shadow the methods
        env.step = step
        try:
            ScriptedExpert(env).run(self.task, {"robot_obs": env.get_robot_obs()})
        except (_StopLookahead, RuntimeError):  # enough steps, or the task cannot start from here
            pass
        finally:
            del env.get_obs, env.step
            pb.restoreState(state, physicsClientId=env.cid)
            pb.removeState(state, physicsClientId=env.cid)
            env._gripper_action, scene.led_on, scene._button_was_pressed = saved
            scene.update_lights()
        return np.stack(pixels, axis=1).astype(np.float32)

    def ground_truth(self, step: int) -> FutureFn:
        """Ground truth at step ``step`` of the subtask: the current positions plus the expert's
        displacements from its step ``step`` on (its trajectory is computed once per subtask,
        on first use, and held at its end)."""

        def future(horizon: int) -> tuple[np.ndarray, np.ndarray]:
            if self._expert_pixels is None:
                self._expert_pixels = self.expert_lookahead(self.max_lookahead)
            path = self._expert_pixels
            idx = np.minimum(np.arange(step, step + horizon + 1), path.shape[1] - 1)
            moves = path[:, idx[1:]] - path[:, idx[:1]]  # (N, horizon, 2)
            now, visible = self.query_points()
            return now[:, None] + moves, np.repeat(visible[:, None], horizon, axis=1)

        return future

    def close(self) -> None:
        self.env.close()


class RealCalvinBackend(_CalvinApiBackend):
    """The real CALVIN environment (``calvin_env`` + ``calvin_agent`` from the CALVIN repository).

    Args:
        dataset: a CALVIN split root (e.g. ``task_ABC_D``); its ``validation/`` folder configures the env.
        grid: query points per image side.
    """

    frame_size = 200

    def __init__(self, dataset: str | None, grid: int = 8) -> None:
        try:
            import calvin_agent
            import hydra
            from calvin_env.envs.play_table_env import get_env
            from omegaconf import OmegaConf
        except ImportError as err:
            raise ImportError(
                f"the real CALVIN environment is not installed ({err}). Install it from its repository: "
                "git clone --recurse-submodules https://github.com/mees/calvin.git && cd calvin && sh install.sh "
                "(the PyPI package named 'calvin' is unrelated and must not be installed)"
            ) from err
        if dataset is None or not (Path(dataset) / "validation").is_dir():
            raise FileNotFoundError(f"--calvin-dataset must be a CALVIN split with a validation/ folder, got {dataset}")
        conf = Path(calvin_agent.__file__).resolve().parents[1] / "conf"
        self.env = get_env(Path(dataset) / "validation", show_gui=False)
        self.oracle = hydra.utils.instantiate(OmegaConf.load(conf / "callbacks/rollout/tasks/new_playtable_tasks.yaml"))
        self.annotations = OmegaConf.load(conf / "annotations/new_playtable_validation.yaml")
        self.points = grid_points(self.frame_size, grid)

    def sample_chains(self, num_chains: int, seed: int) -> list[ChainSpec]:
        from calvin_agent.evaluation.multistep_sequences import get_sequences
        from calvin_agent.evaluation.utils import get_env_state_for_initial_condition

        chains = []
        for initial, sequence in get_sequences(num_chains):
            robot_obs, scene_obs = get_env_state_for_initial_condition(initial)
            chains.append(ChainSpec(tuple(sequence), tuple(self.annotations[t][0] for t in sequence), scene_obs, robot_obs))
        return chains

    def completed(self, task: str, start_info: dict[str, Any], info: dict[str, Any]) -> bool:
        return len(self.oracle.get_task_info_for_set(start_info, info, {task})) > 0

    def begin_subtask(self, task: str) -> None:
        return None

    def query_points(self) -> tuple[np.ndarray, np.ndarray]:
        return self.points, np.ones(len(self.points), dtype=bool)

    def ground_truth(self, step: int) -> None:
        return None  # the real env exposes no tracked points

    def close(self) -> None:
        self.env.close()


def make_backend(kind: str, dataset: str | None = None, seed: int = 0) -> EvalBackend:
    """``"embedded"`` (default tabletop) or ``"calvin"`` (real CALVIN, needs ``dataset``)."""
    if kind == "embedded":
        return EmbeddedBackend(seed=seed)
    if kind == "calvin":
        return RealCalvinBackend(dataset)
    raise ValueError(f"unknown evaluation env {kind!r}; use 'embedded' or 'calvin'")
