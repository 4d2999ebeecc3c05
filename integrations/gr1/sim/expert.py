"""Scripted expert for the embedded tabletop: waypoints + IK (paper §4.4, issue 6).

The expert reads the privileged simulator state, turns a task into a few TCP waypoints
(approach from above, descend, close/open the gripper, move the handle or block, retreat)
and follows them in closed loop: each step commands a TCP target at most 1.5 cm / 0.04 rad
from the current TCP. That keeps CALVIN's relative actions (±1 = 2 cm / 0.05 rad) unclipped,
so replaying the recorded ``rel_actions`` reproduces the recorded ``actions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from integrations.gr1.sim.scene import (
    BLOCK_HALF, BUTTON_TOP_Z, BUTTON_XY, DRAWER_GRASP_Z, DRAWER_HANDLE_Y_CLOSED, DRAWER_RANGE, DRAWER_X, SLIDER_GRASP_Z,
    SLIDER_HANDLE_X, SLIDER_RANGE, SWITCH_GRASP_Z, SWITCH_HANDLE_X0, SWITCH_RANGE, SWITCH_Y,
)
from integrations.gr1.sim.calvin_expert import plan_calvin_task
from integrations.gr1.sim.calvin_task_set import CALVIN_ONLY_TASKS, CALVIN_TASKS
from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv, to_relative_action, wrap_angle
from integrations.gr1.sim.tasks import COLORS, PUSH_DISTANCE, ROTATION, TASKS, get_task_info, unstack_place
from integrations.gr1.sim.tracks import DYNAMIC_FRACTION, TrackRecorder, movement_prior

SAFE_Z = 0.18
"""TCP height for moves between objects (clears every fixture)."""

Recorder = Callable[[dict[str, Any], np.ndarray, np.ndarray], None]
"""``record(obs, action, rel_action)``, called before every ``env.step`` with the observation
the action was chosen from, the absolute action and the matching CALVIN relative action."""


@dataclass
class Waypoint:
    """A TCP target the expert drives to.

    Attributes:
        pos: (3,) TCP position (m).
        yaw: gripper yaw (rad); the gripper always points down.
        gripper: +1 open / -1 closed while moving to this waypoint.
        settle: extra steps to hold once reached (lets the fingers close or open).
        tol: position tolerance (m).
        max_steps: give up on reaching it after this many steps (pushing against a limit).
    """

    pos: np.ndarray
    yaw: float
    gripper: float
    settle: int = 0
    tol: float = 0.006
    max_steps: int = 90


def turn_the_long_way(waypoints: list[Waypoint]) -> list[Waypoint]:
    """Insert, between two waypoints whose yaws differ by more than 180 deg, one at the first's
    position with the yaw half-way between them. The expert turns the hand the short way round
    (wrapped error), and past +-180 deg the wrist runs into its joint limit: measured, the arm
    stalled turning from -100 deg (after turning a block) to +100 deg (a drawer grasp)."""
    out = waypoints[:1]
    for wp in waypoints[1:]:
        prev = out[-1]
        if abs(wp.yaw - prev.yaw) > np.pi:
            out.append(Waypoint(prev.pos.copy(), 0.5 * (prev.yaw + wp.yaw), prev.gripper))
        out.append(wp)
    return out


def _quarter_wrap(angle: float) -> float:
    """Angle modulo pi/2 into [-pi/4, pi/4): the symmetry of a cube seen from above."""
    return float((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class ScriptedExpert:
    """Completes the tasks of :mod:`integrations.gr1.sim.tasks` in a :class:`CalvinTabletopEnv`.

    Args:
        env: the environment (absolute or relative action mode: the expert converts).
        max_step: largest TCP translation commanded per step (m).
        max_rot: largest TCP rotation commanded per step (rad).
    """

    def __init__(self, env: CalvinTabletopEnv, max_step: float = 0.015, max_rot: float = 0.04) -> None:
        self.env = env
        self.max_step = float(max_step)
        self.max_rot = float(max_rot)

    # ------------------------------------------------------------------ planning
    def held_block(self) -> str | None:
        """The block in contact with the robot and off the table, if any."""
        info = self.env.get_info()
        for color in COLORS:
            contacts = info["block_contacts"][color]
            if "robot" in contacts and "table" not in contacts:
                return color
        return None

    def free_blocks(self) -> list[str]:
        """Blocks lying on the table, not held and not part of a stack (colour order)."""
        info = self.env.get_info()
        free = []
        # With the calvin fixtures a block in the drawer also lies low: it is not a free table block.
        fixtures = {"drawer", "plank"} if self.env.task_set == "calvin" else set()
        for i, color in enumerate(COLORS):
            contacts = info["block_contacts"][color]
            if info["scene_obs"][8 + 6 * i] < BLOCK_HALF + 0.01 and "robot" not in contacts and not contacts & (set(COLORS) | fixtures):
                free.append(color)
        return free

    def plan(self, task: str) -> list[Waypoint]:
        """Waypoints for ``task`` from the current state.

        With ``task_set="calvin"`` a turn of the hand by more than 180 deg between two waypoints
        gets a waypoint half-way (:func:`turn_the_long_way`), as tasks there follow each other in
        every combination (classic plans are unchanged).

        Raises:
            KeyError: unknown task name.
            RuntimeError: the task cannot start from this state (e.g. stacking with no held block).
        """
        known = CALVIN_TASKS if self.env.task_set == "calvin" else TASKS
        if task not in known:
            raise KeyError(f"unknown task {task!r} for task_set={self.env.task_set!r}; known: {sorted(known)}")
        waypoints = self._plan(task)
        return turn_the_long_way(waypoints) if self.env.task_set == "calvin" else waypoints

    def _plan(self, task: str) -> list[Waypoint]:
        scene = self.env.scene.get_scene_obs()
        tcp = self.env.get_robot_obs()
        yaw_now = float(tcp[5])
        grip_now = 1.0 if tcp[14] > 0 else -1.0
        up = [Waypoint(np.array([tcp[0], tcp[1], max(tcp[2], SAFE_Z)]), yaw_now, grip_now)]

        def handle_move(start: np.ndarray, end: np.ndarray, yaw: float) -> list[Waypoint]:
            above = np.array([start[0], start[1], SAFE_Z])
            return [Waypoint(above, yaw, 1.0), Waypoint(start, yaw, 1.0, tol=0.004),
                    Waypoint(start, yaw, -1.0, settle=8), Waypoint(end, yaw, -1.0, tol=0.006, max_steps=60),
                    Waypoint(end, yaw, 1.0, settle=6), Waypoint(np.array([end[0], end[1], SAFE_Z]), yaw, 1.0)]

        if task in CALVIN_ONLY_TASKS:  # first: lift_*_drawer, place_in_drawer, push_into_drawer end like open/close_drawer
            return up + plan_calvin_task(self, task, scene)
        if task.endswith("_drawer"):
            q, goal = scene[1], DRAWER_RANGE[1] - 0.005 if task == "open_drawer" else DRAWER_RANGE[0] + 0.005
            y0, y1 = DRAWER_HANDLE_Y_CLOSED - q, DRAWER_HANDLE_Y_CLOSED - goal
            return up + handle_move(np.array([DRAWER_X, y0, DRAWER_GRASP_Z]), np.array([DRAWER_X, y1, DRAWER_GRASP_Z]), 0.0)
        if task.startswith("move_slider"):
            goal = SLIDER_RANGE[0] + 0.005 if task.endswith("left") else SLIDER_RANGE[1] - 0.005
            return up + handle_move(np.array([SLIDER_HANDLE_X, scene[0], SLIDER_GRASP_Z]),
                                    np.array([SLIDER_HANDLE_X, goal, SLIDER_GRASP_Z]), 0.0)
        if task.endswith("lightbulb"):
            goal = SWITCH_RANGE[1] - 0.004 if "_on_" in task else SWITCH_RANGE[0] + 0.004
            return up + handle_move(np.array([SWITCH_HANDLE_X0 + scene[3], SWITCH_Y, SWITCH_GRASP_Z]),
                                    np.array([SWITCH_HANDLE_X0 + goal, SWITCH_Y, SWITCH_GRASP_Z]), np.pi / 2)
        if task.endswith("led"):
            above = np.array([BUTTON_XY[0], BUTTON_XY[1], SAFE_Z])
            press = np.array([BUTTON_XY[0], BUTTON_XY[1], BUTTON_TOP_Z - 0.022])
            return up + [Waypoint(above, 0.0, -1.0), Waypoint(press, 0.0, -1.0, settle=2, tol=0.008, max_steps=30),
                         Waypoint(above, 0.0, -1.0)]
        if task == "stack_block":
            return up + self._plan_stack(scene)
        if task == "unstack_block":
            return up + self._plan_unstack(scene)
        color = task.split("_")[1]
        block = scene[6 + 6 * COLORS.index(color): 12 + 6 * COLORS.index(color)]
        if task.startswith("lift"):
            yaw = _quarter_wrap(block[5])
            grasp = np.array([block[0], block[1], BLOCK_HALF - 0.0025])
            return up + [Waypoint(np.array([block[0], block[1], SAFE_Z]), yaw, 1.0), Waypoint(grasp, yaw, 1.0, tol=0.004),
                         Waypoint(grasp, yaw, -1.0, settle=10), Waypoint(np.array([block[0], block[1], 0.15]), yaw, -1.0)]
        if task.startswith("rotate"):
            return up + self._plan_rotate(block, 1.0 if task.endswith("left") else -1.0)
        return up + self._plan_push(block, -1.0 if task.endswith("left") else 1.0)

    def _plan_rotate(self, block: np.ndarray, direction: float) -> list[Waypoint]:
        """Grasp, raise 2 cm, turn by ``ROTATION`` (+ = counter-clockwise from above), put down, release."""
        turn = direction * ROTATION
        # Of the cube's grasp yaws, the one with the smallest wrist turn that keeps the hand within
        # [-100, +70] deg all along: measured, beyond that this arm stalls above blocks on the +y side.
        # The window is 170 deg wide and the grasps are 90 deg apart, so a turn of 75 deg always fits.
        low, high = np.radians(-100.0), np.radians(70.0)
        options = [_quarter_wrap(block[5]) + k * np.pi / 2 for k in (-1, 0, 1)]
        fits = [g for g in options if low <= min(g, g + turn) and max(g, g + turn) <= high]
        yaw = min(fits or options, key=lambda g: max(abs(g), abs(g + turn)))
        grasp = np.array([block[0], block[1], BLOCK_HALF - 0.0025])
        raised = grasp + np.array([0.0, 0.0, 0.02])
        return [Waypoint(np.array([block[0], block[1], SAFE_Z]), yaw, 1.0), Waypoint(grasp, yaw, 1.0, tol=0.004),
                Waypoint(grasp, yaw, -1.0, settle=10), Waypoint(raised, yaw, -1.0), Waypoint(raised, yaw + turn, -1.0),
                # Set down onto the table before opening: released in the air, the spinning fingers turn it back.
                Waypoint(grasp, yaw + turn, -1.0, tol=0.003, max_steps=40), Waypoint(grasp, yaw + turn, 1.0, settle=8),
                # Leave slowly (5 mm a step): a fast first move up swings the open fingers into the block.
                *[Waypoint(grasp + np.array([0.0, 0.0, 0.005 * k]), yaw + turn, 1.0, tol=0.003, max_steps=10) for k in range(1, 13)],
                Waypoint(np.array([block[0], block[1], SAFE_Z]), yaw + turn, 1.0)]

    def _plan_unstack(self, scene: np.ndarray) -> list[Waypoint]:
        """Take the top block of a stack to :func:`integrations.gr1.sim.tasks.unstack_place` and set it down."""
        info = self.env.get_info()
        pairs = [(top, bottom) for top in COLORS for bottom in COLORS
                 if bottom in info["block_contacts"][top] and not info["block_contacts"][top] & {"table", "robot"}]
        if not pairs:
            raise RuntimeError("unstack_block needs a block resting on another one")
        top, bottom = pairs[0]
        pose = lambda c: scene[6 + 6 * COLORS.index(c): 12 + 6 * COLORS.index(c)]  # noqa: E731
        block, base = pose(top), pose(bottom)
        others = [tuple(pose(c)[:2]) for c in COLORS if c not in (top, bottom)]
        place = unstack_place((float(base[0]), float(base[1])), others + [(float(base[0]), float(base[1]))])
        if place is None:
            raise RuntimeError("unstack_block: no free place next to the stack")
        yaw = _quarter_wrap(block[5])
        grasp = np.array([block[0], block[1], block[2] - 0.0025])
        down = np.array([place[0], place[1], BLOCK_HALF - 0.0025])
        return [Waypoint(np.array([block[0], block[1], SAFE_Z]), yaw, 1.0), Waypoint(grasp, yaw, 1.0, tol=0.004),
                Waypoint(grasp, yaw, -1.0, settle=10), Waypoint(np.array([block[0], block[1], 0.12]), yaw, -1.0),
                Waypoint(np.array([place[0], place[1], 0.12]), yaw, -1.0), Waypoint(down, yaw, -1.0, tol=0.003, max_steps=40),
                Waypoint(down, yaw, 1.0, settle=8),
                *[Waypoint(down + np.array([0.0, 0.0, 0.005 * k]), yaw, 1.0, tol=0.003, max_steps=10) for k in range(1, 13)],
                Waypoint(np.array([place[0], place[1], SAFE_Z]), yaw, 1.0)]

    def _plan_push(self, block: np.ndarray, direction: float) -> list[Waypoint]:
        # Distance from the block centre to its face along y, for its current yaw.
        reach = BLOCK_HALF * (abs(np.cos(block[5])) + abs(np.sin(block[5])))
        start_y = block[1] - direction * (reach + 0.035)
        end_y = start_y + direction * (PUSH_DISTANCE + 0.02)
        z = 0.022
        return [Waypoint(np.array([block[0], start_y, SAFE_Z]), 0.0, -1.0),
                Waypoint(np.array([block[0], start_y, z]), 0.0, -1.0, tol=0.005),
                Waypoint(np.array([block[0], end_y, z]), 0.0, -1.0, tol=0.005, max_steps=60),
                Waypoint(np.array([block[0], end_y, SAFE_Z]), 0.0, -1.0)]

    def _plan_stack(self, scene: np.ndarray) -> list[Waypoint]:
        held = self.held_block()
        free = [c for c in self.free_blocks() if c != held]
        if held is None or not free:
            raise RuntimeError(f"stack_block needs a held block and a free one (held={held}, free={free})")
        target = scene[6 + 6 * COLORS.index(free[0]): 12 + 6 * COLORS.index(free[0])]
        held_z = scene[8 + 6 * COLORS.index(held)]
        offset = held_z - self.env.get_robot_obs()[2]  # block centre relative to the TCP while held
        yaw_now = float(self.env.get_robot_obs()[5])
        yaw = yaw_now + _quarter_wrap(target[5] - yaw_now)
        release = np.array([target[0], target[1], 3 * BLOCK_HALF + 0.006 - offset])
        return [Waypoint(np.array([target[0], target[1], SAFE_Z]), yaw, -1.0),
                Waypoint(release, yaw, -1.0, tol=0.004), Waypoint(release, yaw, 1.0, settle=10),
                Waypoint(np.array([target[0], target[1], SAFE_Z]), yaw, 1.0)]

    # ------------------------------------------------------------------ execution
    def run(self, task: str, obs: dict[str, Any], record: Recorder | None = None) -> tuple[dict[str, Any], int]:
        """Execute ``task`` from observation ``obs`` (the env's current one).

        Returns:
            ``(last_obs, num_steps)``.
        """
        return self.follow(self.plan(task), obs, record)

    def follow(self, waypoints: Sequence[Waypoint], obs: dict[str, Any], record: Recorder | None = None,
               max_steps: int | None = None, after_step: Callable[[], None] | None = None) -> tuple[dict[str, Any], int]:
        """Drive through ``waypoints`` from observation ``obs``: each is held ``settle`` steps once
        reached (or once its ``max_steps`` ran out).

        Args:
            waypoints: a plan (:meth:`plan`) or what is left of one.
            obs: the env's current observation (only ``robot_obs`` is read).
            record: called before every step (demonstrations).
            max_steps: stop after this many steps (``None``: run the waypoints to the end).
            after_step: called after every step (ground-truth look-ahead).

        Returns:
            ``(last_obs, num_steps)``.
        """
        steps = 0
        for wp in waypoints:
            reached_at = None
            for k in range(wp.max_steps + wp.settle):
                robot = obs["robot_obs"]
                err = wp.pos - robot[:3]
                yaw_err = float(wrap_angle(wp.yaw - robot[5]))
                close = np.linalg.norm(err) < wp.tol and abs(yaw_err) < 0.03
                if reached_at is None and (close or k >= wp.max_steps):
                    reached_at = k
                if reached_at is not None and k >= reached_at + wp.settle:
                    break
                if max_steps is not None and steps >= max_steps:
                    return obs, steps
                obs = self._step(obs, err, yaw_err, wp.gripper, record)
                steps += 1
                if after_step is not None:
                    after_step()
        return obs, steps

    def _step(self, obs: dict[str, Any], err: np.ndarray, yaw_err: float, gripper: float, record: Recorder | None) -> dict[str, Any]:
        robot = obs["robot_obs"]
        norm = float(np.linalg.norm(err))
        move = err * min(1.0, self.max_step / norm) if norm > 1e-9 else err
        # Keep the gripper pointing down: roll -> pi, pitch -> 0, yaw towards the target.
        orn_err = wrap_angle(np.array([np.pi, 0.0, robot[5] + yaw_err]) - robot[3:6])
        euler = wrap_angle(robot[3:6] + np.clip(orn_err, -self.max_rot, self.max_rot))
        action = np.concatenate([robot[:3] + move, euler, [gripper]])
        rel = to_relative_action(action, robot)  # recorded as CALVIN's datasets do: from the measured pose
        if record is not None:
            record(obs, action, rel)
        sent = rel
        if self.env.action_integration == "target":  # the env adds it to the commanded pose, as CALVIN's robot
            sent = to_relative_action(action, np.concatenate([self.env.target_pose, robot[6:]]))
        obs, _, _, _ = self.env.step(sent if self.env.use_relative_actions else action)
        return obs


# ---------------------------------------------------------------------- demonstrations
@dataclass
class TaskDemo:
    """One successful expert demonstration of one task.

    Attributes:
        task: task name.
        instruction: its language instruction.
        frames: CALVIN frame dicts (keys of ``calvin_format.FRAME_SHAPES``), one per step.
        tracks: (N, T, 2) float32 ground-truth tracks on ``rgb_static`` or ``None``.
        visible: (N, T) bool or ``None``.
    """

    task: str
    instruction: str
    frames: list[dict[str, np.ndarray]]
    tracks: np.ndarray | None = None
    visible: np.ndarray | None = None


def frame_from_obs(obs: dict[str, Any], action: np.ndarray, rel_action: np.ndarray) -> dict[str, np.ndarray]:
    """A CALVIN frame dict from an observation and the action taken from it."""
    return {
        "actions": np.asarray(action, dtype=np.float64), "rel_actions": np.asarray(rel_action, dtype=np.float64),
        "robot_obs": obs["robot_obs"], "scene_obs": obs["scene_obs"],
        "rgb_static": obs["rgb_obs"]["rgb_static"], "rgb_gripper": obs["rgb_obs"]["rgb_gripper"],
        "depth_static": obs["depth_obs"]["depth_static"], "depth_gripper": obs["depth_obs"]["depth_gripper"],
    }


def collect_demos(env: CalvinTabletopEnv, tasks: Sequence[str], num_points: int = 256, seed: int = 0,
                  record_tracks: bool = True, movement_weighted: bool = True) -> Iterator[TaskDemo]:
    """Run the expert through ``tasks`` in sequence from the env's current state, yielding demos.

    Each task is one continuous segment; its tracks start from points sampled at its first
    frame. Stops at the first task the oracle does not confirm (that demo is not yielded): the
    embedded oracle (:func:`integrations.gr1.sim.tasks.get_task_info`) with the classic tasks,
    CALVIN's own (:class:`integrations.gr1.calvin_tasks.Tasks`) with ``env.task_set == "calvin"``,
    whose demos carry CALVIN's instructions.

    Args:
        env: environment, already reset to the start state.
        tasks: task names, feasible in sequence.
        num_points: tracks per task segment.
        seed: seed of the track point sampling.
        record_tracks: compute ground-truth tracks.
        movement_weighted: sample the track points with
            :func:`integrations.gr1.sim.tracks.movement_prior` (as the evaluation's query points);
            ``False``: half of them split evenly over the movable bodies, half uniform.
    """
    expert = ScriptedExpert(env)
    recorder = None
    if record_tracks and movement_weighted:
        moving, weights = movement_prior(env)
        recorder = TrackRecorder(env.cid, env.static_cam, moving, num_points, seed, DYNAMIC_FRACTION, weights=weights)
    elif record_tracks:
        recorder = TrackRecorder(env.cid, env.static_cam, env.moving_objects(), num_points=num_points, seed=seed)
    confirmed, instructions = _confirmation(env.task_set)
    obs = env.get_obs()
    for task in tasks:
        frames: list[dict[str, np.ndarray]] = []
        start_info = env.get_info()
        if recorder is not None:
            recorder.start()

        def record(o: dict[str, Any], action: np.ndarray, rel: np.ndarray) -> None:
            frames.append(frame_from_obs(o, action, rel))
            if recorder is not None:
                recorder.record(o["depth_obs"]["depth_static"])

        obs, _ = expert.run(task, obs, record)
        if not confirmed(task, start_info, env.get_info()) or not frames:
            return
        tracks, visible = recorder.result() if recorder is not None else (None, None)
        yield TaskDemo(task, instructions[task], frames, tracks, visible)


def _confirmation(task_set: str) -> tuple[Callable[[str, dict, dict], bool], dict[str, str]]:
    """``(confirmed(task, start_info, end_info), instructions)`` of a task set."""
    if task_set == "calvin":
        from integrations.gr1.calvin_tasks import Tasks

        oracle = Tasks.from_yaml()
        return (lambda t, s, e: bool(oracle.get_task_info_for_set(s, e, {t})),
                {name: task.instruction for name, task in CALVIN_TASKS.items()})
    return (lambda t, s, e: t in get_task_info(s, e)), {name: task.instruction for name, task in TASKS.items()}
