"""The embedded tabletop: CALVIN's API, observation/action spaces, seeding and state round trips."""

import numpy as np
import pytest

from integrations.gr1.sim.fnv import object_seed
from integrations.gr1.sim.scene import BLOCK_REGION, sample_scene_obs
from integrations.gr1.sim.tabletop_env import (
    MAX_REL_POS, CalvinTabletopEnv, relative_to_absolute, to_relative_action, wrap_angle,
)


@pytest.fixture(scope="module")
def env():
    e = CalvinTabletopEnv(use_relative_actions=True, seed=3)
    yield e
    e.close()


def test_reset_observation_spaces(env):
    obs = env.reset()
    assert set(obs) >= {"rgb_obs", "robot_obs", "scene_obs"}
    assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3) and obs["rgb_obs"]["rgb_static"].dtype == np.uint8
    assert obs["rgb_obs"]["rgb_gripper"].shape == (84, 84, 3) and obs["rgb_obs"]["rgb_gripper"].dtype == np.uint8
    assert obs["depth_obs"]["depth_static"].shape == (200, 200) and obs["depth_obs"]["depth_static"].dtype == np.float32
    assert obs["robot_obs"].shape == (15,) and obs["scene_obs"].shape == (24,)
    # The image is not blank: table, blocks and robot give many distinct colours.
    assert len(np.unique(obs["rgb_obs"]["rgb_static"].reshape(-1, 3), axis=0)) > 20
    # Gripper open (8 cm) and last gripper action +1 after a default reset.
    assert obs["robot_obs"][6] == pytest.approx(0.08, abs=1e-3) and obs["robot_obs"][14] == 1.0


def test_step_api_and_relative_motion(env):
    obs = env.reset()
    start = obs["robot_obs"][:3].copy()
    for _ in range(5):
        obs, reward, done, info = env.step(np.array([0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.0]))
    assert reward == 0.0 and done is False and info["scene_obs"].shape == (24,)
    # 5 steps of -0.5 * 2 cm downwards: about 5 cm, and nothing else moves much.
    delta = obs["robot_obs"][:3] - start
    assert delta[2] == pytest.approx(-5 * 0.5 * MAX_REL_POS, abs=0.01)
    assert np.abs(delta[:2]).max() < 0.005


def test_absolute_actions_reach_target():
    with CalvinTabletopEnv(use_relative_actions=False, static_size=16, gripper_size=8, render_gripper=False) as env:
        obs = env.reset()
        target = obs["robot_obs"][:6].copy()
        target[0] += 0.03
        for _ in range(15):
            obs, *_ = env.step(np.concatenate([target, [-1.0]]))
        assert np.abs(obs["robot_obs"][:3] - target[:3]).max() < 0.005
        assert obs["robot_obs"][14] == -1.0 and obs["robot_obs"][6] < 0.01  # gripper closed


def test_relative_absolute_round_trip():
    robot_obs = np.zeros(15)
    robot_obs[:6] = [0.1, -0.2, 0.3, np.pi - 0.01, 0.0, 0.5]
    action = np.array([0.11, -0.21, 0.3, -np.pi + 0.02, 0.01, 0.48, -1.0])  # crosses the ±pi seam
    rel = to_relative_action(action, robot_obs)
    assert np.all(np.abs(rel) <= 1.0)
    assert rel[3] == pytest.approx(0.03 / 0.05)
    back = relative_to_absolute(rel, robot_obs)
    assert np.allclose(back[:3], action[:3]) and np.allclose(wrap_angle(back[3:6] - action[3:6]), 0.0, atol=1e-9)
    assert back[6] == -1.0
    # Large deltas clip to ±1.
    assert to_relative_action(np.array([1.0, 0, 0, 0, 0, 0, 1]), np.zeros(15))[0] == 1.0


def test_reset_restores_given_state(env):
    obs = env.reset(seed=11)
    for _ in range(4):
        obs, *_ = env.step(np.array([0.5, 0.3, 0.0, 0.0, 0.0, 0.2, -1.0]))
    robot, scene = obs["robot_obs"].copy(), obs["scene_obs"].copy()
    env.reset(seed=12)
    again = env.reset(robot_obs=robot, scene_obs=scene)
    assert np.allclose(again["robot_obs"][7:14], robot[7:14], atol=1e-9)
    assert np.allclose(again["robot_obs"][:6], robot[:6], atol=1e-6)
    assert np.allclose(again["scene_obs"], scene, atol=1e-6)


def test_save_restore_state(env):
    obs = env.reset(seed=5)
    snapshot = env.save_state()
    before = obs["scene_obs"].copy(), obs["robot_obs"].copy()
    for _ in range(5):
        env.step(np.array([1.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0]))
    restored = env.restore_state(snapshot)
    env.discard_state(snapshot)
    assert np.allclose(restored["scene_obs"], before[0], atol=1e-6)
    assert np.allclose(restored["robot_obs"][:14], before[1][:14], atol=1e-6)


def test_headless_lookahead_then_restore(env):
    from integrations.gr1.sim.expert import ScriptedExpert

    obs = env.reset(seed=5)
    snapshot = env.save_state()
    with env.headless():
        look = env.get_obs()
        assert set(look) == {"robot_obs", "scene_obs"}
        look, _ = ScriptedExpert(env).run("turn_on_led" if obs["scene_obs"][5] < 0.5 else "turn_off_led", look)
        assert look["scene_obs"][5] != obs["scene_obs"][5]  # the look-ahead toggled the LED
    back = env.restore_state(snapshot)
    env.discard_state(snapshot)
    assert "rgb_obs" in env.get_obs()
    assert np.allclose(back["scene_obs"], obs["scene_obs"], atol=1e-6)


def test_seeded_scenes():
    a, b, c = sample_scene_obs(1), sample_scene_obs(1), sample_scene_obs(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    (x0, x1), (y0, y1) = BLOCK_REGION
    for i, colour in enumerate(("red", "blue", "pink")):
        block = a[6 + 6 * i: 12 + 6 * i]
        assert x0 <= block[0] <= x1 and y0 <= block[1] <= y1
        # Each block's yaw is drawn from a generator seeded by the FNV-1 hash of seed/name.
        expected = np.random.default_rng(object_seed(1, f"block_{colour}")).uniform(-np.pi / 4, np.pi / 4)
        assert block[5] == pytest.approx(expected)
    xy = a[[6, 7, 12, 13, 18, 19]].reshape(3, 2)
    assert min(np.linalg.norm(xy[i] - xy[j]) for i in range(3) for j in range(i + 1, 3)) > 0.09


def test_bad_inputs(env):
    env.reset()
    with pytest.raises(ValueError, match="action must be 7"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="action must be 7"):
        env.step(np.full(7, np.nan))
    with pytest.raises(ValueError, match="robot_obs must be 15"):
        env.reset(robot_obs=np.zeros(14))
    with pytest.raises(ValueError, match="scene_obs must be 24"):
        env.reset(scene_obs=np.zeros(23))


def test_close_is_idempotent():
    e = CalvinTabletopEnv(static_size=16, gripper_size=8, render_gripper=False)
    e.close()
    e.close()
    assert e.cid is None
