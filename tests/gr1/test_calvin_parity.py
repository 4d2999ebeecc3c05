"""Issue 15 parity: CALVIN's 34 tasks and official chains on the embedded tabletop (``task_set="calvin"``)."""

import numpy as np
import pytest
import yaml

from integrations.gr1.calvin_chains import VALIDATION_FILE, initial_state_to_obs, load_chains, validation_instructions
from integrations.gr1.calvin_tasks import Tasks
from integrations.gr1.sim import CalvinTabletopEnv, ScriptedExpert
from integrations.gr1.sim.calvin_fixtures import (
    DRAWER_FLOOR_TOP, SHELF_SLOTS, TABLE_SLOTS, block_place, random_initial_state, realise_initial_state,
)
from integrations.gr1.sim.calvin_info import TABLE_LINKS
from integrations.gr1.sim.scene import BLOCK_HALF
from integrations.gr1.sim.calvin_task_set import (
    CALVIN_ONLY_TASKS, CALVIN_TASKS, apply_calvin_task, calvin_symbolic_state, feasible_calvin_tasks,
    get_calvin_task_info, sample_calvin_chains,
)
from integrations.gr1.sim.tasks import TASKS

BASE_STATE = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "open", "red_block": "table",
              "blue_block": "table", "pink_block": "slider_left", "grasped": 0}


def _state(**places) -> dict:
    return {**BASE_STATE, **places}


# Start state and the tasks leading up to the task under test (a place needs a held block).
SETUPS = {
    "lift_red_block_slider": (_state(red_block="slider_left", pink_block="table"), ()),
    "lift_blue_block_slider": (_state(slider="left", blue_block="slider_right", pink_block="table"), ()),
    "lift_pink_block_slider": (_state(), ()),
    "lift_red_block_drawer": (_state(), ("push_into_drawer",)),
    "lift_blue_block_drawer": (_state(red_block="slider_right"), ("push_into_drawer",)),
    "lift_pink_block_drawer": (_state(red_block="slider_right", blue_block="slider_left", pink_block="table"), ("push_into_drawer",)),
    "place_in_slider": (_state(), ("lift_blue_block_table",)),
    "place_in_drawer": (_state(), ("lift_red_block_table",)),
    "push_into_drawer": (_state(), ()),
}
# The other slots: the outer one of the open half of the plank, the drawer's second one.
CASES = [(task, *setup) for task, setup in SETUPS.items()] + [
    ("place_in_slider", _state(slider="left", pink_block="slider_left"), ("lift_red_block_table",)),
    ("place_in_drawer", _state(), ("push_into_drawer", "lift_blue_block_table")),
    ("push_into_drawer", _state(), ("push_into_drawer",)),
]


@pytest.fixture(scope="module")
def env():
    e = CalvinTabletopEnv(static_size=16, gripper_size=8, render_gripper=False, task_set="calvin")
    yield e
    e.close()


@pytest.fixture(scope="module")
def oracle():
    return Tasks.from_yaml()


def _run(env, oracle, scene, tasks, yaw_seed=None):
    """Run the expert through ``tasks``; the per-task verdicts of CALVIN's and the embedded oracle."""
    if yaw_seed is not None:  # other block yaws than CALVIN's draw
        scene = scene.copy()
        scene[[11, 17, 23]] = np.random.default_rng(yaw_seed).uniform(-0.39, 0.39, 3)
    env.reset(scene_obs=scene)
    expert, verdicts = ScriptedExpert(env), []
    with env.headless():
        obs = env.get_obs()
        for task in tasks:
            start = env.get_info()
            obs, _ = expert.run(task, obs)
            end = env.get_info()
            verdicts.append((task, bool(oracle.get_task_info_for_set(start, end, {task})), task in get_calvin_task_info(start, end)))
    return verdicts


# ---------------------------------------------------------------------- geometry
def test_plank_and_drawer_report_calvin_links(env):
    state = _state(red_block="slider_left", blue_block="slider_right", pink_block="table")
    scene = realise_initial_state(state)
    scene[18:21] = [-0.17, 0.205, DRAWER_FLOOR_TOP + BLOCK_HALF - 0.0002]  # pink block in the open drawer
    env.reset(scene_obs=scene)
    info = env.get_info()
    assert info["block_contacts"] == {"red": {"plank"}, "blue": {"plank"}, "pink": {"drawer"}}
    table = info["scene_info"]["fixed_objects"]["table"]["uid"]
    links = {name: {(c[2], c[4]) for c in obj["contacts"]} for name, obj in info["scene_info"]["movable_objects"].items()}
    assert links["block_red"] == links["block_blue"] == {(table, TABLE_LINKS["plank_link"])}
    assert links["block_pink"] == {(table, TABLE_LINKS["drawer_link"])}
    # A block in the drawer rides into the cabinet with it and stays in it.
    with env.headless():
        env.scene.set_scene_obs(np.concatenate([[scene[0], 0.0], scene[2:18], [-0.17, 0.345, DRAWER_FLOOR_TOP + BLOCK_HALF - 0.0002], scene[21:]]))
        for _ in range(20):
            env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert env.get_info()["block_contacts"]["pink"] == {"drawer"}
    assert block_place(env.scene.get_scene_obs(), 2) == "drawer"


def test_classic_scene_has_no_plank():
    classic = CalvinTabletopEnv(static_size=16, gripper_size=8, render_gripper=False)
    try:
        assert classic.scene.bodies.plank is None and classic.task_set == "classic"
    finally:
        classic.close()
    with pytest.raises(ValueError, match="task_set"):
        CalvinTabletopEnv(task_set="calvin34")


# ---------------------------------------------------------------------- tasks and instructions
def test_all_34_tasks_use_calvin_instructions():
    first = {task: texts[0] for task, texts in yaml.safe_load(VALIDATION_FILE.read_text()).items()}
    assert len(CALVIN_TASKS) == 34 and set(CALVIN_TASKS) == set(Tasks.from_yaml().tasks) == set(first)
    assert {name: task.instruction for name, task in CALVIN_TASKS.items()} == first == validation_instructions()
    assert set(CALVIN_TASKS) - set(TASKS) == set(CALVIN_ONLY_TASKS) and len(CALVIN_ONLY_TASKS) == 9
    assert CALVIN_TASKS["place_in_slider"].instruction == "store the grasped block in the sliding cabinet"


def test_expert_completes_all_new_tasks(env, oracle):
    """Each of the 9 from CALVIN's own start-state draw (~3 s for all; the other slots: slow test)."""
    for task, (state, before) in SETUPS.items():
        verdicts = _run(env, oracle, realise_initial_state(state), before + (task,))
        assert verdicts == [(t, True, True) for t in before + (task,)], task


@pytest.mark.slow
@pytest.mark.parametrize("yaw_seed", [None, 1, 2, 3, 4])
def test_expert_completes_new_tasks_in_every_slot_and_other_yaws(env, oracle, yaw_seed):
    for task, state, before in CASES:
        verdicts = _run(env, oracle, realise_initial_state(state), before + (task,), yaw_seed)
        assert verdicts == [(t, True, True) for t in before + (task,)], task


def test_lift_from_covered_half_is_not_feasible_and_noop_completes_nothing(env, oracle):
    scene = realise_initial_state(_state(slider="left", pink_block="slider_left"))  # the door covers the pink block
    state = calvin_symbolic_state(scene)
    assert state.places == {"pink": "slider_left"} and "lift_pink_block_slider" not in feasible_calvin_tasks(state)
    with pytest.raises(RuntimeError, match="not reachable"):
        env.reset(scene_obs=scene)
        ScriptedExpert(env).plan("lift_pink_block_slider")
    start = env.get_info()
    with env.headless():
        for _ in range(10):
            env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert get_calvin_task_info(start, env.get_info()) == set()
    assert oracle.get_task_info(start, env.get_info()) == set()


# ---------------------------------------------------------------------- symbolic state and chains
def test_symbolic_rules_track_plank_and_drawer():
    state = calvin_symbolic_state(realise_initial_state(_state(slider="left", drawer="closed")))
    assert state.places == {"pink": "slider_left"} and set(state.blocks) == {"red", "blue"}
    options = feasible_calvin_tasks(state)
    assert "lift_pink_block_slider" not in options and "push_into_drawer" not in options  # covered / drawer closed
    state = apply_calvin_task(apply_calvin_task(state, "move_slider_right"), "open_drawer")
    assert {"lift_pink_block_slider", "push_into_drawer"} <= set(feasible_calvin_tasks(state))
    held = apply_calvin_task(state, "lift_pink_block_slider")
    assert held.grasped == "pink" and held.places == {}
    assert feasible_calvin_tasks(held) == ["place_in_drawer", "place_in_slider", "stack_block"]
    pushed = apply_calvin_task(state, "push_into_drawer")
    assert pushed.places == {"pink": "slider_left", "red": "drawer"} and set(pushed.blocks) == {"blue"}
    full = apply_calvin_task(apply_calvin_task(pushed, "push_into_drawer"), "lift_pink_block_slider")
    assert "place_in_drawer" not in feasible_calvin_tasks(full)  # the drawer holds two blocks
    with pytest.raises(ValueError, match="not feasible"):
        apply_calvin_task(state, "place_in_slider")


def test_sampled_calvin_chains_are_feasible_and_include_new_tasks():
    chains = sample_calvin_chains(40, seed=3)
    assert [c.tasks for c in chains] == [c.tasks for c in sample_calvin_chains(40, seed=3)]
    seen = set()
    for chain in chains:
        state = calvin_symbolic_state(chain.scene_obs)
        for task in chain.tasks:
            state = apply_calvin_task(state, task)  # raises if infeasible
        assert chain.instructions == tuple(CALVIN_TASKS[t].instruction for t in chain.tasks)
        np.testing.assert_allclose(chain.scene_obs, realise_initial_state(chain.initial_state))
        seen |= set(chain.tasks)
    assert len(seen & set(CALVIN_ONLY_TASKS)) >= 6
    assert set(random_initial_state(np.random.default_rng(0))) == set(BASE_STATE)


# ---------------------------------------------------------------------- official chains
def test_official_chains_realise_their_symbolic_start_states(env):
    assert {t for chain in load_chains() for t in chain.subtasks} <= set(CALVIN_TASKS)
    for chain in load_chains(20):
        init = chain.initial_state
        scene = realise_initial_state(init)
        _, calvin = initial_state_to_obs(init)  # CALVIN's draws: yaws and table slots
        env.reset(scene_obs=scene)
        now = env.get_info()
        assert (now["scene_obs"][0] < 0) == (init["slider"] == "left")
        assert (now["scene_obs"][1] > 0.07) == (init["drawer"] == "open")
        assert now["scene_obs"][4] == init["lightbulb"] and now["scene_obs"][5] == init["led"]
        assert now["scene_info"]["lights"]["lightbulb"]["logical_state"] == init["lightbulb"]
        for i, color in enumerate(("red", "blue", "pink")):
            place = init[f"{color}_block"]
            assert block_place(now["scene_obs"], i) == place
            assert now["block_contacts"][color] == ({"table"} if place == "table" else {"plank"})
            if place == "table":
                slot = int(np.argmin([abs(calvin[6 + 6 * i] - x) for x in (0.05, 0.23)]))
                np.testing.assert_allclose(scene[6 + 6 * i: 8 + 6 * i], TABLE_SLOTS[slot], atol=1e-9)
            else:
                assert scene[7 + 6 * i] == SHELF_SLOTS[place][0]
            assert np.isclose(np.cos(scene[11 + 6 * i] - (calvin[11 + 6 * i] - np.pi / 2)), 1.0)


def test_backend_returns_official_prefix():
    from integrations.gr1.eval_backends import EmbeddedBackend, make_backend

    backend = make_backend("embedded", seed=0, task_set="calvin")
    try:
        chains = backend.sample_chains(4, seed=123)
        official = load_chains(4)
        assert [c.tasks for c in chains] == [o.subtasks for o in official]
        text = validation_instructions()
        assert [c.instructions for c in chains] == [tuple(text[t] for t in o.subtasks) for o in official]
        for chain, o in zip(chains, official):
            np.testing.assert_array_equal(chain.scene_obs, realise_initial_state(o.initial_state))
            assert chain.robot_obs is None
        assert backend.env.task_set == "calvin"
    finally:
        backend.close()
    with pytest.raises(ValueError, match="oracle"):
        EmbeddedBackend(task_set="calvin", oracle="embedded")


def test_turns_beyond_half_a_turn_go_the_long_way():
    from integrations.gr1.sim.expert import Waypoint, turn_the_long_way

    a = Waypoint(np.array([0.0, 0.0, 0.2]), -1.75, -1.0)
    b = Waypoint(np.array([0.1, 0.2, 0.2]), 1.75, 1.0)
    c = Waypoint(np.array([0.1, 0.2, 0.1]), 0.5, 1.0)
    out = turn_the_long_way([a, b, c])
    assert [w.yaw for w in out] == [-1.75, 0.0, 1.75, 0.5]  # through 0, not through 180 deg
    np.testing.assert_array_equal(out[1].pos, a.pos)
    assert out[1].gripper == a.gripper and turn_the_long_way([b, c]) == [b, c]
