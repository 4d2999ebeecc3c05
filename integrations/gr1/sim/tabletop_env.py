"""CALVIN-compatible tabletop environment on pybullet (paper §4.4; issue 6 "Embedded default").

Same API and spaces as CALVIN's ``calvin_env`` play-table env, so a policy and the evaluation
loop run unchanged against either:

- ``reset(robot_obs=None, scene_obs=None) -> obs``; ``step(action) -> (obs, reward, done, info)``;
  ``get_obs()``; ``get_info()``; ``close()``.
- ``obs = {"rgb_obs": {"rgb_static": (200, 200, 3) uint8, "rgb_gripper": (84, 84, 3) uint8},
  "depth_obs": {"depth_static": (200, 200) float32, "depth_gripper": (84, 84) float32},
  "robot_obs": (15,), "scene_obs": (24,)}``.
- ``robot_obs`` = tcp position (3), tcp euler xyz (3), gripper opening width (1), the 7 arm
  joints, the last gripper action (1, +1 open / -1 close), as in CALVIN.
- ``scene_obs``: see :mod:`integrations.gr1.sim.scene`.
- Actions (7): absolute ``(tcp pos 3, tcp euler 3, gripper ±1)`` or relative, CALVIN's
  ``rel_actions``: deltas scaled by 1/0.02 m and 1/0.05 rad and clipped to [-1, 1]
  (:func:`to_relative_action` / :func:`relative_to_absolute`). Pick with ``use_relative_actions``.
  Relative actions are added to the last commanded pose (CALVIN's ``use_target_pose``;
  ``action_integration="measured"`` adds them to the measured pose instead).

Control runs at 30 Hz with 8 physics sub-steps at 240 Hz (CALVIN's rates); the arm follows
the action's TCP target through ``pybullet.calculateInverseKinematics`` and joint position
control.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pybullet as pb
import pybullet_data

from integrations.gr1.sim.calvin_fixtures import check_task_set
from integrations.gr1.sim.calvin_info import calvin_info
from integrations.gr1.sim.cameras import CameraView, gripper_camera, static_camera
from integrations.gr1.sim.scene import TabletopScene, sample_scene_obs

MAX_REL_POS = 0.02
"""CALVIN's scaling of relative position actions (m per unit action)."""
MAX_REL_ORN = 0.05
"""CALVIN's scaling of relative orientation actions (rad per unit action)."""

ROBOT_BASE = (-0.56, 0.0, 0.0)
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
HAND_LINK = 8
TCP_LINK = 11
HOME_JOINTS = (0.0, -0.35, 0.0, -2.45, 0.0, 2.1, 0.785)
"""Arm joints of the neutral pose (gripper down, ~25 cm above the table in front of the base)."""
_ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)


def panda_urdf(low_poly: bool = True) -> str:
    """Path of the Panda URDF to load.

    ``low_poly`` renders the links with pybullet_data's collision meshes (a few hundred faces
    instead of ~15k per link): the CPU renderer spends most of its time on the arm, and this
    makes a 200x200 frame ~4x cheaper. The URDF is rewritten from the installed pybullet_data
    into the temp directory (absolute mesh paths), nothing is downloaded.
    """
    source = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    if not low_poly:
        return str(source)
    text = source.read_text().replace("package://meshes/visual/", "package://meshes/collision/")
    text = text.replace("package://meshes/", f"{source.parent / 'meshes'}/")
    target = Path(tempfile.gettempdir()) / f"arfm_panda_lowpoly_{hashlib.sha1(text.encode()).hexdigest()[:12]}.urdf"
    if not target.exists():
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
    return str(target)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to ``[-pi, pi)``."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def to_relative_action(action: np.ndarray, robot_obs: np.ndarray) -> np.ndarray:
    """Absolute action + current ``robot_obs`` -> CALVIN relative action (clipped to [-1, 1])."""
    action = np.asarray(action, dtype=np.float64)
    rel_pos = (action[:3] - robot_obs[:3]) / MAX_REL_POS
    rel_orn = wrap_angle(action[3:6] - robot_obs[3:6]) / MAX_REL_ORN
    return np.concatenate([np.clip(rel_pos, -1, 1), np.clip(rel_orn, -1, 1), action[6:7]])


def relative_to_absolute(rel_action: np.ndarray, robot_obs: np.ndarray) -> np.ndarray:
    """CALVIN relative action + current ``robot_obs`` -> absolute TCP target action."""
    rel = np.clip(np.asarray(rel_action, dtype=np.float64), -1.0, 1.0)
    pos = robot_obs[:3] + rel[:3] * MAX_REL_POS
    orn = wrap_angle(robot_obs[3:6] + rel[3:6] * MAX_REL_ORN)
    return np.concatenate([pos, orn, rel[6:7]])


class CalvinTabletopEnv:
    """pybullet tabletop with CALVIN's observation/action spaces and API.

    Args:
        use_relative_actions: interpret ``step`` actions as CALVIN ``rel_actions`` (default,
            what GR-1 outputs) instead of absolute TCP targets.
        static_size: side of ``rgb_static`` (CALVIN: 200).
        gripper_size: side of ``rgb_gripper`` (CALVIN: 84).
        seed: default seed for ``reset()`` without a ``scene_obs``.
        render_gripper: render the gripper camera (turn off to save time when unused).
        low_poly_robot: draw the arm with its collision meshes (see :func:`panda_urdf`).
        action_integration: what a relative action is added to: ``"target"`` (default: the pose
            commanded last, as CALVIN's robot with ``use_target_pose: true``, so a lagging arm does
            not shorten the path) or ``"measured"`` (the TCP pose read now; this env's behaviour
            before issue 15).
        static_view: ``"near"`` (default) or ``"calvin"`` (CALVIN's fov-10 camera from afar;
            :func:`integrations.gr1.sim.cameras.static_camera`).
        task_set: ``"classic"`` (default: the scene of the 25 tasks, unchanged) or ``"calvin"``
            (CALVIN's 34 tasks: adds the cabinet plank and the open drawer of
            :mod:`integrations.gr1.sim.calvin_fixtures`; ``reset()`` without a ``scene_obs`` then
            draws a CALVIN-style start state, :func:`integrations.gr1.sim.calvin_task_set.sample_calvin_scene_obs`).
    """

    def __init__(self, use_relative_actions: bool = True, static_size: int = 200, gripper_size: int = 84,
                 seed: int = 0, render_gripper: bool = True, low_poly_robot: bool = True,
                 action_integration: str = "target", static_view: str = "near", task_set: str = "classic") -> None:
        if static_size < 8 or gripper_size < 8:
            raise ValueError(f"static_size/gripper_size must be >= 8, got {static_size}/{gripper_size}")
        if action_integration not in ("measured", "target"):
            raise ValueError(f"action_integration must be 'measured' or 'target', got {action_integration!r}")
        self.action_integration = action_integration
        self.task_set = check_task_set(task_set)
        self._target_pose = np.zeros(6)
        self.use_relative_actions = bool(use_relative_actions)
        self.gripper_size = int(gripper_size)
        self.render_gripper = bool(render_gripper)
        self.seed = int(seed)
        self.cid = pb.connect(pb.DIRECT)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.cid)
        pb.setGravity(0, 0, -9.81, physicsClientId=self.cid)
        pb.setPhysicsEngineParameter(fixedTimeStep=1.0 / 240.0, numSubSteps=0, physicsClientId=self.cid)
        self.robot = pb.loadURDF(panda_urdf(low_poly_robot), basePosition=ROBOT_BASE, useFixedBase=True,
                                 flags=pb.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=self.cid)
        if low_poly_robot:
            for link in range(-1, pb.getNumJoints(self.robot, physicsClientId=self.cid)):
                shade = (0.3, 0.3, 0.32, 1.0) if link in (HAND_LINK, *FINGER_JOINTS, 6) else (0.92, 0.92, 0.92, 1.0)
                pb.changeVisualShape(self.robot, link, rgbaColor=shade, physicsClientId=self.cid)
        for finger in FINGER_JOINTS:
            pb.changeDynamics(self.robot, finger, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=self.cid)
        info = [pb.getJointInfo(self.robot, j, physicsClientId=self.cid) for j in range(9 + 2)]
        movable = [j for j in range(len(info)) if info[j][2] != pb.JOINT_FIXED]
        self._ik_lower = [info[j][8] for j in movable]
        self._ik_upper = [info[j][9] for j in movable]
        self._ik_range = [u - lo for lo, u in zip(self._ik_lower, self._ik_upper)]
        self._ik_rest = list(HOME_JOINTS) + [0.04, 0.04]
        self.scene = TabletopScene(self.cid, task_set)
        self.static_cam: CameraView = static_camera(static_size, static_view)
        self._gripper_action = 1.0
        self._last_depth_static: np.ndarray | None = None
        self._headless = False
        self.reset()

    # ------------------------------------------------------------------ CALVIN API
    def reset(self, robot_obs: np.ndarray | None = None, scene_obs: np.ndarray | None = None,
              seed: int | None = None) -> dict[str, Any]:
        """Reset the robot and the scene.

        Args:
            robot_obs: (15,) CALVIN robot state to restore (joints and gripper are used);
                ``None`` -> the neutral pose with the gripper open.
            scene_obs: (24,) scene state to restore; ``None`` -> a seeded sample
                (:func:`integrations.gr1.sim.scene.sample_scene_obs`).
            seed: seed for the sampled scene (default: the constructor's ``seed``).

        Returns:
            The observation dict.
        """
        if robot_obs is None:
            joints, width, gripper_action = np.asarray(HOME_JOINTS), 0.08, 1.0
        else:
            robot_obs = np.asarray(robot_obs, dtype=np.float64)
            if robot_obs.shape != (15,) or not np.all(np.isfinite(robot_obs)):
                raise ValueError(f"robot_obs must be 15 finite floats, got shape {robot_obs.shape}")
            joints, width, gripper_action = robot_obs[7:14], float(robot_obs[6]), float(np.sign(robot_obs[14]) or 1.0)
        for j, q in zip(ARM_JOINTS, joints):
            pb.resetJointState(self.robot, j, float(q), 0.0, physicsClientId=self.cid)
        for f in FINGER_JOINTS:
            pb.resetJointState(self.robot, f, float(np.clip(width / 2, 0.0, 0.04)), 0.0, physicsClientId=self.cid)
        self._gripper_action = gripper_action
        if scene_obs is None:
            scene_obs = self._sample_scene_obs(self.seed if seed is None else seed)
        self.scene.set_scene_obs(scene_obs)
        # Hold the current pose until the first action arrives.
        tcp = self._tcp_pose()
        self._command(tcp[:3], tcp[3:], gripper_action)
        return self.get_obs()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Apply one 7-D action for one 30 Hz control step.

        Returns:
            ``(obs, reward, done, info)``; reward is 0 and done is False, as in CALVIN's
            play env (success comes from the task oracle on ``info``).
        """
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 7 finite floats, got shape {action.shape}")
        if not self.use_relative_actions:
            target = action
        elif self.action_integration == "target":
            target = relative_to_absolute(action, np.concatenate([self._target_pose, np.zeros(9)]))
        else:
            target = relative_to_absolute(action, self.get_robot_obs())
        self._command(target[:3], target[3:6], 1.0 if target[6] >= 0 else -1.0)
        for _ in range(8):
            pb.stepSimulation(physicsClientId=self.cid)
        self.scene.update_lights()
        return self.get_obs(), 0.0, False, self.get_info()

    @contextmanager
    def headless(self) -> Iterator["CalvinTabletopEnv"]:
        """Within this block ``step``/``get_obs`` skip rendering and return only ``robot_obs``
        and ``scene_obs`` (e.g. an expert look-ahead between :meth:`save_state` and
        :meth:`restore_state`, ~5x faster)."""
        previous, self._headless = self._headless, True
        try:
            yield self
        finally:
            self._headless = previous

    def get_obs(self) -> dict[str, Any]:
        """Render both cameras and read the robot and scene state."""
        if self._headless:
            return {"robot_obs": self.get_robot_obs(), "scene_obs": self.scene.get_scene_obs()}
        rgb_static, depth_static, _ = self.static_cam.render(self.cid)
        self._last_depth_static = depth_static
        if self.render_gripper:
            cam = gripper_camera(self.cid, self.robot, HAND_LINK, self.gripper_size)
            rgb_gripper, depth_gripper, _ = cam.render(self.cid)
        else:
            rgb_gripper = np.zeros((self.gripper_size, self.gripper_size, 3), np.uint8)
            depth_gripper = np.zeros((self.gripper_size, self.gripper_size), np.float32)
        return {
            "rgb_obs": {"rgb_static": rgb_static, "rgb_gripper": rgb_gripper},
            "depth_obs": {"depth_static": depth_static, "depth_gripper": depth_gripper},
            "robot_obs": self.get_robot_obs(),
            "scene_obs": self.scene.get_scene_obs(),
        }

    def get_info(self) -> dict[str, Any]:
        """Scene state for the task oracles: ``scene_obs``, ``robot_obs`` and ``block_contacts`` for
        :func:`integrations.gr1.sim.tasks.get_task_info`, plus ``robot_info`` / ``scene_info`` in
        ``calvin_env``'s layout for CALVIN's own oracle (:mod:`integrations.gr1.sim.calvin_info`)."""
        if self.task_set == "calvin":  # contacts of the state now, even right after a reset (classic: as before)
            pb.performCollisionDetection(physicsClientId=self.cid)
        contacts = {name: self.block_contacts(name) for name in self.scene.bodies.blocks}
        return {"scene_obs": self.scene.get_scene_obs(), "robot_obs": self.get_robot_obs(), "block_contacts": contacts,
                **calvin_info(self)}

    def close(self) -> None:
        """Disconnect the physics client (idempotent)."""
        if self.cid is not None and pb.isConnected(self.cid):
            pb.disconnect(self.cid)
        self.cid = None

    # ------------------------------------------------------------------ state
    def save_state(self) -> tuple[int, bool, bool, float]:
        """Snapshot the full simulator state in memory (e.g. to let the expert try a subtask
        and come back); pass it to :meth:`restore_state`, free it with :meth:`discard_state`."""
        state_id = pb.saveState(physicsClientId=self.cid)
        return state_id, self.scene.led_on, self.scene._button_was_pressed, self._gripper_action

    def restore_state(self, state: tuple[int, bool, bool, float]) -> dict[str, Any]:
        """Return to a :meth:`save_state` snapshot (the arm holds its restored pose); returns the obs."""
        state_id, self.scene.led_on, self.scene._button_was_pressed, gripper = state
        pb.restoreState(stateId=state_id, physicsClientId=self.cid)
        self.scene.update_lights()
        tcp = self._tcp_pose()
        self._command(tcp[:3], tcp[3:], gripper)
        return self.get_obs()

    def discard_state(self, state: tuple[int, bool, bool, float]) -> None:
        """Free a :meth:`save_state` snapshot."""
        pb.removeState(state[0], physicsClientId=self.cid)

    def get_robot_obs(self) -> np.ndarray:
        """The 15-float CALVIN ``robot_obs``."""
        joints = [pb.getJointState(self.robot, j, physicsClientId=self.cid)[0] for j in ARM_JOINTS]
        width = sum(pb.getJointState(self.robot, f, physicsClientId=self.cid)[0] for f in FINGER_JOINTS)
        return np.concatenate([self._tcp_pose(), [width], joints, [self._gripper_action]])

    def block_contacts(self, name: str) -> set[str]:
        """Names of what block ``name`` touches: ``"robot"``, ``"table"``, other block names, fixtures
        (``"drawer"``, ``"slider"``, ``"plank"``, ``"floor"``, ``"other"``)."""
        b = self.scene.bodies
        names = {b.table: "table", self.robot: "robot", b.drawer: "drawer", b.slider: "slider", b.plane: "floor"}
        if b.plank is not None:
            names[b.plank] = "plank"
        names.update({body: other for other, body in b.blocks.items()})
        touching = set()
        for contact in pb.getContactPoints(bodyA=b.blocks[name], physicsClientId=self.cid):
            touching.add(names.get(contact[2], "other"))
        return touching

    def moving_objects(self) -> list[tuple[int, tuple[int, ...] | None]]:
        """``(body, links)`` of everything that can move: the arm, each block, each articulated part."""
        b = self.scene.bodies
        return [(self.robot, None), *[(body, None) for body in b.blocks.values()],
                *[(body, (0,)) for body in (b.slider, b.drawer, b.button, b.switch)]]

    @property
    def target_pose(self) -> np.ndarray:
        """The TCP pose (position 3, euler 3) commanded last; ``action_integration="target"`` adds
        relative actions to it."""
        return self._target_pose.copy()

    @target_pose.setter
    def target_pose(self, pose: np.ndarray) -> None:
        self._target_pose = np.asarray(pose, dtype=np.float64).reshape(6).copy()

    @property
    def last_depth_static(self) -> np.ndarray:
        """Static-camera depth of the last observation (used by the ground-truth tracks)."""
        if self._last_depth_static is None:
            raise RuntimeError("no observation rendered yet")
        return self._last_depth_static

    def _sample_scene_obs(self, seed: int) -> np.ndarray:
        if self.task_set == "calvin":  # the classic block area overlaps the plank's edge
            from integrations.gr1.sim.calvin_task_set import sample_calvin_scene_obs

            return sample_calvin_scene_obs(seed)
        return sample_scene_obs(seed)

    def _tcp_pose(self) -> np.ndarray:
        state = pb.getLinkState(self.robot, TCP_LINK, computeForwardKinematics=True, physicsClientId=self.cid)
        return np.concatenate([state[4], pb.getEulerFromQuaternion(state[5])])

    def _command(self, pos: np.ndarray, euler: np.ndarray, gripper: float) -> None:
        """Joint position targets for a TCP pose via IK, and the finger targets."""
        orn = pb.getQuaternionFromEuler(list(map(float, euler)))
        joints = pb.calculateInverseKinematics(
            self.robot, TCP_LINK, list(map(float, pos)), orn, lowerLimits=self._ik_lower, upperLimits=self._ik_upper,
            jointRanges=self._ik_range, restPoses=self._ik_rest, maxNumIterations=40, residualThreshold=1e-4,
            physicsClientId=self.cid,
        )
        # Gain 0.3 (pybullet's default is 0.1) lets the arm cover ~90% of a 1 cm step within one
        # 30 Hz control period, so relative actions move the TCP by about what they say.
        pb.setJointMotorControlArray(self.robot, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=joints[:7],
                                     forces=_ARM_FORCES, positionGains=[0.3] * 7, physicsClientId=self.cid)
        self._target_pose = np.concatenate([np.asarray(pos, dtype=np.float64), wrap_angle(np.asarray(euler, dtype=np.float64))])
        self._gripper_action = 1.0 if gripper >= 0 else -1.0
        finger = 0.04 if self._gripper_action > 0 else 0.0
        pb.setJointMotorControlArray(self.robot, FINGER_JOINTS, pb.POSITION_CONTROL, targetPositions=[finger, finger],
                                     forces=[40.0, 40.0], physicsClientId=self.cid)

    def __enter__(self) -> "CalvinTabletopEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
