"""CALVIN's own task oracle on the embedded tabletop (issue 15): the CALVIN-layout info, the
rotation and unstack tasks and their expert, and the evaluation backend judging with CALVIN's oracle."""

from __future__ import annotations

import numpy as np
import pytest

from integrations.gr1.calvin_tasks import Tasks
from integrations.gr1.sim import CalvinTabletopEnv, ScriptedExpert, get_task_info
from integrations.gr1.sim.calvin_info import TABLE_LINKS, drawer_state, slider_state
from integrations.gr1.sim.scene import sample_scene_obs
from integrations.gr1.sim.tasks import CLASSIC_TASKS, TASKS, SymbolicState, apply_task, feasible_tasks, sample_task_chains


@pytest.fixture(scope="module")
def env():
    e = CalvinTabletopEnv(static_size=16, gripper_size=8, render_gripper=False)
    yield e
    e.close()


@pytest.fixture(scope="module")
def oracle() -> Tasks:
    return Tasks.from_yaml()


def info_of(env: CalvinTabletopEnv, scene: np.ndarray) -> dict:
    env.reset(scene_obs=scene)
    return env.get_info()


def test_joints_map_onto_calvins_travel() -> None:
    assert slider_state(0.10) == pytest.approx(0.0) and slider_state(-0.10) == pytest.approx(0.28)  # left end = 0.28
    assert drawer_state(0.0) == pytest.approx(0.0) and drawer_state(0.14) == pytest.approx(0.22)


def test_state_changes_read_as_calvin_tasks(env, oracle: Tasks) -> None:
    scene = sample_scene_obs(0)
    scene[0], scene[1] = 0.10, 0.0  # slider at the right end, drawer closed
    start = info_of(env, scene)
    red = start["scene_info"]["movable_objects"]["block_red"]
    assert (start["scene_info"]["fixed_objects"]["table"]["uid"], TABLE_LINKS["base_link"]) in {(c[2], c[4]) for c in red["contacts"]}
    np.testing.assert_allclose(red["current_pos"], [scene[7], -scene[6], scene[8]], atol=1e-6)  # (y, -x, z)
    turned = scene.copy()
    turned[11] += np.radians(70)  # counter-clockwise from above = "left" in CALVIN
    turned[13] += 0.11            # blue block 11 cm towards +y = "right"
    turned[0], turned[1] = -0.10, 0.14
    assert oracle.get_task_info(start, info_of(env, turned)) == {
        "rotate_red_block_left", "push_blue_block_right", "move_slider_left", "open_drawer"}
    assert oracle.get_task_info(info_of(env, turned), info_of(env, scene)) == {
        "rotate_red_block_right", "push_blue_block_left", "move_slider_right", "close_drawer"}


@pytest.mark.parametrize("task", ["rotate_blue_block_right", "rotate_red_block_left"])
def test_expert_rotations_pass_both_oracles(env, oracle: Tasks, task: str) -> None:
    obs = env.reset(scene_obs=sample_scene_obs(2))
    start = env.get_info()
    obs, steps = ScriptedExpert(env).run(task, obs)
    end = env.get_info()
    assert task in get_task_info(start, end) and oracle.get_task_info(start, end) == {task}
    assert steps < 200
    assert TASKS[task].instruction == {"rotate_blue_block_right": "take the blue block and rotate it to the right",
                                       "rotate_red_block_left": "take the red block and rotate it to the left"}[task]


def test_expert_lift_then_stack_pass_calvins_oracle(env, oracle: Tasks) -> None:
    obs = env.reset(scene_obs=sample_scene_obs(4))
    expert = ScriptedExpert(env)
    start = env.get_info()
    obs, _ = expert.run("lift_blue_block_table", obs)
    held = env.get_info()
    assert oracle.get_task_info(start, held) == {"lift_blue_block_table"}
    obs, _ = expert.run("stack_block", obs)
    stacked = env.get_info()
    assert oracle.get_task_info(held, stacked) == {"stack_block"}
    state = apply_task(apply_task(SymbolicState.from_scene_obs(sample_scene_obs(4)), "lift_blue_block_table"), "stack_block")
    assert "unstack_block" in feasible_tasks(state)
    obs, steps = expert.run("unstack_block", obs)
    end = env.get_info()
    assert oracle.get_task_info(stacked, end) == {"unstack_block"} and "unstack_block" in get_task_info(stacked, end)
    # the blue block went where the chain sampler expects it, up to the ~2 cm the stack shifts when built
    expected = apply_task(state, "unstack_block").blocks["blue"]
    np.testing.assert_allclose(end["scene_obs"][12:14], expected, atol=0.03)
    assert np.linalg.norm(end["scene_obs"][12:14] - end["scene_obs"][6:8]) > 0.08  # next to the red block, not on it
    assert steps < 200


def test_backend_judges_with_calvins_oracle_by_default() -> None:
    from integrations.gr1.eval_backends import EmbeddedBackend

    backend = EmbeddedBackend(seed=0, num_points=4)
    try:
        assert isinstance(backend.oracle, Tasks)
        assert all(t in CLASSIC_TASKS for c in backend.sample_chains(10, seed=1) for t in c.tasks)
        scene = sample_scene_obs(0)
        scene[13] += 0.07  # 7 cm: enough for the embedded check (5 cm), not for CALVIN's (10 cm)
        start = info_of(backend.env, sample_scene_obs(0))
        end = info_of(backend.env, scene)
        assert not backend.completed("push_blue_block_right", start, end)
        loose = EmbeddedBackend(seed=0, num_points=4, oracle="embedded", all_tasks=True)
        assert loose.completed("push_blue_block_right", start, end)
        assert any(t not in CLASSIC_TASKS for c in loose.sample_chains(30, seed=3) for t in c.tasks)
        loose.close()
    finally:
        backend.close()


def test_rotations_join_the_chains_only_when_asked() -> None:
    classic = sample_task_chains(30, seed=3)
    assert {t for c in classic for t in c.tasks} <= CLASSIC_TASKS
    full = sample_task_chains(60, seed=3, tasks=TASKS)
    assert any(t.startswith("rotate_") for c in full for t in c.tasks)
    assert any(t == "unstack_block" for c in full for t in c.tasks)
    with pytest.raises(ValueError, match="unknown task"):
        sample_task_chains(2, seed=0, tasks={"place_in_drawer"})
