"""Streaming horizon prediction (paper §3.4): consistency, cache == recomputation, bounded memory."""

import numpy as np
import pytest
import torch

from arfm.data.synthetic import random_scene, render_clip
from arfm.online import GivenPositionsTracker, HorizonPredictor
from tests.core.factories import perturbed_model


@pytest.fixture(scope="module")
def clip():
    return render_clip(random_scene(np.random.default_rng(0)), 8)


QUERIES = np.array([[60.0, 60.0], [120.0, 90.0], [200.0, 180.0], [30.0, 220.0]], np.float32)


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_update_with_te_one_shifts_the_previous_horizon(clip, schedule):
    model = perturbed_model(cache_window=32)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=5, tracker=tracker, schedule=schedule, update_start_time=1.0)
    first = predictor.reset(clip[0], QUERIES, "a red square moves right")
    assert first.shape == (4, 5, 2)
    tracker.set(first[:, 0])  # the new frame shows the points where step 0 predicted them
    second = predictor.update(clip[1])
    np.testing.assert_allclose(second[:, :4], first[:, 1:], atol=1e-3)
    assert not np.allclose(second[:, 4], first[:, 4], atol=1e-3)  # a genuinely new final step


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_observation_replaces_step_zero_and_moves_the_horizon(clip, schedule):
    model = perturbed_model(cache_window=32)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=4, tracker=tracker, schedule=schedule, update_start_time=1.0)
    first = predictor.reset(clip[0], QUERIES)
    tracker.set(first[:, 0] + np.array([5.0, -3.0], np.float32))
    second = predictor.update(clip[1])
    # t_e = 1 keeps the old shifts, so the whole horizon moves with the observation
    np.testing.assert_allclose(second[:, :3], first[:, 1:] + np.array([5.0, -3.0]), atol=1e-3)


def stream_horizons(model, clip, frames=5, offset=1.5, **kwargs) -> np.ndarray:
    """Horizons ``(frames, N, H, 2)`` of a predictor fed observations ``offset`` px off its step 0."""
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, tracker=tracker, **kwargs)
    horizons = [predictor.reset(clip[0], QUERIES, "a blue disc moves up")]
    for t in range(1, frames):
        tracker.set(horizons[-1][:, 0] + offset)
        horizons.append(predictor.update(clip[t]))
    return np.stack(horizons)


@pytest.mark.parametrize("mode,schedule", [("update", "sequential"), ("update", "parallel"), ("naive", "sequential")])
def test_kv_cached_streaming_equals_recomputation(clip, mode, schedule):
    model = perturbed_model(cache_window=32)
    cached, recomputed = (
        stream_horizons(model, clip, horizon=4, mode=mode, schedule=schedule, use_cache=use_cache, seed=7) for use_cache in (True, False)
    )
    np.testing.assert_allclose(cached, recomputed, atol=1e-4)


def test_parallel_schedule_equals_sequential_when_nothing_is_renoised(clip):
    # With t_e = 1 the re-integrated rows are the re-anchored previous ones, which is exactly
    # what the parallel schedule conditions on: the Jacobi sweep is then the fixed point.
    model = perturbed_model(cache_window=32)
    sequential, parallel = (
        stream_horizons(model, clip, horizon=5, schedule=schedule, update_start_time=1.0, seed=3) for schedule in ("sequential", "parallel")
    )
    np.testing.assert_allclose(parallel, sequential, atol=1e-3)
    # ... and with re-noising they are different algorithms (the flag is not ignored).
    sequential, parallel = (stream_horizons(model, clip, horizon=5, schedule=schedule, seed=3) for schedule in ("sequential", "parallel"))
    np.testing.assert_allclose(parallel[0], sequential[0], atol=1e-5)  # reset is the same rollout
    assert not np.allclose(parallel[1:], sequential[1:], atol=1e-3)


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_cache_memory_is_bounded_over_1000_updates(clip, schedule):
    torch.manual_seed(0)
    model = perturbed_model(cache_window=6, dim=32, heads=2, depth=1, flow_depth=1)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=2, tracker=tracker, schedule=schedule, update_steps=1, sample_steps=1)
    predictor.reset(clip[0], QUERIES[:2])
    sizes = []
    for t in range(1000):
        tracker.set(QUERIES[:2] + np.float32(t % 3))
        predictor.update(clip[t % len(clip)])
        sizes.append(predictor.state.cache.nbytes())
    assert max(sizes[100:]) == sizes[-1] == sizes[50]
    assert predictor.state.cache.num_past <= 6


def test_update_before_reset_and_bad_queries_are_errors(clip):
    predictor = HorizonPredictor(perturbed_model(), horizon=3, tracker=GivenPositionsTracker())
    with pytest.raises(RuntimeError, match="before reset"):
        predictor.update(clip[0])
    with pytest.raises(ValueError, match="queries"):
        predictor.reset(clip[0], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="schedule"):
        HorizonPredictor(perturbed_model(), horizon=3, tracker=GivenPositionsTracker(), schedule="jacobi")
    with pytest.raises(ValueError, match="cache_window"):
        HorizonPredictor(perturbed_model(cache_window=4), horizon=8, tracker=GivenPositionsTracker())


@pytest.mark.parametrize("schedule,fusion_calls,head_calls", [("sequential", 6, 4 * 5 + 16), ("parallel", 1, 4 + 16)])
def test_update_call_counts_per_schedule(clip, schedule, fusion_calls, head_calls, monkeypatch):
    # The parallel schedule's point: one fusion call and 4 + 16 head calls per frame, not H and 4 (H - 1) + 16.
    model = perturbed_model(cache_window=32)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=6, tracker=tracker, schedule=schedule)
    first = predictor.reset(clip[0], QUERIES)
    calls = {"fusion": 0, "head": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(model.fusion, "step", counting("fusion", model.fusion.step))
    monkeypatch.setattr(model.head, "forward", counting("head", model.head.forward))
    tracker.set(first[:, 0])
    predictor.update(clip[1])
    assert calls == {"fusion": fusion_calls, "head": head_calls}
