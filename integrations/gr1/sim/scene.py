"""The tabletop scene of the embedded CALVIN-compatible simulator (paper §4.4, issue 6).

A table with three coloured blocks (red, blue, pink, as in CALVIN), a drawer, a sliding
door, a button that toggles a green LED and a switch that turns a light bulb on, built from
pybullet primitives so nothing is downloaded. World frame: the table top is ``z = 0``, the
robot base sits at ``x = -0.56`` facing ``+x``; the static camera looks back at the robot
from ``+x``, so image-left is world ``-y`` ("left" in the task names).

``scene_obs`` (24 floats) follows CALVIN's layout:

====== ===================================================================
index  meaning
====== ===================================================================
0      sliding door joint (m, along +y; -0.10 = left end, +0.10 = right end)
1      drawer joint (m, 0 = closed, 0.14 = fully open, opens towards -y)
2      button joint (m, 0 = up, -0.015 = fully pressed)
3      switch joint (m, along +x, 0 = off end, 0.06 = on end)
4      light bulb (1.0 on / 0.0 off; on while the switch is past 0.03)
5      green LED (1.0 on / 0.0 off; toggled by each press of the button)
6:12   red block position (3) + euler xyz (3)
12:18  blue block position (3) + euler xyz (3)
18:24  pink block position (3) + euler xyz (3)
====== ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as pb

from integrations.gr1.sim.fnv import object_seed

BLOCK_COLORS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "blue": (0.1, 0.25, 0.9, 1.0),
    "pink": (0.95, 0.45, 0.75, 1.0),
}
BLOCK_HALF = 0.0225
"""Half side of a block (4.5 cm cubes: fit the 8 cm Panda gripper with margin)."""

BLOCK_REGION = ((-0.06, 0.07), (-0.15, 0.15))
"""``((x_min, x_max), (y_min, y_max))`` where reset places the blocks."""
BLOCK_Y_LIMIT = 0.21
"""Blocks stay within ``|y| <= BLOCK_Y_LIMIT`` (pushes are planned to respect it)."""

SLIDER_RANGE = (-0.10, 0.10)
DRAWER_RANGE = (0.0, 0.14)
BUTTON_RANGE = (-0.015, 0.0)
SWITCH_RANGE = (0.0, 0.06)
BUTTON_PRESSED_BELOW = -0.008
SWITCH_ON_ABOVE = 0.03

# Fixed geometry (world frame) that the expert and the tasks need: where handles are and the
# TCP height at which the gripper closes around them.
SLIDER_X, SLIDER_HANDLE_X, SLIDER_GRASP_Z = 0.20, 0.14, 0.11
DRAWER_X, DRAWER_FRONT_Y, DRAWER_HANDLE_Y_CLOSED, DRAWER_GRASP_Z = -0.17, 0.30, 0.22, 0.06
BUTTON_XY, BUTTON_TOP_Z = (-0.20, -0.33), 0.06
SWITCH_Y, SWITCH_HANDLE_X0, SWITCH_GRASP_Z = -0.33, -0.02, 0.05

_OFF = (0.25, 0.25, 0.25, 1.0)
_LED_ON = (0.1, 1.0, 0.1, 1.0)
_BULB_ON = (1.0, 0.95, 0.3, 1.0)
_WOOD = (0.72, 0.55, 0.38, 1.0)
_DARK = (0.35, 0.3, 0.28, 1.0)
_HANDLE = (0.15, 0.15, 0.15, 1.0)


def _box(cid: int, half: tuple[float, float, float], rgba, offset=(0.0, 0.0, 0.0)) -> tuple[int, int]:
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, collisionFramePosition=offset, physicsClientId=cid)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=rgba, visualFramePosition=offset, physicsClientId=cid)
    return col, vis


def _compound(cid: int, parts: list[tuple[tuple[float, float, float], tuple[float, float, float], tuple]]) -> tuple[int, int]:
    """Collision + visual shape made of boxes ``(half_extents, offset, rgba)``."""
    col = pb.createCollisionShapeArray(
        [pb.GEOM_BOX] * len(parts), halfExtents=[p[0] for p in parts], collisionFramePositions=[p[1] for p in parts],
        physicsClientId=cid,
    )
    vis = pb.createVisualShapeArray(
        [pb.GEOM_BOX] * len(parts), halfExtents=[p[0] for p in parts], visualFramePositions=[p[1] for p in parts],
        rgbaColors=[p[2] for p in parts], physicsClientId=cid,
    )
    return col, vis


def _articulated(cid: int, base_pos, base_shape, link_shape, link_pos, axis, limits, friction: float) -> int:
    """A fixed base with one prismatic link, limits and a friction-like velocity motor."""
    body = pb.createMultiBody(
        baseMass=0.0, baseCollisionShapeIndex=base_shape[0], baseVisualShapeIndex=base_shape[1], basePosition=base_pos,
        linkMasses=[0.2], linkCollisionShapeIndices=[link_shape[0]], linkVisualShapeIndices=[link_shape[1]],
        linkPositions=[link_pos], linkOrientations=[(0, 0, 0, 1)], linkInertialFramePositions=[(0, 0, 0)],
        linkInertialFrameOrientations=[(0, 0, 0, 1)], linkParentIndices=[0], linkJointTypes=[pb.JOINT_PRISMATIC],
        linkJointAxis=[axis], physicsClientId=cid,
    )
    pb.changeDynamics(body, 0, jointLowerLimit=limits[0], jointUpperLimit=limits[1], jointLimitForce=500.0,
                      linearDamping=2.0, physicsClientId=cid)
    # A zero-velocity motor with a small force acts as dry friction: the part stays where it is left.
    pb.setJointMotorControl2(body, 0, pb.VELOCITY_CONTROL, targetVelocity=0.0, force=friction, physicsClientId=cid)
    return body


def _lamp(cid: int, pos, radius: float) -> int:
    vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=radius, rgbaColor=_OFF, physicsClientId=cid)
    return pb.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vis, basePosition=pos,
                              physicsClientId=cid)


@dataclass
class SceneBodies:
    """pybullet ids of the scene's bodies (each articulated part is link 0 of its body)."""

    plane: int
    table: int
    slider: int
    drawer: int
    button: int
    switch: int
    led: int
    bulb: int
    blocks: dict[str, int]
    plank: int | None = None
    """The cabinet plank (``task_set="calvin"`` only)."""


class TabletopScene:
    """Builds the scene in a pybullet client and converts it to and from ``scene_obs``.

    Args:
        cid: pybullet physics client id.
        task_set: ``"classic"`` (default) or ``"calvin"``: adds the cabinet plank and makes the drawer
            hollow (:mod:`integrations.gr1.sim.calvin_fixtures`); the classic scene is built exactly as before.
    """

    def __init__(self, cid: int, task_set: str = "classic") -> None:
        from integrations.gr1.sim.calvin_fixtures import check_task_set

        self.cid = cid
        self.task_set = check_task_set(task_set)
        self.led_on = False
        self._button_was_pressed = False
        self.bodies = self._build()

    def _build(self) -> SceneBodies:
        cid = self.cid
        # An untextured floor: the textured plane.urdf costs the CPU renderer ~6 ms a frame.
        col, vis = _box(cid, (2.0, 2.0, 0.01), (0.55, 0.57, 0.6, 1.0))
        plane = pb.createMultiBody(0.0, col, vis, basePosition=(0.0, 0.0, -0.76), physicsClientId=cid)
        if self.task_set == "calvin":  # the table with a shallow recess the drawer's floor slides in
            from integrations.gr1.sim.calvin_fixtures import table_parts

            col, vis = _compound(cid, table_parts(_WOOD))
            table = pb.createMultiBody(0.0, col, vis, basePosition=(0.0, 0.0, 0.0), physicsClientId=cid)
        else:
            col, vis = _box(cid, (0.55, 0.6, 0.375), _WOOD)
            table = pb.createMultiBody(0.0, col, vis, basePosition=(-0.15, 0.0, -0.375), physicsClientId=cid)
        # Sliding door: a rail at the back, a panel sliding along y; an L-shaped handle (a bar
        # at the bottom, a vertical post) leaves room for the fingers above the bar.
        post_z = SLIDER_GRASP_Z + 0.01  # post spans 0.09..0.135 (the hand's underside clears it), the bar below
        slider = _articulated(
            cid, (SLIDER_X + 0.02, 0.0, 0.01), _box(cid, (0.02, 0.30, 0.01), _DARK),
            _compound(cid, [((0.01, 0.10, 0.06), (0.0, 0.0, 0.06), _WOOD),
                            ((0.025, 0.005, 0.005), (SLIDER_HANDLE_X - SLIDER_X + 0.035, 0.0, post_z - 0.045), _HANDLE),
                            ((0.01, 0.01, 0.0225), (SLIDER_HANDLE_X - SLIDER_X, 0.0, post_z - 0.0175), _HANDLE)]),
            (-0.02, 0.0, 0.0), (0, 1, 0), SLIDER_RANGE, friction=8.0,
        )
        # Drawer: a cabinet on the robot's right; the drawer pulls out towards -y. The handle
        # post stands 8 cm in front of the drawer so the open fingers and the hand clear the cabinet.
        drawer_link_y = DRAWER_FRONT_Y + 0.095
        if self.task_set == "calvin":  # a hollow cabinet and a drawer with a floor blocks can lie on
            from integrations.gr1.sim.calvin_fixtures import drawer_shapes

            cabinet_parts, drawer_parts = drawer_shapes((DRAWER_X, DRAWER_FRONT_Y + 0.10, 0.05), drawer_link_y)
            cabinet_shape, drawer_shape = _compound(cid, cabinet_parts), _compound(cid, drawer_parts)
        else:
            cabinet_shape = _box(cid, (0.06, 0.10, 0.05), _DARK)
            drawer_shape = _compound(cid, [((0.05, 0.095, 0.035), (0.0, 0.0, 0.0), _WOOD),
                                           ((0.005, 0.035, 0.005), (0.0, DRAWER_FRONT_Y - 0.035 - drawer_link_y, -0.01), _HANDLE),
                                           ((0.01, 0.01, 0.0225), (0.0, DRAWER_HANDLE_Y_CLOSED - drawer_link_y, 0.0175), _HANDLE)])
        drawer = _articulated(
            cid, (DRAWER_X, DRAWER_FRONT_Y + 0.10, 0.05), cabinet_shape, drawer_shape,
            (0.0, -0.005, 0.0), (0, -1, 0), DRAWER_RANGE, friction=8.0,
        )
        # Button: a housing with a cap on a vertical joint; a weak position motor is its spring.
        button = _articulated(
            cid, (BUTTON_XY[0], BUTTON_XY[1], 0.02), _box(cid, (0.045, 0.045, 0.02), _DARK),
            _box(cid, (0.03, 0.03, 0.01), (0.1, 0.7, 0.1, 1.0)), (0.0, 0.0, 0.03), (0, 0, 1), BUTTON_RANGE, friction=0.0,
        )
        pb.setJointMotorControl2(button, 0, pb.POSITION_CONTROL, targetPosition=0.0, force=6.0, physicsClientId=cid)
        # Switch: a rail with a post sliding along +x (post spans z 0.02..0.08).
        switch = _articulated(
            cid, (SWITCH_HANDLE_X0 + 0.03, SWITCH_Y, 0.01), _box(cid, (0.06, 0.02, 0.01), _DARK),
            _box(cid, (0.01, 0.01, 0.03), (0.9, 0.9, 0.9, 1.0), (0.0, 0.0, 0.03)), (-0.03, 0.0, 0.01), (1, 0, 0),
            SWITCH_RANGE, friction=6.0,
        )
        led = _lamp(cid, (BUTTON_XY[0], BUTTON_XY[1] - 0.08, 0.02), 0.018)
        bulb = _lamp(cid, (SWITCH_HANDLE_X0 + 0.03, SWITCH_Y - 0.09, 0.03), 0.025)
        blocks = {}
        for name, rgba in BLOCK_COLORS.items():
            col, vis = _box(cid, (BLOCK_HALF,) * 3, rgba)
            blocks[name] = pb.createMultiBody(0.08, col, vis, basePosition=(0, 0, BLOCK_HALF), physicsClientId=cid)
            pb.changeDynamics(blocks[name], -1, lateralFriction=1.0, spinningFriction=0.001, physicsClientId=cid)
        plank = None
        if self.task_set == "calvin":  # built last: the classic bodies keep their ids
            from integrations.gr1.sim.calvin_fixtures import build_plank

            plank = build_plank(cid)
        return SceneBodies(plane, table, slider, drawer, button, switch, led, bulb, blocks, plank)

    # ----------------------------------------------------------------- state <-> scene_obs
    def joint(self, body: int) -> float:
        """Position of the prismatic joint of an articulated part."""
        return float(pb.getJointState(body, 0, physicsClientId=self.cid)[0])

    def bulb_on(self) -> bool:
        """The light bulb follows the switch position."""
        return self.joint(self.bodies.switch) > SWITCH_ON_ABOVE

    def get_scene_obs(self) -> np.ndarray:
        """The 24-float ``scene_obs`` (layout in the module docstring)."""
        b = self.bodies
        out = [self.joint(b.slider), self.joint(b.drawer), self.joint(b.button), self.joint(b.switch),
               float(self.bulb_on()), float(self.led_on)]
        for name in BLOCK_COLORS:
            pos, orn = pb.getBasePositionAndOrientation(b.blocks[name], physicsClientId=self.cid)
            out += list(pos) + list(pb.getEulerFromQuaternion(orn))
        return np.asarray(out, dtype=np.float64)

    def set_scene_obs(self, scene_obs: np.ndarray) -> None:
        """Put every part where ``scene_obs`` says (velocities zeroed)."""
        scene_obs = np.asarray(scene_obs, dtype=np.float64)
        if scene_obs.shape != (24,) or not np.all(np.isfinite(scene_obs)):
            raise ValueError(f"scene_obs must be 24 finite floats, got shape {scene_obs.shape}")
        b = self.bodies
        for body, value in zip((b.slider, b.drawer, b.button, b.switch), scene_obs[:4]):
            pb.resetJointState(body, 0, float(value), 0.0, physicsClientId=self.cid)
        self.led_on = bool(scene_obs[5] > 0.5)
        self._button_was_pressed = self.joint(b.button) < BUTTON_PRESSED_BELOW
        for i, name in enumerate(BLOCK_COLORS):
            pose = scene_obs[6 + 6 * i: 12 + 6 * i]
            pb.resetBasePositionAndOrientation(b.blocks[name], pose[:3].tolist(), pb.getQuaternionFromEuler(pose[3:].tolist()),
                                               physicsClientId=self.cid)
            pb.resetBaseVelocity(b.blocks[name], (0, 0, 0), (0, 0, 0), physicsClientId=self.cid)
        self.update_lights()

    def update_lights(self) -> None:
        """Toggle the LED on each new button press (edge) and recolour both lamps."""
        pressed = self.joint(self.bodies.button) < BUTTON_PRESSED_BELOW
        if pressed and not self._button_was_pressed:
            self.led_on = not self.led_on
        self._button_was_pressed = pressed
        pb.changeVisualShape(self.bodies.led, -1, rgbaColor=_LED_ON if self.led_on else _OFF, physicsClientId=self.cid)
        pb.changeVisualShape(self.bodies.bulb, -1, rgbaColor=_BULB_ON if self.bulb_on() else _OFF, physicsClientId=self.cid)


def sample_scene_obs(seed: int) -> np.ndarray:
    """A seeded initial ``scene_obs``: block positions, door/drawer/switch/LED states.

    Block positions and the articulation states come from ``numpy.random.default_rng(seed)``;
    each block's yaw comes from its own generator seeded with the FNV-1 32-bit hash of
    ``"<seed>/block_<colour>"`` (:func:`integrations.gr1.sim.fnv.object_seed`). CALVIN likewise
    draws its block rotations after seeding with an FNV-1 hash (of the initial condition, see
    :func:`integrations.gr1.sim.fnv.calvin_initial_condition_seed`).

    Args:
        seed: the scene seed (any int).
    """
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFF)
    (x0, x1), (y0, y1) = BLOCK_REGION
    positions: list[np.ndarray] = []
    while len(positions) < len(BLOCK_COLORS):
        candidate = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        # 9.5 cm apart: the open gripper fits between blocks when grasping one of them.
        if all(np.linalg.norm(candidate - q) > 0.095 for q in positions):
            positions.append(candidate)
    scene = np.zeros(24)
    scene[0] = SLIDER_RANGE[int(rng.integers(2))]
    scene[1] = DRAWER_RANGE[int(rng.integers(2))]
    scene[3] = SWITCH_RANGE[int(rng.integers(2))]
    scene[4] = float(scene[3] > SWITCH_ON_ABOVE)
    scene[5] = float(rng.integers(2))
    for i, name in enumerate(BLOCK_COLORS):
        yaw = np.random.default_rng(object_seed(seed, f"block_{name}")).uniform(-np.pi / 4, np.pi / 4)
        scene[6 + 6 * i: 12 + 6 * i] = [positions[i][0], positions[i][1], BLOCK_HALF, 0.0, 0.0, yaw]
    return scene
