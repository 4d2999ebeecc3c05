"""The simulator -> labelled clips exporter and the committed demo checkpoint (issue 13)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import sim_data  # noqa: E402


def test_to_model_frame_moves_tracks_with_pixels():
    # A 200 x 200 frame with one bright pixel; its centre must land where the resized bright spot is.
    frames = np.zeros((2, 200, 200, 3), dtype=np.uint8)
    frames[:, 50, 150] = 255  # row 50, column 150 -> centre (150.5, 50.5)
    tracks = np.array([[[150.5, 50.5], [150.5, 50.5]], [[-10.0, 3.0], [5.0, 5.0]]], dtype=np.float32)
    visible = np.ones((2, 2), dtype=bool)
    out_frames, out_tracks, out_visible = sim_data.to_model_frame(frames, tracks, visible)
    assert out_frames.shape == (2, 256, 256, 3)
    np.testing.assert_allclose(out_tracks[0, 0], [150.5 * 1.28, 50.5 * 1.28], atol=1e-4)
    y, x = np.unravel_index(out_frames[0, ..., 0].astype(float).argmax(), (256, 256))
    assert abs(x + 0.5 - out_tracks[0, 0, 0]) <= 1.0 and abs(y + 0.5 - out_tracks[0, 0, 1]) <= 1.0
    # A point left of the frame is invisible there, and visible once it comes in.
    assert out_visible.tolist() == [[True, True], [False, True]]
    with pytest.raises(ValueError, match="tracks"):
        sim_data.to_model_frame(frames, tracks[:, :1], visible)


def test_export_round_trip_equals_simulator_tracks(tmp_path):
    pytest.importorskip("pybullet")
    from arfm.data.clip_store import write_manifest
    from arfm.data.dataset import open_labelled_dataset

    segments = list(sim_data.simulate(seed=7, episodes=1, tasks_per_episode=1, num_points=24))
    assert len(segments) == 1
    seg = segments[0]
    sim_data.write_segment(tmp_path, seg, "val", seed=7)
    manifest = write_manifest(tmp_path)
    assert [(c["clip_id"], c["split"]) for c in manifest["clips"]] == [(seg.clip_id, "val")]
    clip = open_labelled_dataset(tmp_path, split="val").load_clip(0)
    assert clip.caption == seg.caption and clip.fps == sim_data.SIM_FPS
    np.testing.assert_array_equal(np.asarray(clip.frames), seg.frames)
    np.testing.assert_array_equal(clip.visible, seg.visible)
    # float16 storage: within 1/8 px on a 256 px frame
    np.testing.assert_allclose(clip.tracks, seg.tracks, atol=0.13)
    assert seg.visible[:, 0].all() and np.abs(np.diff(seg.tracks, axis=1)).max() > 0.5  # the arm moves
    meta = json.loads((tmp_path / "clips" / seg.clip_id / "meta.json").read_text())
    assert meta["tracker"] == "ground-truth" and meta["sim_seed"] == 7
    with pytest.raises(ValueError, match="split"):
        sim_data.write_segment(tmp_path, seg, "test", seed=7)


def test_build_rejects_shared_seeds(tmp_path):
    with pytest.raises(ValueError, match="val_seed"):
        sim_data.build_sim_dataset(tmp_path, 1, 1, train_seed=3, val_seed=3)


DEMO_CKPT = REPO / "checkpoints" / "tiny-sim"


def test_committed_demo_checkpoint_loads_and_samples():
    from arfm.checkpoint import load_model

    assert (DEMO_CKPT / "model.safetensors").stat().st_size < 10 * 2**20  # committed: keep it small
    model = load_model(DEMO_CKPT)
    assert model.config.objective == "flow" and model.config.backbone.kind == "tiny"
    frames, observed = torch.rand(1, 1, 3, 256, 256), torch.rand(1, 5, 1, 2) * 256
    out = model.sample(frames, observed, ["open the drawer"], horizon=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 5, 3, 2) and torch.isfinite(out).all()


@pytest.mark.slow
def test_committed_checkpoint_beats_no_movement_on_an_unseen_episode(tmp_path):
    """One window of the demo's unseen scene seed: best of 5 samples vs standing still, §4.2 δ_avg."""
    pytest.importorskip("pybullet")
    import demo

    from arfm.checkpoint import load_model
    from arfm.data.clip_store import write_manifest
    from arfm.data.dataset import eval_windows, open_labelled_dataset

    seg = next(s for s in sim_data.simulate(seed=9000, episodes=4, tasks_per_episode=3) if len(s.frames) > 50)
    sim_data.write_segment(tmp_path, seg, "val", seed=9000)
    write_manifest(tmp_path)
    (_, window), = eval_windows(open_labelled_dataset(tmp_path), horizon=50, min_movement=0.0)
    samples = demo.predict_window(load_model(DEMO_CKPT), window, 5, 50, torch.Generator().manual_seed(0))
    truth, visible = window.tracks.numpy(), window.visible.numpy()
    _, arfm_delta, _ = demo.score(samples, truth, visible)
    _, still_delta, _ = demo.score(np.repeat(truth[None, :, :1], 51, axis=2), truth, visible)
    assert arfm_delta > still_delta
