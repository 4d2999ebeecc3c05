"""Task oracle, scripted expert and long-horizon chains of the embedded tabletop."""

import numpy as np
import pytest

from integrations.gr1.sim.expert import ScriptedExpert
from integrations.gr1.sim.scene import DRAWER_RANGE, SLIDER_RANGE, SWITCH_RANGE, sample_scene_obs
from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv
from integrations.gr1.sim.tasks import (
    TASKS, SymbolicState, apply_task, feasible_tasks, get_task_info, sample_chain, sample_task_chains,
)

# Preconditions of the articulation tasks, as scene_obs edits: index -> value.
_ARTICULATION_START = {
    "open_drawer": {1: DRAWER_RANGE[0]}, "close_drawer": {1: DRAWER_RANGE[1]},
    "move_slider_left": {0: SLIDER_RANGE[1]}, "move_slider_right": {0: SLIDER_RANGE[0]},
    "turn_on_lightbulb": {3: SWITCH_RANGE[0], 4: 0.0}, "turn_off_lightbulb": {3: SWITCH_RANGE[1], 4: 1.0},
    "turn_on_led": {5: 0.0}, "turn_off_led": {5: 1.0},
}


@pytest.fixture(scope="module")
def env():
    # The oracle and the expert need no pixels: tiny renders keep the test fast.
    e = CalvinTabletopEnv(static_size=16, gripper_size=8, render_gripper=False)
    yield e
    e.close()


def _start_scene(task: str) -> np.ndarray:
    """A seeded scene in which ``task`` is feasible."""
    for seed in range(100):
        scene = sample_scene_obs(seed)
        for index, value in _ARTICULATION_START.get(task, {}).items():
            scene[index] = value
        if task in feasible_tasks(SymbolicState.from_scene_obs(scene)):
            return scene
    raise AssertionError(f"no seed makes {task} feasible")


@pytest.mark.parametrize("task", sorted(t for t in TASKS if t not in ("stack_block", "unstack_block")))  # these need a held block / a stack
def test_expert_completes_task_and_noop_does_not(env, task):
    scene = _start_scene(task)
    obs = env.reset(scene_obs=scene)
    start = env.get_info()
    for _ in range(10):  # a no-op: hold the pose
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert get_task_info(start, env.get_info()) == set()
    obs = env.reset(scene_obs=scene)
    start = env.get_info()
    obs, steps = ScriptedExpert(env).run(task, obs)
    done = get_task_info(start, env.get_info())
    assert task in done, f"{task} not completed in {steps} steps (oracle: {done})"
    assert steps < 200
    # Exclusive tasks cannot both succeed (e.g. opening is not closing).
    assert len(done & {"open_drawer", "close_drawer"}) <= 1 and len(done & {"turn_on_led", "turn_off_led"}) <= 1


def test_lift_then_stack(env):
    scene = sample_scene_obs(4)
    obs = env.reset(scene_obs=scene)
    expert = ScriptedExpert(env)
    obs, _ = expert.run("lift_blue_block_table", obs)
    assert expert.held_block() == "blue"
    start = env.get_info()
    obs, _ = expert.run("stack_block", obs)
    assert "stack_block" in get_task_info(start, env.get_info())
    assert expert.held_block() is None
    # The blue block now rests on the first free block in colour order (red).
    s = env.get_info()["scene_obs"]
    assert s[14] - s[8] == pytest.approx(0.045, abs=0.006)
    assert np.linalg.norm(s[12:14] - s[6:8]) < 0.02


def test_oracle_on_hand_made_states():
    scene = sample_scene_obs(0)
    start = {"scene_obs": scene, "block_contacts": {c: {"table"} for c in ("red", "blue", "pink")}}
    moved = scene.copy()
    moved[7] -= 0.06  # red block 6 cm to the left
    moved[1] = scene[1] + 0.09 if scene[1] < 0.05 else scene[1] - 0.09
    end = {"scene_obs": moved, "block_contacts": start["block_contacts"]}
    expected_drawer = "open_drawer" if scene[1] < 0.05 else "close_drawer"
    assert get_task_info(start, end) == {"push_red_block_left", expected_drawer}
    lifted = scene.copy()
    lifted[8] += 0.08
    assert get_task_info(start, {"scene_obs": lifted, "block_contacts": {"red": {"robot"}, "blue": set(), "pink": set()}}) \
        == {"lift_red_block_table"}
    # Lifted but not held (e.g. thrown) is not a lift.
    assert get_task_info(start, {"scene_obs": lifted, "block_contacts": {"red": set(), "blue": set(), "pink": set()}}) == set()
    with pytest.raises(ValueError, match="scene_obs"):
        get_task_info({}, end)


def test_chains_are_feasible_and_reproducible():
    chains = sample_task_chains(20, seed=7)
    again = sample_task_chains(20, seed=7)
    assert [c.tasks for c in chains] == [c.tasks for c in again]
    assert [c.tasks for c in chains] != [c.tasks for c in sample_task_chains(20, seed=8)]
    for chain in chains:
        assert len(chain.tasks) == 5 and len(chain.instructions) == 5
        assert np.array_equal(chain.scene_obs, sample_scene_obs(chain.scene_seed))
        state = SymbolicState.from_scene_obs(chain.scene_obs)
        for i, task in enumerate(chain.tasks):
            assert task in feasible_tasks(state)
            if task.startswith("lift") and i < 4:
                assert chain.tasks[i + 1] == "stack_block"
            state = apply_task(state, task)
    assert len({t for c in chains for t in c.tasks}) > 10  # varied


def test_symbolic_rules():
    scene = sample_scene_obs(0)
    scene[1] = 0.0
    state = SymbolicState.from_scene_obs(scene)
    assert "open_drawer" in feasible_tasks(state) and "close_drawer" not in feasible_tasks(state)
    assert apply_task(state, "open_drawer").drawer_open
    held = apply_task(state, "lift_red_block_table")
    assert feasible_tasks(held) == ["stack_block"]
    with pytest.raises(ValueError, match="not feasible"):
        apply_task(state, "close_drawer")
    with pytest.raises(ValueError, match="num_chains"):
        sample_task_chains(0, seed=0)
    assert sample_chain(np.random.default_rng(0), scene, 3)[0] != "stack_block"
