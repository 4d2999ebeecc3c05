"""The CALVIN task set's fixtures: cabinet plank and open drawer (issue 15, ``task_set="calvin"``).

CALVIN's desk has a plank inside the sliding cabinet (blocks rest on it at ``slider_left`` /
``slider_right``, behind the sliding door) and a drawer blocks can be put or pushed into. With
``task_set="calvin"`` the scene gets:

- **Cabinet plank** (:func:`build_plank`): a 1.2 cm board along the sliding door, on the robot's
  side of the door panel and under its handle (``x`` 0.095..0.18, ``y`` -0.21..0.21). The Panda
  cannot reach behind the panel (``x > 0.19``) with a top-down grasp, so the plank lies in front
  of it; from the static camera (at ``+x``) the panel stands in front of the plank, as CALVIN's
  door in front of its shelf. Each half holds two blocks (:data:`SHELF_SLOTS`: an outer slot,
  where CALVIN's start states put them, and an inner one, 11 cm apart so the open fingers fit
  between). The door's handle runs over the plank 2 cm above a block's top, and on the half the
  door covers the hand would hit it: as in CALVIN, only blocks on the half the door has left are
  reachable; the door still slides freely over all blocks.
- **Drawer** (:func:`drawer_shapes`): a hollow cabinet (top, two side walls, back wall) and a
  drawer with a floor 1 mm below the table top (in a 1 cm recess of the table,
  :func:`table_parts`), a front panel (the handle is as in the classic scene), a low back wall and
  a low wall on the far (``-x``) side; its ``+x`` side, facing the work area, is open.
  ``push_into_drawer`` pushes a table block along ``-x`` off the table edge onto the drawer's
  floor, as CALVIN pushes blocks off the table edge into its drawer. It holds two blocks, one
  behind the other along ``y`` (:data:`DRAWER_SLOTS_Y`); a block in the drawer moves with it into
  the cabinet when it closes. The drawer is 3 cm wider than the classic one so the fingers fit
  around a block in it; joint, handle and ``scene_obs`` are unchanged. The cabinet is 6 cm tall
  (the classic one 10 cm) so the hand passes over it while its fingers grasp in the drawer.

The table slots of CALVIN's start states (:data:`TABLE_SLOTS`) are this scene's images of
CALVIN's two slots; :func:`realise_initial_state` turns an official symbolic start state into a
``scene_obs`` of this scene, drawing slots and yaws exactly as
:func:`integrations.gr1.calvin_chains.initial_state_to_obs` (CALVIN's FNV-1 seeding).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pybullet as pb

from integrations.gr1.sim.scene import (
    BLOCK_HALF, DRAWER_FRONT_Y, DRAWER_HANDLE_Y_CLOSED, DRAWER_RANGE, DRAWER_X, SLIDER_RANGE, SWITCH_ON_ABOVE, SWITCH_RANGE,
)

TASK_SETS = ("classic", "calvin")
"""``"classic"`` (the default scene and the 25 tasks) or ``"calvin"`` (adds these fixtures and CALVIN's 34 tasks)."""

PLANK_CENTER, PLANK_HALF = (0.1375, 0.0, 0.006), (0.0425, 0.21, 0.006)
PLANK_TOP_Z = PLANK_CENTER[2] + PLANK_HALF[2]
SHELF_X = 0.125
"""``x`` of a block's centre on the plank (away from the door panel, so the hand clears it)."""
SHELF_SLOTS = {"slider_left": (-0.155, -0.045), "slider_right": (0.155, 0.045)}
"""``y`` of the block slots (outer, inner) on each half of the plank ("left" = ``-y``, as the task names)."""
SHELF_Z = PLANK_TOP_Z + BLOCK_HALF

DRAWER_HALF_X = 0.065
"""Half width (``x``) of the calvin drawer (the classic one: 0.05)."""
DRAWER_FLOOR_TOP = -0.001
"""The drawer floor lies 1 mm below the table top (z = 0), in a 1 cm recess of the table under the
drawer's travel: a block pushed off the table edge drops onto it and rests on it alone (a floor
0.5 mm above the table caught the block's leading edge and turned it)."""
TABLE_RECESS = ((DRAWER_X - DRAWER_HALF_X, DRAWER_X + DRAWER_HALF_X), (0.15, 0.6), -0.01)
"""``((x_min, x_max), (y_min, y_max), depth)`` of the table's recess under the drawer."""
CABINET_TOP_Z = 0.06
"""Top of the hollow drawer cabinet: a block in the closed drawer fits under it (6 mm to spare), and
the hand (~3.9 cm above the TCP, long along ``y``) passes over it while grasping in the open drawer."""
DRAWER_SLOTS_Y = (0.195, 0.27)
"""``y`` of the two block slots in the fully open drawer (at ``x = DRAWER_X``), between its front
panel and the cabinet; a block pushed into the drawer travels along ``-x`` at a slot's ``y``."""
DRAWER_OPEN_EDGE_X = DRAWER_X + DRAWER_HALF_X
"""The drawer's open (``+x``) side."""

SINK = 0.0002
"""Start states put blocks this far (m) into their support, so the contact registers before any step."""
TABLE_SLOTS = ((-0.08, -0.06), (0.02, 0.04))
"""This scene's ``(x, y)`` of CALVIN's two table slots (CALVIN ``(x, y)`` = (0.05, -0.12) and
(0.23, -0.12)): the first is left of the second, as in CALVIN; 10 cm apart along ``x`` so each
block can be pushed 10 cm left or right past the other, as CALVIN's chains assume; and far enough
from the plank, the slider's handle and the open drawer's handle that a hand turning a block on
them does not hit those (at ``(0.05, 0.05)`` it knocked the slider's handle)."""

_WOOD = (0.72, 0.55, 0.38, 1.0)
_PLANK = (0.62, 0.47, 0.32, 1.0)
_DARK = (0.35, 0.3, 0.28, 1.0)
_HANDLE = (0.15, 0.15, 0.15, 1.0)


def check_task_set(task_set: str) -> str:
    """``task_set`` if known, else a ``ValueError`` naming it."""
    if task_set not in TASK_SETS:
        raise ValueError(f"task_set must be one of {TASK_SETS}, got {task_set!r}")
    return task_set


def build_plank(cid: int) -> int:
    """The cabinet plank, a static box (its contacts are CALVIN's ``plank_link``)."""
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=PLANK_HALF, physicsClientId=cid)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=PLANK_HALF, rgbaColor=_PLANK, physicsClientId=cid)
    return pb.createMultiBody(0.0, col, vis, basePosition=PLANK_CENTER, physicsClientId=cid)


def drawer_shapes(base_pos: tuple[float, float, float], link_y: float) -> tuple[list[tuple], list[tuple]]:
    """``(cabinet parts, drawer parts)`` as ``(half_extents, offset, rgba)`` boxes relative to the
    cabinet base at ``base_pos`` and the drawer link at ``(DRAWER_X, link_y, base_pos[2])`` (closed)."""
    bz = base_pos[2]  # both frames sit 5 cm above the table
    hx = DRAWER_HALF_X + 0.008
    wall = CABINET_TOP_Z - 0.008  # walls up to the 8 mm top board
    cabinet = [((hx, 0.10, 0.004), (0.0, 0.0, CABINET_TOP_Z - 0.004 - bz), _DARK),  # top
               ((0.004, 0.10, wall / 2), (-hx + 0.004, 0.0, wall / 2 - bz), _DARK),  # side walls
               ((0.004, 0.10, wall / 2), (hx - 0.004, 0.0, wall / 2 - bz), _DARK),
               ((hx, 0.003, wall / 2), (0.0, 0.097, wall / 2 - bz), _DARK)]  # back wall
    floor_half = 0.003
    drawer = [((DRAWER_HALF_X, 0.095, floor_half), (0.0, 0.0, DRAWER_FLOOR_TOP - floor_half - bz), _WOOD),
              ((0.003, 0.095, 0.01), (-DRAWER_HALF_X + 0.003, 0.0, 0.01 - bz), _WOOD),  # low far (-x) wall, under the fingertips
              ((DRAWER_HALF_X, 0.003, 0.025), (0.0, -0.092, 0.025 - bz), _WOOD),  # front panel
              ((DRAWER_HALF_X, 0.003, 0.015), (0.0, 0.092, 0.015 - bz), _WOOD),  # low back wall
              ((0.005, 0.035, 0.005), (0.0, DRAWER_FRONT_Y - 0.035 - link_y, -0.01), _HANDLE),
              ((0.01, 0.01, 0.0225), (0.0, DRAWER_HANDLE_Y_CLOSED - link_y, 0.0175), _HANDLE)]
    return cabinet, drawer


def table_parts(rgba: tuple) -> list[tuple]:
    """The table (top at z = 0, as the classic box: x -0.70..0.40, y -0.6..0.6, 0.75 m tall) as boxes
    ``(half_extents, world centre, rgba)`` around :data:`TABLE_RECESS`."""
    (x0, x1), (y0, y1), depth = TABLE_RECESS
    half_z, z = 0.375, -0.375
    return [((0.5 * (x0 + 0.70), 0.6, half_z), (0.5 * (x0 - 0.70), 0.0, z), rgba),  # robot side
            ((0.5 * (0.40 - x1), 0.6, half_z), (0.5 * (0.40 + x1), 0.0, z), rgba),  # work-area side
            ((0.5 * (x1 - x0), 0.5 * (y0 + 0.6), half_z), (0.5 * (x0 + x1), 0.5 * (y0 - 0.6), z), rgba),
            ((0.5 * (x1 - x0), 0.5 * (0.6 - y0), half_z + 0.5 * depth), (0.5 * (x0 + x1), 0.5 * (y0 + 0.6), z + 0.5 * depth), rgba)]


def block_place(scene_obs: np.ndarray, color_index: int) -> str:
    """Where block ``color_index`` rests in a ``scene_obs``: ``"table"``, ``"slider_left"``,
    ``"slider_right"`` or ``"drawer"`` (by position, for reading start states)."""
    x, y, z = np.asarray(scene_obs, dtype=np.float64)[6 + 6 * color_index: 9 + 6 * color_index]
    drawer_x = (DRAWER_X - DRAWER_HALF_X, DRAWER_OPEN_EDGE_X)
    if drawer_x[0] <= x <= drawer_x[1] and y > DRAWER_FRONT_Y - scene_obs[1] - 0.01 and z < BLOCK_HALF + 0.01:
        return "drawer"
    if abs(z - SHELF_Z) < 0.01 and PLANK_CENTER[0] - PLANK_HALF[0] <= x <= PLANK_CENTER[0] + PLANK_HALF[0]:
        return "slider_left" if y < 0 else "slider_right"
    return "table"


def realise_initial_state(initial_state: Mapping[str, Any]) -> np.ndarray:
    """This scene's ``scene_obs`` (24,) of a CALVIN symbolic start state.

    The slot and yaw draws are CALVIN's own (:func:`integrations.gr1.calvin_chains.initial_state_to_obs`,
    seeded with the FNV-1 32 hash of the state): a block CALVIN puts on table slot ``k`` goes to
    :data:`TABLE_SLOTS` ``[k]``, one on ``slider_left``/``right`` to that half's outer slot; each yaw
    is CALVIN's minus 90 deg (CALVIN's frame is this one turned by -90 deg about z). The slider,
    drawer, switch and LED take this scene's end positions for CALVIN's states.

    Raises:
        ValueError: a malformed state (from :func:`integrations.gr1.calvin_chains.initial_state_to_obs`).
    """
    from integrations.gr1.calvin_chains import BLOCK_TABLE_SLOTS, initial_state_to_obs

    _, calvin = initial_state_to_obs(initial_state)
    scene = np.zeros(24)
    scene[0] = SLIDER_RANGE[0] if initial_state["slider"] == "left" else SLIDER_RANGE[1]
    scene[1] = DRAWER_RANGE[1] if initial_state["drawer"] == "open" else DRAWER_RANGE[0]
    scene[3] = SWITCH_RANGE[1] if initial_state["lightbulb"] == 1 else SWITCH_RANGE[0]
    scene[4], scene[5] = float(scene[3] > SWITCH_ON_ABOVE), float(initial_state["led"])
    for i, color in enumerate(("red", "blue", "pink")):
        place = initial_state[f"{color}_block"]
        if place == "table":
            slot = int(np.argmin([np.linalg.norm(calvin[6 + 6 * i: 9 + 6 * i] - s) for s in BLOCK_TABLE_SLOTS]))
            x, y, z = (*TABLE_SLOTS[slot], BLOCK_HALF - SINK)
        else:
            x, y, z = SHELF_X, SHELF_SLOTS[place][0], SHELF_Z - SINK
        yaw = float((calvin[11 + 6 * i] - np.pi / 2 + np.pi) % (2 * np.pi) - np.pi)
        scene[6 + 6 * i: 12 + 6 * i] = [x, y, z, 0.0, 0.0, yaw]
    return scene


def random_initial_state(rng: np.random.Generator) -> dict[str, Any]:
    """A CALVIN-style symbolic start state (CALVIN's keys in order): each block on the table or on
    one half of the plank: at most one block per half and at most two on the table (CALVIN's two
    table slots)."""
    while True:
        places = [("table", "slider_left", "slider_right")[int(rng.integers(3))] for _ in range(3)]
        shelf = [p for p in places if p != "table"]
        if len(shelf) == len(set(shelf)) and places.count("table") < 3:
            break
    return {"led": int(rng.integers(2)), "lightbulb": int(rng.integers(2)), "slider": ("left", "right")[int(rng.integers(2))],
            "drawer": ("open", "closed")[int(rng.integers(2))], "red_block": places[0], "blue_block": places[1],
            "pink_block": places[2], "grasped": 0}


def free_slot(candidates: list[tuple[float, float]], occupied: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The first ``(x, y)`` of ``candidates`` with no block centre of ``occupied`` within 5 cm (``None``: all taken)."""
    for slot in candidates:
        if all(np.hypot(slot[0] - o[0], slot[1] - o[1]) > 0.05 for o in occupied):
            return slot
    return None
