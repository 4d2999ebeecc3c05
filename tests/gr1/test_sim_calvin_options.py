"""Embedded tabletop options that match the real CALVIN env (issue 15): relative actions integrated
on the commanded pose, and CALVIN's static camera (fov 10 deg from 4.2 m)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from integrations.gr1.sim import CalvinTabletopEnv
from integrations.gr1.sim.cameras import CALVIN_LOOK_AT, CALVIN_LOOK_FROM, CALVIN_LOOK_AT_HERE, static_camera

FORWARD = np.array([1.0, 0, 0, 0, 0, 0, 1.0])  # +2 cm in x per step
HOLD = np.array([0.0, 0, 0, 0, 0, 0, 1.0])


def run(mode: str) -> tuple[np.ndarray, np.ndarray]:
    with CalvinTabletopEnv(action_integration=mode, render_gripper=False, static_size=16) as env:
        start = env.get_robot_obs()[:3].copy()
        env.step(FORWARD)
        env.step(FORWARD)
        commanded = env.target_pose[:3] - start
        for _ in range(10):
            env.step(HOLD)
        return commanded, env.get_robot_obs()[:3] - start


def test_target_integration_adds_actions_to_the_commanded_pose() -> None:
    commanded, reached = run("target")
    np.testing.assert_allclose(commanded, [0.04, 0.0, 0.0], atol=1e-9)  # 2 x 2 cm, whatever the arm's lag
    np.testing.assert_allclose(reached, [0.04, 0.0, 0.0], atol=2e-3)
    commanded_m, reached_m = run("measured")
    assert commanded_m[0] < 0.04 - 1e-3  # the second step started from where the lagging arm was
    assert reached_m[0] < reached[0] - 1e-3
    with pytest.raises(ValueError, match="action_integration"):
        CalvinTabletopEnv(action_integration="absolute")
    assert inspect.signature(CalvinTabletopEnv).parameters["action_integration"].default == "target"  # CALVIN's


def test_the_expert_commands_the_same_targets_in_both_modes() -> None:
    """The expert sends its actions relative to the commanded pose, so it reaches the same state."""
    from integrations.gr1.sim import ScriptedExpert
    from integrations.gr1.sim.scene import sample_scene_obs

    ends = []
    for mode in ("target", "measured"):
        with CalvinTabletopEnv(action_integration=mode, render_gripper=False, static_size=16) as env:
            obs = env.reset(scene_obs=sample_scene_obs(1))
            obs, steps = ScriptedExpert(env).run("open_drawer" if obs["scene_obs"][1] < 0.07 else "close_drawer", obs)
            ends.append((steps, obs["scene_obs"][1], obs["robot_obs"][:3]))
    assert ends[0][0] == ends[1][0]
    np.testing.assert_allclose(ends[0][1], ends[1][1], atol=2e-3)
    np.testing.assert_allclose(ends[0][2], ends[1][2], atol=3e-3)


def test_calvin_static_camera_has_calvins_lens_and_distance() -> None:
    cam = static_camera(200, "calvin")
    np.testing.assert_allclose(cam.proj[1, 1], 1.0 / np.tan(np.radians(5.0)), rtol=1e-6)  # fov 10 deg
    eye = np.linalg.inv(cam.view)[:3, 3]
    np.testing.assert_allclose(np.linalg.norm(eye - CALVIN_LOOK_AT_HERE), np.linalg.norm(np.subtract(CALVIN_LOOK_FROM, CALVIN_LOOK_AT)), rtol=1e-6)
    pixels, depth = cam.project(np.array([CALVIN_LOOK_AT_HERE, [-0.15, -0.2, 0.0], [-0.15, 0.2, 0.0], [0.0, 0.1, 0.0225]]))
    np.testing.assert_allclose(pixels[0], [100.0, 100.0], atol=1e-3)
    assert pixels[1, 0] < pixels[2, 0]  # world -y ("left" in the task names) stays on the image's left
    assert np.all((pixels[1:] > 0) & (pixels[1:] < 200)) and np.all(depth > 3.5)
    with pytest.raises(ValueError, match="'near' or 'calvin'"):
        static_camera(200, "wide")


def test_env_renders_with_the_calvin_camera() -> None:
    with CalvinTabletopEnv(static_view="calvin", render_gripper=False, static_size=48) as env:
        obs = env.get_obs()
        assert obs["rgb_obs"]["rgb_static"].shape == (48, 48, 3)
        assert obs["rgb_obs"]["rgb_static"].std() > 5  # the scene is in view, not an empty frame
