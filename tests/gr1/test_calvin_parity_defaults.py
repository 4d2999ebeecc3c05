"""Issue 15 parity: the default ("classic") task set, chains, instructions and scene stay as they were.

The expected values were written down from the code before ``task_set="calvin"`` was added:
other sessions' checkpoints depend on a seed generating the same demonstrations.
"""

import hashlib

import numpy as np

from integrations.gr1.sim import CalvinTabletopEnv, ScriptedExpert
from integrations.gr1.sim.tasks import CLASSIC_TASKS, TASKS, sample_task_chains

_CHAINS_3_0 = [
    (1826701615, ("push_pink_block_left", "push_blue_block_left", "lift_red_block_table", "stack_block", "move_slider_left"),
     [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, -0.014084, 0.053973, 0.0225, 0.0, 0.0, 0.069904, 0.053836, -0.078445, 0.0225, 0.0, 0.0,
      -0.126094, -0.051423, -0.108243, 0.0225, 0.0, 0.0, 0.317686]),
    (87989972, ("close_drawer", "lift_blue_block_table", "stack_block", "move_slider_right", "turn_off_led"),
     [-0.1, 0.14, 0.0, 0.06, 1.0, 1.0, 0.069786, 0.036832, 0.0225, 0.0, 0.0, 0.311775, -0.045552, 0.001172, 0.0225, 0.0, 0.0,
      -0.115501, -0.048715, 0.139702, 0.0225, 0.0, 0.0, -0.298939]),
    (1394609703, ("turn_on_lightbulb", "push_blue_block_right", "push_pink_block_left", "turn_off_lightbulb", "push_pink_block_right"),
     [-0.1, 0.0, 0.0, 0.0, 0.0, 1.0, 0.020522, 0.137925, 0.0225, 0.0, 0.0, 0.175526, -0.052319, -0.110181, 0.0225, 0.0, 0.0,
      0.493338, 0.041445, -0.076642, 0.0225, 0.0, 0.0, -0.385138]),
]

_INSTRUCTIONS = {
    "close_drawer": "push the handle to close the drawer", "lift_blue_block_table": "lift the blue block from the table",
    "lift_pink_block_table": "lift the pink block from the table", "lift_red_block_table": "lift the red block from the table",
    "move_slider_left": "push the sliding door to the left side", "move_slider_right": "push the sliding door to the right side",
    "open_drawer": "pull the handle to open the drawer", "push_blue_block_left": "push the blue block to the left",
    "push_blue_block_right": "push the blue block to the right", "push_pink_block_left": "push the pink block to the left",
    "push_pink_block_right": "push the pink block to the right", "push_red_block_left": "push the red block to the left",
    "push_red_block_right": "push the red block to the right",
    "rotate_blue_block_left": "take the blue block and rotate it to the left",
    "rotate_blue_block_right": "take the blue block and rotate it to the right",
    "rotate_pink_block_left": "take the pink block and rotate it to the left",
    "rotate_pink_block_right": "take the pink block and rotate it to the right",
    "rotate_red_block_left": "take the red block and rotate it to the left",
    "rotate_red_block_right": "take the red block and rotate it to the right",
    "stack_block": "stack the blocks on top of each other", "turn_off_led": "press the button to turn off the led light",
    "turn_off_lightbulb": "use the switch to turn off the light bulb", "turn_on_led": "press the button to turn on the led light",
    "turn_on_lightbulb": "use the switch to turn on the light bulb", "unstack_block": "remove the stacked block",
}


def test_default_chains_unchanged():
    chains = sample_task_chains(3, 0)
    assert [(c.scene_seed, c.tasks) for c in chains] == [(s, t) for s, t, _ in _CHAINS_3_0]
    for chain, (_, _, scene) in zip(chains, _CHAINS_3_0):
        np.testing.assert_allclose(chain.scene_obs, scene, atol=1e-6)
    all_tasks = sample_task_chains(20, 11, tasks=TASKS)
    digest = hashlib.sha1(repr([(c.scene_seed, c.tasks) for c in all_tasks]).encode()).hexdigest()
    assert digest == "2bee4b61654fb6212fb0eaf4811510a644b96b75"


def test_default_task_set_and_instructions_unchanged():
    assert {name: task.instruction for name, task in TASKS.items()} == _INSTRUCTIONS
    assert len(CLASSIC_TASKS) == 18 and CLASSIC_TASKS == frozenset(
        t for t in _INSTRUCTIONS if not t.startswith("rotate_") and t != "unstack_block")


def test_default_scene_render_and_physics_unchanged():
    env = CalvinTabletopEnv(seed=0)
    try:
        obs = env.reset(seed=0)
        assert hashlib.sha1(obs["rgb_obs"]["rgb_static"].tobytes()).hexdigest() == "896752095ada22287dba6606649d740699d75364"
        seed, tasks, scene = _CHAINS_3_0[0]
        env.reset(scene_obs=np.asarray(scene))
        with env.headless():
            obs, steps = ScriptedExpert(env).run(tasks[0], env.get_obs())
        assert steps == 43
        np.testing.assert_allclose(obs["scene_obs"][18:21], [-0.0647, -0.2214, 0.0225], atol=2e-4)
    finally:
        env.close()
