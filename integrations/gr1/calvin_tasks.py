"""CALVIN's task oracle, read from its task definitions (paper §4.4, Table 3).

A task is a change between two ``env.get_info()`` snapshots. ``new_playtable_tasks.yaml``
(package data, copied from CALVIN) names, per task, a base check and its arguments, e.g.
``push_red_block_right: [push_object, 'block_red', 0.1, 0]``. :class:`Tasks` binds each entry to
one of the base checks below and answers ``get_task_info(start_info, end_info)`` (every task
completed) and ``get_task_info_for_set(start_info, end_info, {task})`` as CALVIN's
``calvin_env.envs.tasks.Tasks`` does, so the real ``calvin_env`` needs nothing from
``calvin_agent``.

The info dicts follow ``calvin_env``'s layout::

    {"robot_info": {"uid": int, "contacts": [contact, ...]},
     "scene_info": {"fixed_objects": {name: {"uid": int, "links": {link_name: link_id}}},
                    "movable_objects": {name: {"uid", "current_pos" (3), "current_orn" (quaternion xyzw),
                                               "current_lin_vel" (3), "current_ang_vel" (3), "contacts"}},
                    "doors": {joint_name: {"current_state": float}},
                    "lights": {name: {"logical_state": int}}}}

where a contact is a ``pybullet.getContactPoints`` tuple: item 2 is the other body's uid and
item 4 its link index. Positions are metres, ``+x`` is "right" and rotations about ``+z`` by a
positive angle are "left" (CALVIN's conventions).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import yaml

from integrations.gr1.calvin_chains import TASKS_FILE

Info = Mapping[str, Any]


# ---------------------------------------------------------------------- info accessors
def _obj(info: Info, name: str) -> Mapping[str, Any]:
    try:
        return info["scene_info"]["movable_objects"][name]
    except KeyError as err:
        raise KeyError(f"info has no scene_info.movable_objects[{name!r}] (missing {err})") from err


def _fixed(info: Info, name: str) -> Mapping[str, Any]:
    try:
        return info["scene_info"]["fixed_objects"][name]
    except KeyError as err:
        raise KeyError(f"info has no scene_info.fixed_objects[{name!r}] (missing {err})") from err


def _bodies(contacts: Iterable[Sequence]) -> set[int]:
    return {int(c[2]) for c in contacts}


def _body_links(contacts: Iterable[Sequence]) -> set[tuple[int, int]]:
    return {(int(c[2]), int(c[4])) for c in contacts}


def _robot(info: Info) -> int:
    return int(info["robot_info"]["uid"])


def _fixed_link(info: Info, body: str, link: str) -> tuple[int, int]:
    fixed = _fixed(info, body)
    if link not in fixed["links"]:
        raise KeyError(f"fixed object {body!r} has no link {link!r} (has {sorted(fixed['links'])})")
    return int(fixed["uid"]), int(fixed["links"][link])


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """``(x, y, z, w)`` quaternion (pybullet's order) -> 3x3 rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_euler_xyz(rot: np.ndarray) -> np.ndarray:
    """Extrinsic x-y-z angles (rad) of ``rot = Rz(c) @ Ry(b) @ Rx(a)`` (scipy's ``"xyz"``, pybullet's euler)."""
    b = -np.arcsin(np.clip(rot[2, 0], -1.0, 1.0))
    a = np.arctan2(rot[2, 1], rot[2, 2])
    c = np.arctan2(rot[1, 0], rot[0, 0])
    return np.array([a, b, c])


# ---------------------------------------------------------------------- base checks
def rotate_object(obj_name: str, z_degrees: float, x_y_threshold: float = 30, z_threshold: float = 180,
                  movement_threshold: float = 0.1, *, start_info: Info, end_info: Info) -> bool:
    """Rotated by more than ``z_degrees`` about z (sign = direction, below ``z_threshold``), less than
    ``x_y_threshold`` about x and y, moved at most ``movement_threshold`` m, and resting on
    something other than the robot at the end."""
    start, end = _obj(start_info, obj_name), _obj(end_info, obj_name)
    if np.linalg.norm(np.subtract(end["current_pos"], start["current_pos"])) > movement_threshold:
        return False
    if not _bodies(end["contacts"]) - {_robot(start_info)}:
        return False
    relative = quaternion_to_matrix(end["current_orn"]) @ quaternion_to_matrix(start["current_orn"]).T
    x, y, z = np.degrees(matrix_to_euler_xyz(relative))
    tilt_ok = abs(x) < x_y_threshold and abs(y) < x_y_threshold
    if z_degrees > 0:
        return bool(tilt_ok and z_degrees < z < z_threshold)
    return bool(tilt_ok and -z_threshold < z < z_degrees)


def push_object(obj_name: str, x_direction: float, y_direction: float, *, start_info: Info, end_info: Info) -> bool:
    """Moved more than ``x_direction`` (or ``y_direction``; one is 0) metres that way while resting
    on the same non-robot bodies at start and end."""
    if x_direction * y_direction != 0 or x_direction + y_direction == 0:
        raise ValueError(f"push_object({obj_name!r}): exactly one of x_direction/y_direction must be non-zero")
    start, end = _obj(start_info, obj_name), _obj(end_info, obj_name)
    robot = {_robot(start_info)}
    support_start, support_end = _bodies(start["contacts"]) - robot, _bodies(end["contacts"]) - robot
    if not support_start or support_start != support_end:
        return False
    moved = np.subtract(end["current_pos"], start["current_pos"])
    axis, goal = (0, x_direction) if x_direction != 0 else (1, y_direction)
    return bool(moved[axis] > goal if goal > 0 else moved[axis] < goal)


def lift_object(obj_name: str, z_direction: float, surface_body: str | None = None, surface_link: str | None = None,
                *, start_info: Info, end_info: Info) -> bool:
    """Raised by more than ``z_direction`` m, untouched by the robot at the start, held only by the
    robot at the end, and (when given) resting on ``surface_body`` / its ``surface_link`` at the start."""
    if z_direction <= 0:
        raise ValueError(f"lift_object({obj_name!r}): z_direction must be > 0, got {z_direction}")
    start, end = _obj(start_info, obj_name), _obj(end_info, obj_name)
    robot = _robot(start_info)
    start_bodies, end_bodies = _bodies(start["contacts"]), _bodies(end["contacts"])
    on_surface = True
    if surface_body is not None and surface_link is None:
        on_surface = int(_fixed(start_info, surface_body)["uid"]) in start_bodies
    elif surface_body is not None:
        on_surface = _fixed_link(start_info, surface_body, surface_link) in _body_links(start["contacts"])
    lifted = end["current_pos"][2] - start["current_pos"][2] > z_direction
    return bool(lifted and robot not in start_bodies and end_bodies == {robot} and on_surface)


def place_object(dest_body: str, dest_link: str | None = None, *, start_info: Info, end_info: Info) -> bool:
    """The one object the robot touched at the start (held, touching nothing else) rests on
    ``dest_body`` (``dest_link``) at the end, released by the robot."""
    robot = _robot(start_info)
    held = _bodies(start_info["robot_info"]["contacts"])
    if len(held) != 1:
        return False
    obj_uid = next(iter(held))
    if obj_uid in _bodies(end_info["robot_info"]["contacts"]):
        return False
    names = [k for k, v in start_info["scene_info"]["movable_objects"].items() if int(v["uid"]) == obj_uid]
    if len(names) != 1:
        return False
    if _bodies(_obj(start_info, names[0])["contacts"]) != {robot}:
        return False
    end_contacts = _obj(end_info, names[0])["contacts"]
    if dest_link is None:
        return int(_fixed(end_info, dest_body)["uid"]) in _bodies(end_contacts)
    return _fixed_link(end_info, dest_body, dest_link) in _body_links(end_contacts)


def push_object_into(obj_name: str | Sequence[str], src_body: str, src_link: str, dest_body: str, dest_link: str,
                     *, start_info: Info, end_info: Info) -> bool:
    """An object (any of a list) goes from resting only on ``src_body/src_link`` to touching
    ``dest_body/dest_link``, without the robot touching it at either time."""
    if not isinstance(obj_name, str):
        return any(push_object_into(o, src_body, src_link, dest_body, dest_link, start_info=start_info, end_info=end_info)
                   for o in obj_name)
    start = _body_links(_obj(start_info, obj_name)["contacts"])
    end = _body_links(_obj(end_info, obj_name)["contacts"])
    robot = _robot(start_info)
    if robot in {b for b, _ in start | end}:
        return False
    src, dest = _fixed_link(start_info, src_body, src_link), _fixed_link(end_info, dest_body, dest_link)
    return bool(len(start) == 1 and src in start and dest in end)


def move_door_rel(joint_name: str, threshold: float, *, start_info: Info, end_info: Info) -> bool:
    """The joint moved by more than ``threshold`` (signed) between start and end."""
    doors_start, doors_end = start_info["scene_info"]["doors"], end_info["scene_info"]["doors"]
    if joint_name not in doors_start:
        raise KeyError(f"info has no scene_info.doors[{joint_name!r}] (has {sorted(doors_start)})")
    moved = float(np.ravel(doors_end[joint_name]["current_state"])[0]) - float(np.ravel(doors_start[joint_name]["current_state"])[0])
    return bool(0 < threshold < moved or 0 > threshold > moved)


def move_door_abs(joint_name: str, start_threshold: float, end_threshold: float, *, start_info: Info, end_info: Info) -> bool:
    """The joint went from before ``start_threshold`` to past ``end_threshold`` (either direction)."""
    if start_threshold == end_threshold:
        raise ValueError(f"move_door_abs({joint_name!r}): start and end thresholds must differ")
    s = float(np.ravel(start_info["scene_info"]["doors"][joint_name]["current_state"])[0])
    e = float(np.ravel(end_info["scene_info"]["doors"][joint_name]["current_state"])[0])
    if start_threshold < end_threshold:
        return s < start_threshold and e > end_threshold
    return s > start_threshold and e < end_threshold


def toggle_light(light_name: str, start_state: int, end_state: int, *, start_info: Info, end_info: Info) -> bool:
    """The light's logical state went from ``start_state`` to ``end_state``."""
    lights_start, lights_end = start_info["scene_info"]["lights"], end_info["scene_info"]["lights"]
    return bool(lights_start[light_name]["logical_state"] == start_state and lights_end[light_name]["logical_state"] == end_state)


def _slow(obj: Mapping[str, Any], max_vel: float) -> bool:
    return bool(np.all(np.abs(obj["current_lin_vel"]) < max_vel) and np.all(np.abs(obj["current_ang_vel"]) < max_vel))


def stack_objects(max_vel: float = 1, *, start_info: Info, end_info: Info) -> bool:
    """Some object touched no other movable object at the start and rests only on movable objects
    at the end, moving slower than ``max_vel``."""
    movable = start_info["scene_info"]["movable_objects"]
    uids = {int(o["uid"]) for o in movable.values()}
    for name in movable:
        before, after = _bodies(_obj(start_info, name)["contacts"]), _bodies(_obj(end_info, name)["contacts"])
        if not before & uids and after & uids and not after - uids and _slow(_obj(end_info, name), max_vel):
            return True
    return False


def unstack_objects(max_vel: float = 1, *, start_info: Info, end_info: Info) -> bool:
    """Some object rested only on movable objects at the start (slower than ``max_vel``) and touches
    none at the end."""
    movable = start_info["scene_info"]["movable_objects"]
    uids = {int(o["uid"]) for o in movable.values()}
    for name in movable:
        before, after = _bodies(_obj(start_info, name)["contacts"]), _bodies(_obj(end_info, name)["contacts"])
        if before & uids and not before - uids and not after & uids and _slow(_obj(start_info, name), max_vel):
            return True
    return False


BASE_CHECKS: dict[str, Callable[..., bool]] = {f.__name__: f for f in (
    rotate_object, push_object, lift_object, place_object, push_object_into, move_door_rel, move_door_abs,
    toggle_light, stack_objects, unstack_objects)}
"""The base checks a task definition may name."""


class Tasks:
    """CALVIN's task oracle built from task definitions.

    Args:
        definitions: ``{task: [base_check, *args]}`` as in ``new_playtable_tasks.yaml``.

    Raises:
        ValueError: a definition is empty or names an unknown base check.
    """

    def __init__(self, definitions: Mapping[str, Sequence[Any]]) -> None:
        self.tasks: dict[str, Callable[..., bool]] = {}
        for name, spec in definitions.items():
            if not spec or spec[0] not in BASE_CHECKS:
                raise ValueError(f"task {name!r}: unknown base check {spec[0] if spec else None!r} (known: {sorted(BASE_CHECKS)})")
            self.tasks[name] = partial(BASE_CHECKS[spec[0]], *spec[1:])
        self.task_to_id = {name: i for i, name in enumerate(self.tasks)}

    @classmethod
    def from_yaml(cls, path: str | Path = TASKS_FILE) -> "Tasks":
        """Read a CALVIN task file (``{"tasks": {...}}``, CALVIN's ``_target_`` key is ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CALVIN task definitions not found: {path}")
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
            raise ValueError(f"{path} is not a CALVIN task file (expected a 'tasks' mapping)")
        return cls(raw["tasks"])

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def get_task_info(self, start_info: Info, end_info: Info) -> set[str]:
        """Every task completed between the two snapshots."""
        return {name for name, check in self.tasks.items() if check(start_info=start_info, end_info=end_info)}

    def get_task_info_for_set(self, start_info: Info, end_info: Info, task_filter: Iterable[str]) -> set[str]:
        """The tasks of ``task_filter`` completed between the two snapshots.

        Raises:
            KeyError: a task name the oracle does not define.
        """
        wanted = set(task_filter)
        unknown = wanted - set(self.tasks)
        if unknown:
            raise KeyError(f"unknown CALVIN task(s) {sorted(unknown)}")
        return {name for name in wanted if self.tasks[name](start_info=start_info, end_info=end_info)}
