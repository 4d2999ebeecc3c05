"""Scripted plans for the 9 tasks of the CALVIN task set (issue 15, ``task_set="calvin"``).

:meth:`integrations.gr1.sim.expert.ScriptedExpert.plan` hands these tasks here; the plans use the
fixtures of :mod:`integrations.gr1.sim.calvin_fixtures`:

- ``lift_<colour>_block_slider`` / ``_drawer``: top-down grasp of the block where it lies and a
  lift to 15 cm (in the drawer the fingers close along ``x``, clear of its front panel, and grasp
  6 mm above the block's centre, so the hand passes over the cabinet top);
- ``place_in_slider`` / ``place_in_drawer``: carry the held block above the first free slot of the
  open half of the plank (:func:`integrations.gr1.sim.calvin_task_set.open_half`) or of the drawer,
  lower it to 6 mm above the surface, release, and leave slowly upwards;
- ``push_into_drawer``: the block :func:`integrations.gr1.sim.calvin_task_set.drawer_push_block`
  picks is pushed with the closed gripper along ``-x``, off the table edge onto the floor of the
  open drawer, in line with the drawer's free slot. A block out of line (more than 1 cm along
  ``y``), turned (more than 0.1 rad off square) or outside ``-0.06 <= x <= 0`` (the pusher would
  come down on the plank; the block would meet the drawer's front panel) is first lifted 3 cm,
  carried there and set down square: pushed sideways over up to 35 cm by the fingertips, blocks
  turned and slid off course (2 of 9 such pushes failed), and pushed on a corner a block turns and
  drifts ~2.5 cm, too much for the drawer's second slot. The oracle, like CALVIN's
  ``push_object_into``, only asks that the block rest on the table alone at the start and lie in
  the drawer, untouched, at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from integrations.gr1.sim.calvin_fixtures import (
    DRAWER_FLOOR_TOP, DRAWER_SLOTS_Y, DRAWER_X, SHELF_SLOTS, SHELF_X, SHELF_Z, free_slot,
)
from integrations.gr1.sim.calvin_task_set import LANE_TOLERANCE, calvin_symbolic_state, drawer_push_block, open_half
from integrations.gr1.sim.scene import BLOCK_HALF, DRAWER_RANGE
from integrations.gr1.sim.tasks import COLORS

if TYPE_CHECKING:
    from integrations.gr1.sim.expert import ScriptedExpert, Waypoint

LIFT_Z = 0.15
"""TCP height a lift ends at."""
PUSH_Z = 0.022
"""TCP height while pushing (as the classic pushes)."""
PUSHER_GAP = 0.035
"""Distance (m) between the pusher (TCP) and the block's face where a push starts."""
PUSH_FROM_X = (-0.06, 0.0)
"""Range of ``x`` a block is pushed from: further out the descending pusher lands on the plank,
further in the block would hit the drawer's front panel on its way into line."""
SQUARE_TOLERANCE = 0.1
"""A block turned more than this (rad, modulo 90 deg) is squared before the push: pushed on a corner it turns and drifts."""
PUSHER_CONTACT = 0.02
"""TCP-to-face distance while the closed fingers push a block (measured with the classic pushes)."""


def _quarter_wrap(angle: float) -> float:
    return float((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def _unwind(pos: np.ndarray, yaw: float, gripper: float) -> list["Waypoint"]:
    """After a drawer grasp or release at a yaw near 90 deg, turn the hand back within 45 deg of 0
    (same finger axes), where the classic plans leave it, so the next task starts from a wrist
    with room to turn either way."""
    from integrations.gr1.sim.expert import Waypoint

    safe = _quarter_wrap(yaw)
    return [] if abs(safe - yaw) < 1e-6 else [Waypoint(pos, safe, gripper)]


def _reach(yaw: float) -> float:
    """Centre-to-face distance of a block along a table axis, for its yaw."""
    return BLOCK_HALF * (abs(np.cos(yaw)) + abs(np.sin(yaw)))


def plan_calvin_task(expert: "ScriptedExpert", task: str, scene: np.ndarray) -> list["Waypoint"]:
    """Waypoints of one of the 9 CALVIN-only tasks from the current state (after the expert's move up).

    Raises:
        RuntimeError: the task cannot start from this state (no held block, drawer closed, ...).
    """
    from integrations.gr1.sim.expert import SAFE_Z, Waypoint

    state = calvin_symbolic_state(scene)
    if task.startswith("lift_"):
        color = task.split("_")[1]
        place = "drawer" if task.endswith("_drawer") else open_half(state)
        if state.places.get(color) != place or (place == "drawer" and not state.drawer_open):
            raise RuntimeError(f"{task}: the {color} block is not reachable there (places {state.places})")
        block = scene[6 + 6 * COLORS.index(color): 12 + 6 * COLORS.index(color)]
        # In the drawer the fingers close along x: along y they would touch its front panel.
        across = np.pi / 2 if place == "drawer" else 0.0
        yaw = across + _quarter_wrap(block[5] - across)
        # In the drawer, grasp 6 mm above the centre: the hand then clears the cabinet top behind it.
        grasp = np.array([block[0], block[1], block[2] + (0.006 if place == "drawer" else -0.0025)])
        return [Waypoint(np.array([block[0], block[1], SAFE_Z]), yaw, 1.0), Waypoint(grasp, yaw, 1.0, tol=0.004),
                Waypoint(grasp, yaw, -1.0, settle=10), Waypoint(np.array([block[0], block[1], LIFT_Z]), yaw, -1.0),
                *_unwind(np.array([block[0], block[1], LIFT_Z]), yaw, -1.0)]
    if task.startswith("place_in_"):
        held = expert.held_block()
        if held is None:
            raise RuntimeError(f"{task} needs a held block")
        if task == "place_in_slider":
            slot = free_slot([(SHELF_X, y) for y in SHELF_SLOTS[open_half(state)]], _blocks_xy(scene, held))
            surface_z, across = SHELF_Z - BLOCK_HALF, 0.0
        else:
            if not state.drawer_open:
                raise RuntimeError("place_in_drawer: the drawer is closed")
            slot, surface_z, across = _drawer_slot(scene, held, far=0.28), DRAWER_FLOOR_TOP, np.pi / 2
        if slot is None:
            raise RuntimeError(f"{task}: no free slot")
        x, y = slot
        robot = expert.env.get_robot_obs()
        offset = scene[8 + 6 * COLORS.index(held)] - robot[2]  # block centre relative to the TCP while held
        yaw = across + _quarter_wrap(float(robot[5]) - across)  # the block turns with the hand: square it with the table
        release = np.array([x, y, surface_z + BLOCK_HALF + 0.006 - offset])
        return [Waypoint(np.array([x, y, SAFE_Z]), yaw, -1.0), Waypoint(release, yaw, -1.0, tol=0.004),
                Waypoint(release, yaw, 1.0, settle=10),
                *[Waypoint(release + np.array([0.0, 0.0, 0.005 * k]), yaw, 1.0, tol=0.003, max_steps=10) for k in range(1, 9)],
                Waypoint(np.array([x, y, SAFE_Z]), yaw, 1.0), *_unwind(np.array([x, y, SAFE_Z]), yaw, 1.0)]
    if task == "push_into_drawer":
        return _plan_push_into_drawer(state, scene)
    raise KeyError(f"not a CALVIN-only task: {task!r}")


def _blocks_xy(scene: np.ndarray, but: str | None = None) -> list[tuple[float, float]]:
    return [(float(scene[6 + 6 * i]), float(scene[7 + 6 * i])) for i, c in enumerate(COLORS) if c != but]


def _drawer_slot(scene: np.ndarray, but: str | None = None, far: float = 0.272) -> tuple[float, float] | None:
    """Where a block goes into the drawer as it is now: its first free slot, else the point of its
    open part up to ``y = far`` farthest from the block in it (a pushed block may stop between the
    slots, and a push may drag the drawer a little); ``None`` when no point is 5 cm clear. A block
    set down from above may reach 5 mm under the cabinet top (``far`` 0.28), a pushed one must pass
    its side wall (0.272)."""
    shift = DRAWER_RANGE[1] - scene[1]  # the slots are given for the fully open drawer
    occupied = _blocks_xy(scene, but)
    slot = free_slot([(DRAWER_X, y + shift) for y in DRAWER_SLOTS_Y], occupied)
    if slot is not None:
        return slot
    lo, hi = DRAWER_SLOTS_Y[0] + shift, min(far + shift, far)
    inside = [y for x, y in occupied if abs(x - DRAWER_X) < 0.07 and lo - 0.05 < y < hi + 0.05]
    best = max(np.linspace(lo, hi, 18), key=lambda y: min(abs(y - o) for o in inside))
    return (DRAWER_X, float(best)) if min(abs(best - o) for o in inside) >= 0.05 else None


def _plan_push_into_drawer(state, scene: np.ndarray) -> list["Waypoint"]:
    from integrations.gr1.sim.expert import SAFE_Z, Waypoint

    color = drawer_push_block(state.blocks, state.obstacles)
    slot = _drawer_slot(scene, color)
    if not state.drawer_open or slot is None or color is None:
        raise RuntimeError("push_into_drawer needs the drawer open with room and a table block with a clear path")
    lane = slot[1]
    block = scene[6 + 6 * COLORS.index(color): 12 + 6 * COLORS.index(color)]
    x, y, reach = float(block[0]), float(block[1]), _reach(float(block[5]))
    waypoints = []
    yaw = _quarter_wrap(float(block[5]))
    from_x = float(np.clip(x, *PUSH_FROM_X))
    if abs(y - lane) > LANE_TOLERANCE or abs(yaw) > SQUARE_TOLERANCE or from_x != x:  # first carried in line, squared
        grasp, down = np.array([x, y, BLOCK_HALF - 0.0025]), np.array([from_x, lane, BLOCK_HALF - 0.0025])
        waypoints += [Waypoint(np.array([x, y, SAFE_Z]), yaw, 1.0), Waypoint(grasp, yaw, 1.0, tol=0.004),
                      Waypoint(grasp, yaw, -1.0, settle=10), Waypoint(grasp + np.array([0.0, 0.0, 0.03]), yaw, -1.0),
                      Waypoint(down + np.array([0.0, 0.0, 0.03]), 0.0, -1.0),
                      Waypoint(down, 0.0, -1.0, tol=0.003, max_steps=40), Waypoint(down, 0.0, 1.0, settle=8),
                      *[Waypoint(down + np.array([0.0, 0.0, 0.005 * k]), 0.0, 1.0, tol=0.003, max_steps=10) for k in range(1, 9)],
                      Waypoint(np.array([down[0], lane, 0.08]), 0.0, -1.0)]
        x, reach = float(down[0]), BLOCK_HALF  # set down square to the push
    start_x = x + reach + PUSHER_GAP
    end_x = DRAWER_X + reach + PUSHER_CONTACT
    waypoints += [Waypoint(np.array([start_x, lane, max(SAFE_Z if not waypoints else 0.08, 0.08)]), 0.0, -1.0),
                  Waypoint(np.array([start_x, lane, PUSH_Z]), 0.0, -1.0, tol=0.005),
                  Waypoint(np.array([end_x, lane, PUSH_Z]), 0.0, -1.0, tol=0.004, max_steps=60),
                  Waypoint(np.array([end_x + 0.03, lane, PUSH_Z + 0.01]), 0.0, -1.0),  # off the block: untouched at the end
                  Waypoint(np.array([end_x + 0.03, lane, SAFE_Z]), 0.0, 1.0)]
    return waypoints
