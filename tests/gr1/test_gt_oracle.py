"""The closed-loop ground truth of the ``gt`` row (integrations/gr1/sim/oracle.py)."""

from __future__ import annotations

import numpy as np
import pytest

from integrations.gr1.eval_backends import EmbeddedBackend
from integrations.gr1.sim.expert import Waypoint
from integrations.gr1.sim.oracle import ExpertContinuation

H = 15  # future steps of GR-1's 16-position tracks
STILL = np.zeros(7)
STILL[6] = 1.0  # relative action: stay where the commanded pose is, gripper open


@pytest.fixture(scope="module", params=["from_state", "from_start"])
def backend(request):
    env = EmbeddedBackend(seed=0, num_points=8, ground_truth_mode=request.param)
    yield env
    env.close()


def start(backend: EmbeddedBackend, seed: int = 3) -> str:
    chain = backend.sample_chains(1, seed=seed)[0]
    backend.reset(chain)
    backend.begin_subtask(chain.tasks[0])
    return chain.tasks[0]


def test_ground_truth_leaves_the_simulator_untouched(backend: EmbeddedBackend) -> None:
    action = np.array([0.3, -0.2, 0.1, 0.0, 0.0, 0.1, -1.0])
    start(backend)
    reference = backend.step(action)
    start(backend)
    now, _ = backend.query_points()
    future, visible = backend.ground_truth(0)(H)
    assert future.shape == (8, H, 2) and visible.shape == (8, H)
    assert np.abs(future[:, -1] - now).max() > 1.0  # the expert moved something
    after = backend.step(action)
    # pybullet restoreState does not restore the solver warm start: ~1e-8 m (arm), ~1e-5 rad (resting blocks) remain
    np.testing.assert_allclose(after["robot_obs"], reference["robot_obs"], atol=1e-6)
    np.testing.assert_allclose(after["scene_obs"], reference["scene_obs"], atol=1e-4)
    assert (after["rgb_obs"]["rgb_static"] == reference["rgb_obs"]["rgb_static"]).mean() > 0.999


def test_both_definitions_agree_at_the_subtask_start() -> None:
    futures = []
    for mode in ("from_state", "from_start"):
        backend = EmbeddedBackend(seed=0, num_points=8, ground_truth_mode=mode)
        try:
            start(backend)
            futures.append(backend.ground_truth(0)(H)[0])
        finally:
            backend.close()
    np.testing.assert_allclose(futures[0], futures[1], atol=1e-3)


def test_a_policy_that_waits_is_shown_the_start_again_only_from_state(backend: EmbeddedBackend) -> None:
    """The arm stands still for 30 steps: continued from the state, the future is the one of step 0;
    indexed by time, it is the expert's motion from its step 30 on (not where the arm is)."""
    start(backend)
    first = backend.ground_truth(0)(H)[0]
    for step in range(1, 31):
        backend.ground_truth(step)(H)  # the conditioner asks at every step
        backend.step(STILL)
    later = backend.ground_truth(30)(H)[0]
    moved = np.abs(later - first).max()
    if backend.ground_truth_mode == "from_state":
        assert moved < 1.0
    else:
        assert moved > 1.0


def test_progress_follows_the_state_and_skips_ahead() -> None:
    backend = EmbeddedBackend(seed=0, num_points=4)
    try:
        task = start(backend)
        oracle = ExpertContinuation(backend.env, task, lambda: backend._project()[0])
        robot = backend.env.get_robot_obs()
        tcp, yaw = robot[:3], float(robot[5])
        up = np.array([0.0, 0.0, 1.0])
        oracle.waypoints = [Waypoint(tcp + 0.1 * up, yaw, 1.0), Waypoint(tcp + [0.1, 0, 0], yaw, 1.0),
                            Waypoint(tcp, yaw, 1.0), Waypoint(tcp, yaw, -1.0, settle=5)]
        assert oracle.advance() == 3  # at waypoint 2 (open gripper) already: 0 and 1 are skipped; 3 needs a closed gripper
        oracle.next = 0
        oracle.waypoints[2:] = [Waypoint(tcp + 0.05 * up, yaw, 1.0), Waypoint(tcp - 0.05 * up, yaw, 1.0)]
        assert oracle.advance() == 3  # half-way down from waypoint 2 to 3: travelling to 3
        oracle.next = 0
        oracle.waypoints[3] = Waypoint(tcp - 0.05 * up, yaw, -1.0)
        assert oracle.advance() == 0  # on that segment, but with the gripper open where 3 wants it closed
        oracle.waypoints = [Waypoint(tcp + [0.05, 0, 0], yaw, 1.0), Waypoint(tcp, yaw + 0.5, 1.0)]
        assert oracle.advance() == 1  # on the way to 1 (yaw is left to the expert on the way) ...
        oracle.waypoints.append(Waypoint(tcp + [0, 0.05, 0], yaw + 0.5, 1.0))
        assert oracle.advance() == 1  # ... but 1 is not passed with the wrong yaw; progress never goes back
    finally:
        backend.close()


def test_unknown_ground_truth_mode_is_named() -> None:
    with pytest.raises(ValueError, match="ground_truth_mode"):
        EmbeddedBackend(ground_truth_mode="psychic")
