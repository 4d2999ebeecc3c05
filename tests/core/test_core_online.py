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


def test_update_with_te_one_shifts_the_previous_horizon(clip):
    model = perturbed_model(cache_window=32)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=5, tracker=tracker, update_start_time=1.0)
    first = predictor.reset(clip[0], QUERIES, "a red square moves right")
    assert first.shape == (4, 5, 2)
    tracker.set(first[:, 0])  # the new frame shows the points where step 0 predicted them
    second = predictor.update(clip[1])
    np.testing.assert_allclose(second[:, :4], first[:, 1:], atol=1e-3)
    assert not np.allclose(second[:, 4], first[:, 4], atol=1e-3)  # a genuinely new final step


def test_observation_replaces_step_zero_and_moves_the_horizon(clip):
    model = perturbed_model(cache_window=32)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=4, tracker=tracker, update_start_time=1.0)
    first = predictor.reset(clip[0], QUERIES)
    tracker.set(first[:, 0] + np.array([5.0, -3.0], np.float32))
    second = predictor.update(clip[1])
    # t_e = 1 keeps the old shifts, so the whole horizon moves with the observation
    np.testing.assert_allclose(second[:, :3], first[:, 1:] + np.array([5.0, -3.0]), atol=1e-3)


@pytest.mark.parametrize("mode", ["update", "naive"])
def test_kv_cached_streaming_equals_recomputation(clip, mode):
    model = perturbed_model(cache_window=32)
    outs = []
    for use_cache in (True, False):
        tracker = GivenPositionsTracker()
        predictor = HorizonPredictor(model, horizon=4, tracker=tracker, mode=mode, use_cache=use_cache, seed=7)
        horizons = [predictor.reset(clip[0], QUERIES, "a blue disc moves up")]
        for t in range(1, 5):
            tracker.set(horizons[-1][:, 0] + 1.5)
            horizons.append(predictor.update(clip[t]))
        outs.append(np.stack(horizons))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)


def test_cache_memory_is_bounded_over_1000_updates(clip):
    torch.manual_seed(0)
    model = perturbed_model(cache_window=6, dim=32, heads=2, depth=1, flow_depth=1)
    tracker = GivenPositionsTracker()
    predictor = HorizonPredictor(model, horizon=2, tracker=tracker, update_steps=1, sample_steps=1)
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
    with pytest.raises(ValueError, match="cache_window"):
        HorizonPredictor(perturbed_model(cache_window=4), horizon=8, tracker=GivenPositionsTracker())
