"""MotionStream (arfm.policy_api): frames of any size in, tracks in the camera's pixels out.

A tiny random-weight model: these tests check the plumbing and the coordinates (tracked
positions against a synthetic texture's known motion, the exact inverse map of the horizon),
not the quality of the predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arfm.config import tiny_model_config
from arfm.coords import FrameTransform
from arfm.model import TrackShiftFlowPredictor
from arfm.policy_api import GridQuerySource, LearnedQuerySource, MotionStream, MotionStreamConfig, farthest_from
from arfm.query.model import QueryInfoPredictor, tiny_query_config
from arfm.tracking.synthetic import SyntheticMotion, make_synthetic_clip

HORIZON = 3
FAST = dict(horizon=HORIZON, sample_steps=2, update_steps=1)  # few Euler steps: plumbing only


@pytest.fixture(scope="module")
def model() -> TrackShiftFlowPredictor:
    torch.manual_seed(0)
    return TrackShiftFlowPredictor(tiny_model_config()).eval()


def texture_clip(points: np.ndarray, shift: tuple[float, float], frames: int, height: int = 480, width: int = 640):
    """A blurred-noise texture translating by ``shift`` px per frame, cropped to ``height x width``,
    and the true source-pixel positions ``(N, T, 2)`` of ``points`` given on frame 0."""
    motion = SyntheticMotion(num_frames=frames, size=max(height, width), shift_per_frame=shift, degrees_per_frame=0.0, blur_sigma=3.0)
    queries = np.concatenate([np.zeros((len(points), 1)), points], axis=1)
    video, truth, _ = make_synthetic_clip(motion, queries)
    return np.ascontiguousarray(video[:, :height, :width]), truth


def grid(x0: float, x1: float, y0: float, y1: float, side: int = 4) -> np.ndarray:
    xs, ys = np.meshgrid(np.linspace(x0, x1, side), np.linspace(y0, y1, side))
    return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


def test_positions_come_back_in_source_pixels_on_a_480x640_texture(model):
    queries = grid(140, 500, 80, 400)
    video, truth = texture_clip(queries, shift=(3.0, 1.5), frames=6)
    stream = MotionStream(model, num_envs=1, config=MotionStreamConfig(num_points=16, **FAST))
    motion = stream.reset([video[0]], [queries], texts="push the block")
    np.testing.assert_allclose(motion.position[0], queries, atol=1e-3)
    assert motion.refilled.all() and motion.visible.all()
    transform = stream.transforms[0]
    assert transform == FrameTransform(width=640, height=480, mode="center_crop")
    for t in range(1, len(video)):
        motion = stream.step([video[t]])
        assert motion.horizon.shape == (1, 16, HORIZON, 2) and motion.horizon.dtype == np.float32
        # the texture moved 3 px right and 1.5 px down per frame in the 640x480 source
        error = np.linalg.norm(motion.position[0] - truth[:, t], axis=-1)
        assert motion.visible.all() and error.max() < 1.0, error
        assert not motion.refilled.any()
        # the horizon in source pixels is exactly the inverse map of the model's horizon
        np.testing.assert_allclose(motion.horizon[0], transform.points_to_source(motion.horizon_model[0]), rtol=0, atol=1e-4)
        expected_in = (motion.horizon_model >= 0).all(-1) & (motion.horizon_model < 256).all(-1)
        np.testing.assert_array_equal(motion.in_frame, expected_in)


def test_two_environments_with_different_frame_sizes_in_one_call(model):
    big_q, small_q = grid(140, 500, 80, 400), grid(20, 180, 60, 230)
    big, big_truth = texture_clip(big_q, shift=(2.0, 1.0), frames=4)
    small, small_truth = texture_clip(small_q, shift=(-1.0, 2.0), frames=4, height=300, width=200)
    config = MotionStreamConfig(num_points=16, resize="letterbox", **FAST)
    stream = MotionStream(model, num_envs=2, config=config)
    motion = stream.reset([big[0], small[0]], [big_q, small_q], texts=["a", "b"])
    assert motion.horizon.shape == (2, 16, HORIZON, 2)
    np.testing.assert_allclose(motion.position, np.stack([big_q, small_q]), atol=1e-3)
    assert [(t.width, t.height) for t in stream.transforms] == [(640, 480), (200, 300)]
    for t in range(1, 4):
        motion = stream.step([big[t], small[t]])
        for env, truth in enumerate((big_truth, small_truth)):
            assert np.linalg.norm(motion.position[env] - truth[:, t], axis=-1).max() < 1.0
            np.testing.assert_allclose(
                motion.horizon[env], stream.transforms[env].points_to_source(motion.horizon_model[env]), rtol=0, atol=1e-4
            )
    # letterboxed 200x300: 171 columns pasted at (256 - 171) // 2 = 42; the pad around them is not the source
    x0, _, x1, _ = stream.transforms[1].content_box()
    assert (x0, x1) == (42.0, 213.0)
    hx = motion.horizon_model[1, ..., 0]
    assert not motion.in_frame[1][(hx < x0) | (hx >= x1)].any()

    # env 1 restarts alone on a new camera size; env 0 keeps streaming
    motion = stream.step([big[3], big[0]], resets=[False, True], queries=[None, big_q])
    assert not motion.refilled[0].any() and motion.refilled[1].all()
    assert (stream.transforms[1].width, stream.transforms[1].height) == (640, 480)


def test_lost_points_are_refilled_after_leaving_the_frame(model):
    # 12 px/frame to the right: the right columns leave the crop x in [80, 560) within a few frames
    queries = grid(140, 500, 80, 400)
    video, truth = texture_clip(queries, shift=(12.0, 0.0), frames=8)
    stream = MotionStream(model, 1, MotionStreamConfig(num_points=16, requery_below=0.9, **FAST))
    previous = stream.reset([video[0]], [queries])
    refills = 0
    for t in range(1, len(video)):
        motion = stream.step([video[t]])
        refilled = motion.refilled[0]
        if refilled.any():
            refills += 1
            kept = ~refilled
            # a refill restarts tracking: every slot is followed again, kept ones where they were
            assert motion.visible.all()
            np.testing.assert_allclose(motion.position[0][kept], truth[kept, t], atol=1.0)
            new = motion.position[0][refilled]
            assert ((new[:, 0] >= 80) & (new[:, 0] < 560) & (new[:, 1] >= 0) & (new[:, 1] < 480)).all()
            assert not np.allclose(new, previous.position[0][refilled], atol=1.0)
            # new queries avoid the points already tracked
            gaps = np.linalg.norm(new[:, None] - motion.position[0][kept][None], axis=-1)
            assert gaps.min() > 10.0
        else:
            assert motion.visible.mean() >= 0.9
        previous = motion
    assert refills >= 1


def test_without_refills_lost_points_stay_lost(model):
    queries = grid(140, 500, 80, 400)
    video, _ = texture_clip(queries, shift=(12.0, 0.0), frames=8)
    stream = MotionStream(model, 1, MotionStreamConfig(num_points=16, requery_below=0.0, **FAST))
    stream.reset([video[0]], [queries])
    for t in range(1, len(video)):
        motion = stream.step([video[t]])
        assert not motion.refilled.any()
    assert motion.visible.mean() < 0.9  # the right columns left the frame


def test_queries_are_chosen_when_none_are_given(model):
    frame = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    stream = MotionStream(model, 1, MotionStreamConfig(num_points=9, resize="letterbox", **FAST))
    motion = stream.reset([frame])
    # a 3x3 grid over the source, the letterbox's pad excluded
    np.testing.assert_allclose(np.unique(motion.position[0][:, 0]), [200 / 6, 100, 1000 / 6], atol=0.05)
    np.testing.assert_allclose(np.unique(motion.position[0][:, 1]), [50, 150, 250], atol=0.05)

    torch.manual_seed(0)
    learned = LearnedQuerySource(QueryInfoPredictor(tiny_query_config()), num_candidates=64)
    stream = MotionStream(model, 1, MotionStreamConfig(num_points=9, resize="letterbox", **FAST), query_source=learned)
    position = stream.reset([frame]).position[0]
    assert ((position >= 0) & (position < [200, 300])).all() and len(np.unique(position, axis=0)) == 9


def test_grid_source_picks_the_farthest_free_cells():
    chosen = farthest_from(np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0]]), 2, np.array([[0.0, 0.0]]))
    np.testing.assert_array_equal(chosen, [[10.0, 0.0], [5.0, 0.0]])
    fresh = GridQuerySource()(np.zeros((256, 256, 3), np.uint8), 4, (0.0, 32.0, 256.0, 224.0), np.zeros((0, 2)))
    np.testing.assert_allclose(fresh, [[64, 80], [192, 80], [64, 176], [192, 176]])


def test_bad_inputs_name_the_input(model):
    frame = np.zeros((480, 640, 3), np.uint8)
    stream = MotionStream(model, 2, MotionStreamConfig(num_points=4, **FAST))
    good = grid(200, 400, 100, 300, side=2)
    with pytest.raises(ValueError, match=r"frames\[1\] must be an \(H, W, 3\) RGB image, got shape \(480, 640, 4\)"):
        stream.reset([frame, np.zeros((480, 640, 4), np.uint8)], [good, good])
    with pytest.raises(ValueError, match=r"frames\[0\] must be uint8"):
        stream.reset([frame.astype(np.float32), frame], [good, good])
    nan = good.copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"queries\[0\]: point 2 is not finite"):
        stream.reset([frame, frame], [nan, good])
    outside = good.copy()
    outside[3] = (650.0, 10.0)
    with pytest.raises(ValueError, match=r"queries\[1\]: point 3 at \(x=650, y=10\) is outside the 640x480 source frame"):
        stream.reset([frame, frame], [good, outside])
    cropped = good.copy()
    cropped[0] = (20.0, 10.0)  # inside the frame but left of the centre crop x in [80, 560)
    with pytest.raises(ValueError, match=r"queries\[1\]: point 0 .* center_crop transform cuts away"):
        stream.reset([frame, frame], [good, cropped])
    with pytest.raises(ValueError, match=r"queries\[0\] has 3 points; .*num_points=4"):
        stream.reset([frame, frame], [good[:3], good])
    with pytest.raises(ValueError, match=r"frames must hold one entry per environment \(2\), got 1"):
        stream.reset([frame], [good])
    assert stream.transforms == [None, None]  # nothing above changed any state
    stream.reset([frame, frame], [good, good])
    with pytest.raises(ValueError, match=r"frames\[1\] is 320x240 but environment 1 was reset on 640x480"):
        stream.step([frame, np.zeros((240, 320, 3), np.uint8)])
    with pytest.raises(ValueError, match="requery_below"):
        MotionStreamConfig(requery_below=1.5)
