"""Ground-truth future tracks for closed-loop evaluation on the embedded tabletop (Table 3 ``gt`` row).

In training, the conditioning tracks of a frame are the demonstration's own future: what the
points do while the expert carries on *from that frame's state*. In closed loop the state is the
policy's, not the expert's, so "ground truth" has to be defined. Two definitions:

- ``"from_start"`` (:class:`ExpertReplay`): the expert performs the subtask once from the
  subtask's start state; at control step ``k`` the tracks are the current positions plus the
  expert's displacements from its step ``k`` on. Indexed by time, it drifts from the policy's
  state as soon as the policy is slower or off the path, and shows no motion at all once the
  expert's (shorter) run has ended.
- ``"from_state"`` (:class:`ExpertContinuation`, default): the expert's waypoint plan is made
  once at the subtask start; the plan's progress follows the *policy's* state (a waypoint counts
  as passed once the TCP has come within reach of it with the gripper commanded as the waypoint
  wants, or once the TCP is on the way from it to the next one); at every control step the expert then continues the remaining waypoints from the
  current simulator state for the tracks' horizon (physics only, the state put back after), so
  the tracks show what the expert would do from here — the same relation between state and
  future tracks as in the training demonstrations.

Both return pixels of the subtask's query points in the static camera; nothing is rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import pybullet as pb

from integrations.gr1.sim.expert import ScriptedExpert, Waypoint
from integrations.gr1.sim.tabletop_env import wrap_angle

if TYPE_CHECKING:
    from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv

Project = Callable[[], np.ndarray]
"""``() -> (N, 2)`` current pixels of the query points."""

REACH = 0.012
"""A waypoint counts as passed when the TCP came this close (m) or within the waypoint's own tolerance."""
REACH_YAW = 0.08
"""... and the gripper yaw within this many radians of the waypoint's."""


class _Rollback:
    """Runs physics-only expert steps on ``env`` and puts the simulator back afterwards
    (pybullet state, gripper command, LED latch, commanded pose; pybullet does not restore its
    solver warm start, so later states differ by ~1e-8 m)."""

    def __init__(self, env: CalvinTabletopEnv) -> None:
        self.env = env

    def __enter__(self) -> CalvinTabletopEnv:
        env, scene = self.env, self.env.scene
        self._state = pb.saveState(physicsClientId=env.cid)
        self._saved = (env._gripper_action, scene.led_on, scene._button_was_pressed, env.target_pose)
        env.get_obs = lambda: {"robot_obs": env.get_robot_obs()}  # instance attribute: no rendering
        return env

    def __exit__(self, *exc: object) -> None:
        env, scene = self.env, self.env.scene
        del env.get_obs
        pb.restoreState(self._state, physicsClientId=env.cid)
        pb.removeState(self._state, physicsClientId=env.cid)
        env._gripper_action, scene.led_on, scene._button_was_pressed, env.target_pose = self._saved
        scene.update_lights()


def _plan_or_stay(expert: ScriptedExpert, task: str) -> list[Waypoint]:
    """The expert's waypoints for ``task`` from the current state; none (no motion) when the task
    cannot start from here."""
    try:
        return expert.plan(task)
    except RuntimeError:
        return []


def _hold(path: list[np.ndarray], horizon: int) -> np.ndarray:
    """``(N, horizon + 1, 2)`` from a list of ``(N, 2)`` frames, the last one held."""
    path = path + [path[-1]] * (horizon + 1 - len(path))
    return np.stack(path[: horizon + 1], axis=1).astype(np.float32)


class ExpertReplay:
    """``"from_start"``: the expert's run from the subtask's start state, indexed by control step."""

    def __init__(self, env: CalvinTabletopEnv, task: str, project: Project, max_lookahead: int = 360) -> None:
        self.env, self.task, self.project, self.max_lookahead = env, task, project, max_lookahead
        self._path: np.ndarray | None = None

    def _record(self) -> np.ndarray:
        expert, pixels = ScriptedExpert(self.env), [self.project()]
        with _Rollback(self.env):
            expert.follow(_plan_or_stay(expert, self.task), {"robot_obs": self.env.get_robot_obs()}, max_steps=self.max_lookahead,
                          after_step=lambda: pixels.append(self.project()))
        return np.stack(pixels, axis=1).astype(np.float32)

    def displacements(self, step: int, horizon: int) -> np.ndarray:
        """``(N, horizon, 2)`` pixel displacements of the points from control step ``step`` on."""
        if self._path is None:
            self._path = self._record()  # once per subtask, on first use
        idx = np.minimum(np.arange(step, step + horizon + 1), self._path.shape[1] - 1)
        return self._path[:, idx[1:]] - self._path[:, idx[:1]]


class ExpertContinuation:
    """``"from_state"``: the expert's plan, continued from the current state at every step."""

    def __init__(self, env: CalvinTabletopEnv, task: str, project: Project) -> None:
        self.env, self.project = env, project
        self.expert = ScriptedExpert(env)
        self.waypoints = _plan_or_stay(self.expert, task)
        self.next = 0  # first waypoint not yet passed

    def _passed(self, j: int, robot: np.ndarray) -> bool:
        """Waypoint ``j`` reached: TCP within reach, yaw close, gripper commanded as it wants."""
        wp = self.waypoints[j]
        near = np.linalg.norm(wp.pos - robot[:3]) < max(wp.tol, REACH)
        return bool(near and abs(float(wrap_angle(wp.yaw - robot[5]))) < REACH_YAW and np.sign(robot[14]) == np.sign(wp.gripper))

    def _on_way_to(self, j: int, robot: np.ndarray) -> bool:
        """The TCP is on the segment from waypoint ``j - 1`` to ``j`` (within reach), gripper
        commanded as waypoint ``j`` wants: the policy is already travelling to ``j``. Without it a
        policy that comes down to a handle off the expert's approach point (which sits higher, for
        clearance) would be sent back up to that point forever."""
        a, b, p = self.waypoints[j - 1].pos, self.waypoints[j].pos, robot[:3]
        ab, length = b - a, float(np.linalg.norm(b - a))
        if length < REACH:  # a gripper toggle in place: only reaching it counts (``_passed``)
            return False
        t = float(np.clip(np.dot(p - a, ab) / length**2, 0.0, 1.0))
        departed = t * length >= REACH  # still at waypoint j - 1: that one's own test (yaw included) decides
        return bool(departed and np.linalg.norm(a + t * ab - p) < REACH and np.sign(robot[14]) == np.sign(self.waypoints[j].gripper))

    def advance(self) -> int:
        """Move the plan's progress to the furthest waypoint the current state has reached (next:
        the one after it) or is travelling to (next: that one); progress never goes back, and a
        policy that skips a waypoint is not sent back to it. Returns the next waypoint's index."""
        robot = self.env.get_robot_obs()
        for j in range(len(self.waypoints) - 1, self.next - 1, -1):
            if self._passed(j, robot):
                self.next = j + 1
                break
            if j >= max(self.next, 1) and self._on_way_to(j, robot):
                self.next = j
                break
        return self.next

    def displacements(self, step: int, horizon: int) -> np.ndarray:
        """``(N, horizon, 2)``: where the points go while the expert continues from here."""
        del step  # progress follows the state, not the clock
        pixels = [self.project()]
        with _Rollback(self.env):
            self.expert.follow(self.waypoints[self.advance():], {"robot_obs": self.env.get_robot_obs()}, max_steps=horizon,
                               after_step=lambda: pixels.append(self.project()))
        path = _hold(pixels, horizon)
        return path[:, 1:] - path[:, :1]


GROUND_TRUTH_MODES = ("from_state", "from_start")
"""How the ``gt`` row's future can be defined in closed loop (module docstring)."""


def make_oracle(mode: str, env: CalvinTabletopEnv, task: str, project: Project, max_lookahead: int = 360):
    """:class:`ExpertContinuation` (``"from_state"``) or :class:`ExpertReplay` (``"from_start"``,
    looking at most ``max_lookahead`` steps ahead) for the subtask starting now."""
    if mode == "from_state":
        return ExpertContinuation(env, task, project)
    if mode == "from_start":
        return ExpertReplay(env, task, project, max_lookahead)
    raise ValueError(f"unknown ground-truth mode {mode!r}; one of {GROUND_TRUTH_MODES}")
