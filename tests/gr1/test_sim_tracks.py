"""Ground-truth tracks: projection agrees with the renderer, visibility from depth, sidecar files."""

import numpy as np
import pybullet as pb
import pytest

from integrations.gr1.sim.scene import BLOCK_HALF, sample_scene_obs
from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv
from integrations.gr1.sim.tracks import (
    DYNAMIC_FRACTION, ROBOT_MOVING_LINKS, AttachedPoints, TrackRecorder, _split, decode_segmentation, load_tracks,
    movement_prior, sample_points, sample_scene_points, save_tracks, sidecar_name, visibility,
)


@pytest.fixture(scope="module")
def env():
    e = CalvinTabletopEnv(static_size=200, render_gripper=False, seed=0)
    yield e
    e.close()


def _place(env, scene):
    env.reset(scene_obs=scene)
    return env.static_cam.render(env.cid, segmentation=True)


def test_block_points_project_inside_their_masks(env):
    _, depth, seg = _place(env, sample_scene_obs(0))
    body, _ = decode_segmentation(seg)
    for name, block in env.scene.bodies.blocks.items():
        # The top-face centre and four points near the top-face corners, attached to the block.
        local = np.array([[0, 0, BLOCK_HALF], [0.6 * BLOCK_HALF, 0.6 * BLOCK_HALF, BLOCK_HALF],
                          [-0.6 * BLOCK_HALF, 0.6 * BLOCK_HALF, BLOCK_HALF], [0.6 * BLOCK_HALF, -0.6 * BLOCK_HALF, BLOCK_HALF],
                          [-0.6 * BLOCK_HALF, -0.6 * BLOCK_HALF, BLOCK_HALF]])
        points = AttachedPoints(np.full(5, block), np.full(5, -1), local)
        pixels, point_depth = env.static_cam.project(points.world(env.cid))
        cols, rows = np.floor(pixels).astype(int).T
        assert np.all(body[rows, cols] == block), name
        assert np.all(visibility(pixels, point_depth, depth, env.static_cam))


def test_project_unproject_inverse(env):
    world = np.array([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [-0.3, 0.25, 0.2]])
    pixels, depth = env.static_cam.project(world)
    assert np.allclose(env.static_cam.unproject(pixels, depth), world, atol=1e-9)
    # The camera target lies on the optical axis: the image centre.
    target_pixels, _ = env.static_cam.project(np.array([[-0.17, 0.0, 0.0]]))
    assert np.allclose(target_pixels, [[100.0, 100.0]], atol=1e-6)


def test_rendered_depth_matches_projected_depth(env):
    _, depth, _ = _place(env, sample_scene_obs(0))
    red = env.scene.bodies.blocks["red"]
    pos, _ = pb.getBasePositionAndOrientation(red, physicsClientId=env.cid)
    top = np.array([[pos[0], pos[1], pos[2] + BLOCK_HALF]])
    pixels, point_depth = env.static_cam.project(top)
    col, row = np.floor(pixels[0]).astype(int)
    assert depth[row, col] == pytest.approx(point_depth[0], abs=0.01)


def test_point_hidden_behind_another_body(env):
    scene = sample_scene_obs(0)
    _place(env, scene)
    red = env.scene.bodies.blocks["red"]
    top = AttachedPoints(np.array([red]), np.array([-1]), np.array([[0.0, 0.0, BLOCK_HALF]]))
    pixels, point_depth = env.static_cam.project(top.world(env.cid))
    _, depth, _ = env.static_cam.render(env.cid)
    assert visibility(pixels, point_depth, depth, env.static_cam).all()
    # Float the blue block on the ray from the camera to the red block's top (physics not stepped).
    eye = np.array([0.62, 0.0, 0.95])
    target = top.world(env.cid)[0]
    blocker = target + 0.3 * (eye - target) / np.linalg.norm(eye - target)
    hidden = scene.copy()
    hidden[12:15] = blocker
    env.scene.set_scene_obs(hidden)
    _, depth, seg = env.static_cam.render(env.cid, segmentation=True)
    col, row = np.floor(pixels[0]).astype(int)
    assert decode_segmentation(seg)[0][row, col] == env.scene.bodies.blocks["blue"]
    assert not visibility(pixels, point_depth, depth, env.static_cam).any()
    # Outside the frame is never visible.
    assert not visibility(np.array([[-1.0, 5.0]]), np.array([1.0]), depth, env.static_cam).any()


def test_recorder_follows_a_moved_block(env):
    scene = sample_scene_obs(0)
    _place(env, scene)
    recorder = TrackRecorder(env.cid, env.static_cam, env.moving_objects(), num_points=64, seed=0)
    recorder.start()
    recorder.record(env.get_obs()["depth_obs"]["depth_static"])
    moved = scene.copy()
    moved[7] -= 0.08  # red block 8 cm to the left (image left)
    env.scene.set_scene_obs(moved)
    recorder.record(env.get_obs()["depth_obs"]["depth_static"])
    tracks, visible = recorder.result()
    assert tracks.shape == (64, 2, 2) and visible.shape == (64, 2) and tracks.dtype == np.float32
    # Points were sampled at pixel centres of surfaces seen in the first frame.
    assert np.allclose(tracks[:, 0] % 1.0, 0.5, atol=1e-3) and visible[:, 0].all()
    on_red = recorder.points.bodies == env.scene.bodies.blocks["red"]
    static = np.isin(recorder.points.bodies, [env.scene.bodies.table, env.scene.bodies.plane])
    assert on_red.sum() >= 5 and static.sum() >= 5
    shift = tracks[:, 1] - tracks[:, 0]
    assert np.all(shift[on_red, 0] < -5.0)  # moved left by several pixels
    assert np.allclose(shift[static], 0.0, atol=1e-4)


def test_sidecar_round_trip_and_errors(tmp_path):
    tracks = np.random.default_rng(0).uniform(0, 200, (4, 6, 2)).astype(np.float32)
    visible = tracks[..., 0] > 50
    path = tmp_path / "tracks" / sidecar_name(10, 15)
    assert path.name == "ep_0000010_0000015.npz"
    save_tracks(path, tracks, visible, (200, 200), 10, 15)
    got = load_tracks(path)
    assert np.array_equal(got["tracks"], tracks) and np.array_equal(got["visible"], visible)
    with pytest.raises(ValueError, match="start..end"):
        save_tracks(path, tracks, visible, (200, 200), 10, 14)
    with pytest.raises(ValueError, match="NaN"):
        save_tracks(path, np.full_like(tracks, np.nan), visible, (200, 200), 10, 15)
    with pytest.raises(FileNotFoundError, match="ep_0000000_0000001"):
        load_tracks(tmp_path / sidecar_name(0, 1))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.npz"):
        load_tracks(tmp_path / "bad.npz")


def test_split_is_proportional_with_largest_remainders():
    assert _split(56, np.array([7.0] + [1.0] * 7)).tolist() == [28, 4, 4, 4, 4, 4, 4, 4]
    assert _split(10, np.ones(4)).tolist() == [3, 3, 2, 2]  # the earlier even split: extras to the first
    assert _split(5, np.array([1.0, 3.0])).tolist() == [1, 4]  # 1.25 / 3.75: the larger remainder wins
    assert _split(0, np.array([2.0, 1.0])).tolist() == [0, 0]


def test_movement_prior_puts_half_the_points_on_the_moving_arm(env):
    _place(env, sample_scene_obs(0))
    moving, weights = movement_prior(env)
    assert moving[0] == (env.robot, ROBOT_MOVING_LINKS) and weights[0] == 7.0
    assert len(moving) == 8 and weights[1:] == [1.0] * 7 and env.robot not in [body for body, _ in moving[1:]]
    points = sample_scene_points(env, 64, np.random.default_rng(0))
    on_arm = (points.bodies == env.robot) & np.isin(points.links, ROBOT_MOVING_LINKS)
    # 64 * 0.875 = 56 weighted points: 7/14 of them (28) on the arm, 4 on each other movable body
    # (all 8 are in view at this scene), plus 8 uniform ones that may also land on the arm.
    assert DYNAMIC_FRACTION == 0.875 and 28 <= on_arm.sum() <= 36
    for body in (env.scene.bodies.blocks["red"], env.scene.bodies.drawer):
        assert 4 <= (points.bodies == body).sum() <= 12
    # The earlier sampling (even split over 8 bodies) gives the arm 4 of 32 weighted points.
    even = sample_points(env.cid, env.static_cam, 64, np.random.default_rng(0), env.moving_objects())
    assert ((even.bodies == env.robot).sum()) < 12


def test_sample_points_weights_unseen_objects_and_errors(env):
    _place(env, sample_scene_obs(0))
    rng = np.random.default_rng(0)
    red, blue = env.scene.bodies.blocks["red"], env.scene.bodies.blocks["blue"]
    # All points on moving bodies; blue weighs 3x red; a body id no pixel shows gives its share away.
    points = sample_points(env.cid, env.static_cam, 8, rng, [(red, None), (blue, None), (999, None)], 1.0, [1.0, 3.0, 5.0])
    assert (points.bodies == red).sum() == 2 and (points.bodies == blue).sum() == 6
    zero = sample_points(env.cid, env.static_cam, 8, rng, [(red, None), (blue, None)], 1.0, [0.0, 1.0])
    assert (zero.bodies == blue).all()
    with pytest.raises(ValueError, match="weights"):
        sample_points(env.cid, env.static_cam, 8, rng, [(red, None)], 1.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="weights"):
        sample_points(env.cid, env.static_cam, 8, rng, [(red, None)], 1.0, [-1.0])


def test_movement_weighted_points_move_with_the_arm(env):
    """Over 12 arm steps most sidecar points move with the prior, few without it (issue 13's 16 %)."""
    def moved_share(weighted: bool) -> float:
        _place(env, sample_scene_obs(0))
        moving, weights = movement_prior(env) if weighted else (env.moving_objects(), None)
        recorder = TrackRecorder(env.cid, env.static_cam, moving, 64, 0, DYNAMIC_FRACTION if weighted else 0.5, weights=weights)
        recorder.start()
        obs = env.get_obs()
        recorder.record(obs["depth_obs"]["depth_static"])
        for _ in range(12):  # TCP 2 cm per step towards the table's left, gripper open
            obs = env.step(np.array([0.0, 1.0, -0.5, 0.0, 0.0, 0.0, 1.0]))[0]
            recorder.record(obs["depth_obs"]["depth_static"])
        tracks, _ = recorder.result()
        return float((np.linalg.norm(tracks[:, -1] - tracks[:, 0], axis=-1) > 5.0).mean())

    weighted, even = moved_share(True), moved_share(False)
    assert weighted >= 0.4 and even <= 0.25 and weighted > 2 * even
