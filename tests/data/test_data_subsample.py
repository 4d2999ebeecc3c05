"""Paper §3.1 sub-sampling and §4.2 evaluation filter, pinned on hand-computed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from arfm.data.subsample import (
    clip_movement,
    eval_filter,
    sample_tracks,
    sampling_probabilities,
    summed_distance,
    track_movement,
    visibility_filter,
)


def test_visibility_filter_keeps_more_than_half():
    # 4 future frames: counts 3, 2, 4, 0 -> only > 2 passes (strictly more than half)
    vis = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    assert visibility_filter(vis, min_count=2).tolist() == [0, 2]


def test_visibility_filter_falls_back_to_most_visible():
    vis = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
    # only tracks 0 and 2 pass; 3 wanted -> the three most visible: 2 (4), 0 (3), 3 (2)
    assert visibility_filter(vis, min_count=3).tolist() == [0, 2, 3]
    # ties broken by index: counts 1, 1, 1 -> first two
    assert visibility_filter(np.array([[1, 0], [0, 1], [1, 0]], bool), min_count=5).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no future frames"):
        visibility_filter(np.zeros((3, 0), bool), 1)


def test_track_movement_mean_squared_visible_steps():
    tracks = np.array(
        [
            [[0, 0], [3, 4], [3, 4], [6, 8]],  # steps |d|^2: 25, 0, 25 -> mean 50/3
            [[0, 0], [1, 0], [11, 0], [11, 0]],  # steps 1, 100, 0 ; visible only on 0,1 -> only step 0 -> 1
            [[5, 5], [9, 9], [5, 5], [0, 0]],  # never visible on two consecutive frames -> 0
        ],
        dtype=np.float64,
    )
    visible = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [1, 0, 1, 0]], dtype=bool)
    np.testing.assert_allclose(track_movement(tracks, visible), [50 / 3, 1.0, 0.0])


def test_softmax_probabilities_hand_computed():
    p = sampling_probabilities(np.array([0.0, 10.0, 20.0]), temperature=10.0)
    e = np.exp([0.0, 1.0, 2.0])
    np.testing.assert_allclose(p, e / e.sum())
    # a huge movement does not overflow
    p = sampling_probabilities(np.array([0.0, 1e6]), temperature=1.0)
    np.testing.assert_allclose(p, [0.0, 1.0])
    with pytest.raises(ValueError, match="temperature"):
        sampling_probabilities(np.zeros(2), temperature=0.0)


def test_sample_tracks_follows_softmax_frequencies():
    # 3 candidate tracks, all visible; movements 0, 10, 20 px^2 -> first draw ~ softmax(m / 10)
    steps = np.arange(3)[None, :, None]
    tracks = np.concatenate(
        [np.zeros((1, 3, 2)), np.concatenate([np.sqrt(10.0) * steps, np.zeros((1, 3, 1))], -1),
         np.concatenate([np.sqrt(20.0) * steps, np.zeros((1, 3, 1))], -1)]
    )
    visible = np.ones((3, 3), bool)
    np.testing.assert_allclose(track_movement(tracks, visible), [0, 10, 20])
    rng = np.random.default_rng(0)
    firsts = np.array([sample_tracks(tracks, visible, 1, 1, rng, temperature=10.0)[0] for _ in range(6000)])
    freq = np.bincount(firsts, minlength=3) / len(firsts)
    expected = np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum()
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_sample_tracks_without_replacement_and_filter():
    rng = np.random.default_rng(1)
    tracks = rng.normal(size=(50, 10, 2)) * 5
    visible = np.ones((50, 10), bool)
    visible[:10, 3:] = False  # these fail the filter with L_c = 2 (1 of 8 future frames visible)
    idx = sample_tracks(tracks, visible, 20, 2, rng)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert (idx >= 10).all()
    # fewer candidates than N: all of the N most visible, no duplicates
    idx = sample_tracks(tracks[:5], visible[:5], 20, 2, rng)
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="num_cond_frames"):
        sample_tracks(tracks, visible, 5, 10, rng)


def test_eval_filter_top_k_mean_of_summed_distance():
    # track movement (summed distance) of track i is 10 * i over 2 steps
    tracks = np.zeros((200, 3, 2))
    tracks[:, 1, 0] = 5 * np.arange(200)
    tracks[:, 2, 0] = 10 * np.arange(200)
    np.testing.assert_allclose(summed_distance(tracks)[:3], [0, 10, 20])
    # top-100 of the first 1000 (here all 200): tracks 100..199 -> mean 10 * 149.5
    assert clip_movement(tracks) == pytest.approx(1495.0)
    # only the first 150 tracks considered: top-100 are 50..149 -> mean 995
    assert clip_movement(tracks, top_k=100, num_tracks=150) == pytest.approx(995.0)
    small = tracks / 100  # score 14.95
    kept = eval_filter({"moving": tracks, "still": small, "edge": tracks * (50 / 1495.0)}, min_movement=50.0)
    assert kept == ["moving"]  # 'edge' scores exactly 50: not strictly above
    assert eval_filter([("still", small)], min_movement=10.0) == ["still"]
