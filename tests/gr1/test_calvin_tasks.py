"""CALVIN's 34 task oracles, from its task file, on hand-made info dicts (issue 15)."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import SHARED  # noqa: E402

from integrations.gr1.calvin_tasks import Tasks, matrix_to_euler_xyz, quaternion_to_matrix  # noqa: E402

ROBOT, TABLE, LINKS = 1, 5, {"base_link": -1, "plank_link": 2, "drawer_link": 3}
UIDS = {"block_red": 10, "block_blue": 11, "block_pink": 12}


def contact(body: int, link: int = -1) -> tuple:
    """A pybullet contact tuple: only items 2 (other body) and 4 (its link) matter."""
    return (0, 0, body, -1, link, (0, 0, 0), (0, 0, 0), (0, 0, 1), 0.0, 1.0)


def yaw_quat(degrees: float) -> list[float]:
    half = math.radians(degrees) / 2
    return [0.0, 0.0, math.sin(half), math.cos(half)]


def make_info(**blocks) -> dict:
    """Scene at rest: every block on the table top unless ``blocks`` overrides its fields."""
    movable = {}
    for i, (name, uid) in enumerate(UIDS.items()):
        movable[name] = {"uid": uid, "current_pos": [0.1 * i, -0.1, 0.46], "current_orn": yaw_quat(90.0),
                         "current_lin_vel": [0.0] * 3, "current_ang_vel": [0.0] * 3, "contacts": [contact(TABLE, -1)]}
        movable[name].update(blocks.get(name, {}))
    return {"robot_info": {"uid": ROBOT, "contacts": []},
            "scene_info": {"fixed_objects": {"table": {"uid": TABLE, "links": dict(LINKS)}}, "movable_objects": movable,
                           "doors": {"base__slide": {"current_state": 0.0}, "base__drawer": {"current_state": 0.0}},
                           "lights": {"lightbulb": {"logical_state": 0}, "led": {"logical_state": 0}}}}


@pytest.fixture(scope="module")
def tasks() -> Tasks:
    return Tasks.from_yaml()


def done(tasks: Tasks, start: dict, end: dict) -> set[str]:
    return tasks.get_task_info(start, end)


def test_the_oracle_defines_calvins_34_tasks(tasks: Tasks) -> None:
    assert tasks.num_tasks == 34
    path = SHARED / "fixtures" / "calvin" / "new_playtable_tasks.yaml"
    if path.is_file():
        assert set(tasks.tasks) == set(yaml.safe_load(path.read_text())["tasks"])
    start = make_info()
    assert done(tasks, start, copy.deepcopy(start)) == set()


def test_doors_and_lights(tasks: Tasks) -> None:
    start, end = make_info(), make_info()
    end["scene_info"]["doors"]["base__slide"]["current_state"] = 0.16   # +0.16 > 0.15: slider to the left
    end["scene_info"]["doors"]["base__drawer"]["current_state"] = 0.11  # 0.11 < 0.12: not open enough
    end["scene_info"]["lights"]["led"]["logical_state"] = 1
    assert done(tasks, start, end) == {"move_slider_left", "turn_on_led"}
    assert done(tasks, end, start) == {"move_slider_right", "turn_off_led"}
    end["scene_info"]["doors"]["base__drawer"]["current_state"] = 0.125
    assert "open_drawer" in done(tasks, start, end)


def test_push_needs_10cm_and_the_same_support(tasks: Tasks) -> None:
    start = make_info()
    end = make_info(block_red={"current_pos": [0.0 + 0.11, -0.1, 0.46]}, block_blue={"current_pos": [0.1 - 0.09, -0.1, 0.46]})
    assert done(tasks, start, end) == {"push_red_block_right"}
    end["scene_info"]["movable_objects"]["block_red"]["contacts"] = [contact(TABLE, -1), contact(ROBOT)]
    assert done(tasks, start, end) == {"push_red_block_right"}  # the robot's touch does not count as support
    end["scene_info"]["movable_objects"]["block_red"]["contacts"] = [contact(ROBOT)]
    assert done(tasks, start, end) == set()  # carried, not pushed
    left = make_info(block_pink={"current_pos": [0.2 - 0.101, -0.1, 0.46]})
    assert done(tasks, start, left) == {"push_pink_block_left"}


def test_rotation_left_is_positive_about_z(tasks: Tasks) -> None:
    start = make_info()
    end = make_info(block_blue={"current_orn": yaw_quat(90 + 61)})
    assert done(tasks, start, end) == {"rotate_blue_block_left"}
    end = make_info(block_blue={"current_orn": yaw_quat(90 - 61)})
    assert done(tasks, start, end) == {"rotate_blue_block_right"}
    end = make_info(block_blue={"current_orn": yaw_quat(90 + 59)})
    assert done(tasks, start, end) == set()
    held = make_info(block_blue={"current_orn": yaw_quat(90 + 61), "contacts": [contact(ROBOT)]})
    assert done(tasks, start, held) == set()  # must be put down
    moved = make_info(block_blue={"current_orn": yaw_quat(90 + 61), "current_pos": [0.1, 0.05, 0.46]})
    assert done(tasks, start, moved) == set()  # moved 15 cm > 10 cm


def test_lifts_from_table_slider_and_drawer(tasks: Tasks) -> None:
    up = {"current_pos": [0.0, -0.1, 0.52], "contacts": [contact(ROBOT)]}
    assert done(tasks, make_info(), make_info(block_red=up)) == {"lift_red_block_table"}
    on_plank = make_info(block_red={"contacts": [contact(TABLE, LINKS["plank_link"])]})
    assert done(tasks, on_plank, make_info(block_red={**up, "current_pos": [0.0, -0.1, 0.50]})) == {"lift_red_block_slider"}
    in_drawer = make_info(block_red={"contacts": [contact(TABLE, LINKS["drawer_link"])]})
    assert done(tasks, in_drawer, make_info(block_red=up)) == {"lift_red_block_drawer"}
    touching_both = make_info(block_red={**up, "contacts": [contact(ROBOT), contact(TABLE)]})
    assert done(tasks, make_info(), touching_both) == set()


def test_place_stack_unstack_and_push_into_drawer(tasks: Tasks) -> None:
    held = make_info(block_pink={"current_pos": [0.0, 0.1, 0.55], "contacts": [contact(ROBOT)]})
    held["robot_info"]["contacts"] = [contact(UIDS["block_pink"])]
    placed = make_info(block_pink={"contacts": [contact(TABLE, LINKS["plank_link"])]})
    assert done(tasks, held, placed) == {"place_in_slider"}
    in_drawer = make_info(block_pink={"contacts": [contact(TABLE, LINKS["drawer_link"])]})
    assert done(tasks, held, in_drawer) == {"place_in_drawer"}
    on_red = make_info(block_pink={"current_pos": [0.0, -0.1, 0.51], "contacts": [contact(UIDS["block_red"])]},
                       block_red={"contacts": [contact(TABLE), contact(UIDS["block_pink"])]})
    assert done(tasks, held, on_red) == {"stack_block"}
    fast = copy.deepcopy(on_red)
    fast["scene_info"]["movable_objects"]["block_pink"]["current_lin_vel"] = [0.0, 0.0, -1.5]
    assert "stack_block" not in done(tasks, held, fast)
    assert done(tasks, on_red, make_info()) == {"unstack_block"}
    assert done(tasks, make_info(), in_drawer) == {"push_into_drawer"}


def test_get_task_info_for_set_filters_and_names_unknown_tasks(tasks: Tasks) -> None:
    start, end = make_info(), make_info()
    end["scene_info"]["lights"]["lightbulb"]["logical_state"] = 1
    assert tasks.get_task_info_for_set(start, end, {"turn_on_lightbulb", "open_drawer"}) == {"turn_on_lightbulb"}
    with pytest.raises(KeyError, match="open_the_box"):
        tasks.get_task_info_for_set(start, end, {"open_the_box"})
    with pytest.raises(ValueError, match="spin_object"):
        Tasks({"spin": ["spin_object", "block_red"]})


def test_euler_helpers_match_pybullets_convention() -> None:
    import pybullet as pb

    for euler in ([0.1, -0.2, 0.3], [3.0, 0.05, -1.2], [0.0, 0.0, 2.5]):
        q = pb.getQuaternionFromEuler(euler)
        np.testing.assert_allclose(matrix_to_euler_xyz(quaternion_to_matrix(q)), pb.getEulerFromQuaternion(q), atol=1e-9)
        np.testing.assert_allclose(quaternion_to_matrix(q), np.reshape(pb.getMatrixFromQuaternion(q), (3, 3)), atol=1e-9)
