"""`arfm stream` and its pieces: recorded tracker positions, outputs, query sources, bad input."""

import numpy as np
import pytest
import torch

from arfm.checkpoint import save_checkpoint
from arfm.cli import main as arfm_main
from arfm.config import tiny_model_config
from arfm.model import TrackShiftFlowPredictor
from arfm.online import GivenPositionsTracker, HorizonPredictor, horizon_consistency
from arfm.query.model import QueryInfoPredictor, tiny_query_config
from arfm.stream import stream_clip
from tests.core.factories import perturbed_model

CLIP = ("videos", "robot", "bridge_data_v1_berkeley_toykitchen1_put_banana_on_plate.mp4")


class DriftingTracker:
    """Reports every point one pixel further right on each frame."""

    def init(self, frame, points):
        self.points = np.asarray(points, np.float32).copy()

    def step(self, frame):
        self.points[:, 0] += 1.0
        return self.points.copy(), np.ones(len(self.points), bool)


def test_horizon_consistency_matches_a_hand_computed_case():
    previous = np.zeros((2, 3, 2), np.float32)
    current = np.zeros((2, 3, 2), np.float32)
    current[:, 0] = [3.0, 4.0]  # 5 px from previous step 1, on both points
    current[:, 2] = 100.0  # the new final step is not shared and must not count
    assert horizon_consistency(previous, current) == pytest.approx(5.0 / 2)
    with pytest.raises(ValueError, match="horizons"):
        horizon_consistency(previous, current[:, :2])


def test_stream_clip_records_the_tracker_and_restores_it():
    frames = np.random.default_rng(0).integers(0, 255, (4, 256, 256, 3), dtype=np.uint8)
    tracker = DriftingTracker()
    predictor = HorizonPredictor(perturbed_model(cache_window=32), horizon=3, tracker=tracker, seed=1)
    queries = np.array([[50.0, 60.0], [150.0, 160.0]], np.float32)
    result = stream_clip(predictor, frames, queries, progress=False)
    assert result.horizons.shape == (4, 2, 3, 2) and result.latency_ms.shape == (4,)
    np.testing.assert_allclose(result.tracked[:, :, 0], queries[None, :, 0] + np.arange(4)[:, None])
    assert result.tracked_visible.all() and predictor.tracker is tracker
    # The same stream, driven by hand, gives the same horizons.
    again = HorizonPredictor(perturbed_model(cache_window=32), horizon=3, tracker=GivenPositionsTracker(), seed=1)
    manual = [again.reset(frames[0], queries)]
    for t in range(1, 4):
        again.tracker.set(queries + np.array([t, 0.0], np.float32))
        manual.append(again.update(frames[t]))
    np.testing.assert_allclose(result.horizons, np.stack(manual), atol=1e-5)


def test_stream_cli_writes_gif_and_numbers(tmp_path, shared_data):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", TrackShiftFlowPredictor(tiny_model_config()))
    out = tmp_path / "stream" / "banana"
    args = ["stream", "--checkpoint", str(tmp_path / "ckpt"), "--video", str(shared_data.joinpath(*CLIP)), "--out", str(out)]
    arfm_main([*args, "--horizon", "4", "--max-frames", "5", "--start", "2", "--num-points", "9", "--schedule", "parallel"])
    data = np.load(out.with_suffix(".npz"))
    assert data["horizons"].shape == (5, 9, 4, 2) and data["tracked"].shape == (5, 9, 2)
    assert data["latency_ms"].shape == (5,) and str(data["schedule"]) == "parallel"
    assert np.isfinite(data["horizons"]).all()
    assert out.with_suffix(".gif").stat().st_size > 0


def test_stream_cli_draws_queries_from_a_query_checkpoint(tmp_path, shared_data):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", TrackShiftFlowPredictor(tiny_model_config()))
    save_checkpoint(tmp_path / "query", QueryInfoPredictor(tiny_query_config()))
    out = tmp_path / "q"
    args = ["stream", "--checkpoint", str(tmp_path / "ckpt"), "--video", str(shared_data.joinpath(*CLIP)), "--out", str(out)]
    arfm_main([*args, "--horizon", "3", "--max-frames", "2", "--num-points", "12", "--query-checkpoint", str(tmp_path / "query")])
    queries = np.load(out.with_suffix(".npz"))["queries"]
    assert queries.shape == (12, 2) and len(np.unique(queries, axis=0)) == 12
    assert (queries >= 0).all() and (queries < 256).all()


def test_stream_cli_rejects_bad_queries_and_start(tmp_path, shared_data):
    save_checkpoint(tmp_path / "ckpt", TrackShiftFlowPredictor(tiny_model_config()))
    args = ["stream", "--checkpoint", str(tmp_path / "ckpt"), "--video", str(shared_data.joinpath(*CLIP)), "--out", str(tmp_path / "x")]
    np.save(tmp_path / "bad.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="bad.npy"):
        arfm_main([*args, "--queries", str(tmp_path / "bad.npy")])
    with pytest.raises(ValueError, match="--start 100000"):
        arfm_main([*args, "--start", "100000"])
    assert not (tmp_path / "x.gif").exists()
