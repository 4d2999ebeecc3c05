"""Point trackers: LK accuracy on known motion, online == offline, input checks, adapters."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from arfm.tracking import BootsTAPIRTracker, CoTracker3Tracker, LKConfig, LucasKanadeTracker, build_tracker, make_queries
from arfm.tracking.base import check_track_inputs
from arfm.tracking.synthetic import SyntheticMotion, make_synthetic_clip, measure_tracker


def test_lk_accuracy_on_translating_rotating_texture():
    result = measure_tracker(LucasKanadeTracker(), SyntheticMotion(), num_points=200)
    # measured: ~0.29 px mean error, 99.7 % of in-frame point-frames kept (see docs/data-format.md)
    assert result["mean_error_px"] < 0.5
    assert result["visible_fraction"] > 0.95
    assert result["false_visible"] <= 10  # edge cases only: points within a pixel of the border


def test_lk_integer_translation_is_exact_and_leaving_points_turn_invisible():
    motion = SyntheticMotion(num_frames=12, shift_per_frame=(4.0, 0.0), degrees_per_frame=0.0)
    queries = np.array([[0, 100.5, 100.5], [0, 250.0, 60.0], [6, 128.0, 128.0]], np.float32)
    video, truth, inside = make_synthetic_clip(motion, queries)
    tracks, visible = LucasKanadeTracker().track(video, queries)
    assert tracks.shape == (3, 12, 2) and visible.shape == (3, 12)
    np.testing.assert_allclose(tracks[0], truth[0], atol=0.05)
    # point 1 exits at the right edge after ~1-2 frames; it is frozen and invisible from then on
    assert not inside[1, -1] and not visible[1, -1]
    assert (np.diff(visible[1].astype(int)) <= 0).all()
    # point 2 is queried on frame 6 and tracked backwards too
    np.testing.assert_allclose(tracks[2], truth[2], atol=0.05)
    assert visible[2].all()


def test_lk_online_matches_offline():
    motion = SyntheticMotion(num_frames=10)
    queries = make_queries(64, 10, 256, num_query_frames=1, seed=3)
    video, _, _ = make_synthetic_clip(motion, queries)
    offline, vis_offline = LucasKanadeTracker().track(video, queries)
    online = LucasKanadeTracker()
    online.init(video[0], queries[:, 1:])
    for t in range(1, 10):
        points, vis = online.step(video[t])
        np.testing.assert_allclose(points, offline[:, t], atol=1e-5)
        np.testing.assert_array_equal(vis, vis_offline[:, t])
    with pytest.raises(RuntimeError, match="before init"):
        LucasKanadeTracker().step(video[0])


def test_track_input_errors():
    video = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        check_track_inputs(video[..., 0], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="uint8"):
        check_track_inputs(video.astype(np.float32), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="frame indices"):
        check_track_inputs(video, np.array([[4, 1, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        check_track_inputs(video, np.array([[0, np.nan, 1]]))
    with pytest.raises(ValueError, match="fb_threshold"):
        LKConfig(fb_threshold=0)


def test_make_queries_layout():
    q = make_queries(1000, 40, 256, num_query_frames=4, layout="grid", seed=0)
    assert q.shape == (1000, 3)
    assert sorted(set(q[:, 0].tolist())) == [0, 10, 20, 30]
    assert np.bincount(q[:, 0].astype(int))[[0, 10, 20, 30]].tolist() == [250] * 4
    assert (q[:, 1:] > 0).all() and (q[:, 1:] < 256).all()
    assert len(np.unique(q[q[:, 0] == 0, 1:], axis=0)) == 250  # grid cells are distinct
    np.testing.assert_array_equal(q, make_queries(1000, 40, 256, num_query_frames=4, seed=0))
    assert make_queries(5, 2, 256, num_query_frames=8)[:, 0].max() == 1  # capped at T frames


def test_learned_trackers_need_package_and_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cotracker", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "cotracker.predictor", None)
    with pytest.raises(ImportError, match="cotracker.*not installed.*co-tracker"):
        CoTracker3Tracker(tmp_path / "scaled_offline.pth")
    monkeypatch.setitem(sys.modules, "tapnet", None)
    monkeypatch.setitem(sys.modules, "tapnet.torch.tapir_model", None)
    with pytest.raises(ImportError, match="tapnet"):
        BootsTAPIRTracker(tmp_path / "bootstapir_checkpoint_v2.pt")
    with pytest.raises(ValueError, match="checkpoint"):
        build_tracker("bootstapir")
    with pytest.raises(ValueError, match="unknown tracker"):
        build_tracker("raft")


def _fake_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def test_cotracker_adapter_conventions(tmp_path, monkeypatch):
    """The adapter's glue, with a stand-in model that moves every point by (+2, +1) per frame."""

    class FakePredictor(torch.nn.Module):
        def __init__(self, checkpoint, offline=True, window_len=60):
            super().__init__()
            self.checkpoint = checkpoint

        def forward(self, video, queries, backward_tracking=False):
            b, t = video.shape[:2]
            steps = torch.arange(t, dtype=torch.float32)[None, :, None, None] - queries[:, None, :, :1]
            tracks = queries[:, None, :, 1:] + steps * torch.tensor([2.0, 1.0])
            return tracks, torch.ones(b, t, queries.shape[1], dtype=torch.bool)

    monkeypatch.setitem(sys.modules, "cotracker", _fake_module("cotracker"))
    monkeypatch.setitem(sys.modules, "cotracker.predictor", _fake_module("cotracker.predictor", CoTrackerPredictor=FakePredictor))
    with pytest.raises(FileNotFoundError, match="scaled_offline.pth"):
        CoTracker3Tracker(tmp_path / "scaled_offline.pth")
    ckpt = tmp_path / "scaled_offline.pth"
    ckpt.write_bytes(b"x")
    tracker = CoTracker3Tracker(ckpt, device="cpu")
    tracks, visible = tracker.track(np.zeros((5, 16, 16, 3), np.uint8), np.array([[1, 4.5, 6.5]]))
    assert tracks.shape == (1, 5, 2) and visible.dtype == bool and visible.all()
    np.testing.assert_allclose(tracks[0, 1], [4.5, 6.5])  # 0.5 px shift in and out cancels
    np.testing.assert_allclose(tracks[0, 3], [8.5, 8.5])


def test_bootstapir_adapter_conventions(tmp_path, monkeypatch):
    class FakeTAPIR(torch.nn.Module):
        def __init__(self, pyramid_level=1, extra_convs=True):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, video, query_points, query_chunk_size=64):
            assert video.min() >= -1 and video.max() <= 1 and video.shape[-1] == 3
            n, t = query_points.shape[1], video.shape[1]
            yx = query_points[0, :, 1:]
            xy = torch.stack([yx[:, 1], yx[:, 0]], -1)[None, :, None].expand(1, n, t, 2)
            occ = torch.full((1, n, t), -10.0)
            occ[..., -1] = 10.0  # occluded on the last frame
            return {"tracks": xy, "occlusion": occ, "expected_dist": torch.full((1, n, t), -10.0)}

    tapnet = _fake_module("tapnet")
    monkeypatch.setitem(sys.modules, "tapnet", tapnet)
    monkeypatch.setitem(sys.modules, "tapnet.torch", _fake_module("tapnet.torch"))
    monkeypatch.setitem(sys.modules, "tapnet.torch.tapir_model", _fake_module("tapnet.torch.tapir_model", TAPIR=FakeTAPIR))
    ckpt = tmp_path / "bootstapir_checkpoint_v2.pt"
    torch.save(FakeTAPIR().state_dict(), ckpt)
    tracker = BootsTAPIRTracker(ckpt, device="cpu")
    tracks, visible = tracker.track(np.full((4, 16, 16, 3), 255, np.uint8), np.array([[0, 3.0, 7.0]]))
    np.testing.assert_allclose(tracks[0, 2], [3.0, 7.0])  # (x, y) order restored from TAPIR's (t, y, x)
    assert visible[0].tolist() == [True, True, True, False]
