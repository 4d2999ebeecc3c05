"""The embedded tabletop's state in ``calvin_env``'s info layout (paper §4.4; issue 15).

:func:`calvin_info` returns ``{"robot_info", "scene_info"}`` as ``calvin_env``'s
``env.get_info()`` does, so CALVIN's own task oracle (:class:`integrations.gr1.calvin_tasks.Tasks`)
judges the embedded env exactly as it judges the real one. The mapping:

- **Frame.** Positions, orientations and velocities are turned into CALVIN's frame by
  :func:`integrations.gr1.sim.cameras.here_to_calvin` (a -90 deg turn about z): CALVIN's "right"
  (``+x``) is this scene's "right" (``+y``), a positive turn about z is "left" in both.
- **Fixed objects.** CALVIN's desk is one body ``"table"`` whose links are the drawer, the slide
  and the plank inside the sliding cabinet. Here they are separate bodies; a contact with them is
  reported as a contact with ``"table"`` on the link of the same role (:data:`TABLE_LINKS`).
  The classic scene (``task_set="classic"``, the default) has no cabinet plank and a solid drawer,
  so nothing ever rests on ``plank_link`` or in the drawer there. With ``task_set="calvin"`` the
  cabinet plank (:mod:`integrations.gr1.sim.calvin_fixtures`) reports as ``plank_link``, the
  drawer (its moving body: floor, walls, handle) as ``drawer_link`` and its hollow cabinet as
  ``base_link``, so ``lift_*_block_slider/drawer``, ``place_in_slider/drawer`` and
  ``push_into_drawer`` are judged as in CALVIN.
- **Doors.** ``base__slide`` (CALVIN: 0 = right end, 0.28 = left end) and ``base__drawer``
  (0 = closed, 0.22 = open) are this scene's joints mapped linearly onto CALVIN's travel, so the
  oracle's thresholds (0.15, 0.12) stand for the same share of the travel.
- **Lights.** ``lightbulb`` and ``led`` logical states from ``scene_obs[4]`` / ``scene_obs[5]``.

A contact is ``(0, body_a, body_b, link_a, link_b)``: items 2 and 4, all the oracle reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pybullet as pb

from integrations.gr1.sim.cameras import here_to_calvin
from integrations.gr1.sim.scene import DRAWER_RANGE, SLIDER_RANGE

if TYPE_CHECKING:
    from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv

TABLE_LINKS = {"base_link": -1, "plank_link": 0, "drawer_link": 1, "slide_link": 2, "button_link": 3, "switch_link": 4}
"""Link ids of the pseudo-body ``"table"`` (CALVIN's link names where they exist)."""
CALVIN_SLIDER_LEFT, CALVIN_DRAWER_OPEN = 0.28, 0.22
"""CALVIN's slide joint at its left end and drawer joint when open (its evaluation start states)."""
_TO_CALVIN = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
"""Rotation matrix of :func:`here_to_calvin`."""


def _matrix_to_quaternion(rot: np.ndarray) -> list[float]:
    """3x3 rotation -> ``(x, y, z, w)`` via pybullet's euler helpers (same convention as its quaternions)."""
    b = -np.arcsin(np.clip(rot[2, 0], -1.0, 1.0))
    a, c = np.arctan2(rot[2, 1], rot[2, 2]), np.arctan2(rot[1, 0], rot[0, 0])
    return list(pb.getQuaternionFromEuler([float(a), float(b), float(c)]))


def slider_state(joint: float) -> float:
    """This scene's slider joint -> CALVIN's ``base__slide`` (0 right end .. 0.28 left end)."""
    return float((SLIDER_RANGE[1] - joint) / (SLIDER_RANGE[1] - SLIDER_RANGE[0]) * CALVIN_SLIDER_LEFT)


def drawer_state(joint: float) -> float:
    """This scene's drawer joint -> CALVIN's ``base__drawer`` (0 closed .. 0.22 open)."""
    return float((joint - DRAWER_RANGE[0]) / (DRAWER_RANGE[1] - DRAWER_RANGE[0]) * CALVIN_DRAWER_OPEN)


def calvin_info(env: "CalvinTabletopEnv") -> dict[str, Any]:
    """``{"robot_info": ..., "scene_info": ...}`` of the current state (layout in :mod:`integrations.gr1.calvin_tasks`)."""
    cid, bodies = env.cid, env.scene.bodies
    pb.performCollisionDetection(physicsClientId=cid)  # contacts are current even right after a reset
    table = bodies.table
    as_table = {bodies.table: TABLE_LINKS["base_link"], bodies.drawer: TABLE_LINKS["drawer_link"],
                bodies.slider: TABLE_LINKS["slide_link"], bodies.button: TABLE_LINKS["button_link"],
                bodies.switch: TABLE_LINKS["switch_link"]}
    if bodies.plank is not None:
        as_table[bodies.plank] = TABLE_LINKS["plank_link"]
    hollow_cabinet = bodies.drawer if bodies.plank is not None else None  # calvin fixtures: the cabinet is not the drawer

    def contacts(body: int) -> list[tuple[int, int, int, int, int]]:
        found = set()
        for c in pb.getContactPoints(bodyA=body, physicsClientId=cid):
            other, link = (table, as_table[c[2]]) if c[2] in as_table else (c[2], c[4])
            if c[2] == hollow_cabinet and c[4] == -1:
                link = TABLE_LINKS["base_link"]
            found.add((0, body, other, c[3], link))
        return sorted(found)

    movable = {}
    for name, uid in bodies.blocks.items():
        pos, orn = pb.getBasePositionAndOrientation(uid, physicsClientId=cid)
        lin, ang = pb.getBaseVelocity(uid, physicsClientId=cid)
        rot = _TO_CALVIN @ np.reshape(pb.getMatrixFromQuaternion(orn), (3, 3))
        movable[f"block_{name}"] = {
            "uid": uid, "current_pos": here_to_calvin(pos).tolist(), "current_orn": _matrix_to_quaternion(rot),
            "current_lin_vel": here_to_calvin(lin).tolist(), "current_ang_vel": here_to_calvin(ang).tolist(),
            "contacts": contacts(uid),
        }
    scene_obs = env.scene.get_scene_obs()
    return {
        "robot_info": {"uid": env.robot, "contacts": contacts(env.robot)},
        "scene_info": {
            "fixed_objects": {"table": {"uid": table, "links": dict(TABLE_LINKS)}},
            "movable_objects": movable,
            "doors": {"base__slide": {"current_state": slider_state(scene_obs[0])},
                      "base__drawer": {"current_state": drawer_state(scene_obs[1])}},
            "lights": {"lightbulb": {"logical_state": int(scene_obs[4] > 0.5)}, "led": {"logical_state": int(scene_obs[5] > 0.5)}},
        },
    }
