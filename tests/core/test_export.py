"""Exports (arfm.export): npz + CSV + JSON in model and source pixels, and the CLIs' MP4 output."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from arfm.checkpoint import save_checkpoint
from arfm.cli import main as arfm_main
from arfm.config import tiny_model_config
from arfm.coords import FrameTransform
from arfm.data.video import read_video, write_mp4
from arfm.export import on_source, prediction_visible, read_predictions, write_predictions
from arfm.model import TrackShiftFlowPredictor


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_exports_round_trip_in_model_and_source_pixels(tmp_path):
    transform = FrameTransform(width=640, height=480, mode="letterbox")
    rng = np.random.default_rng(0)
    tracks = rng.uniform(-10, 266, (2, 3, 4, 2)).astype(np.float32)  # some steps off the frame
    visible = prediction_visible(tracks, transform, start_visible=np.array([True, False, True]))
    paths = write_predictions(
        tmp_path / "out" / "clip.v1", tracks, visible, transform, fps=15.0, checkpoint="runs/x",
        arrays={"frames": np.zeros((1, 4, 4, 3), np.uint8)}, metadata={"caption": "open"},
    )
    assert sorted(p.name for p in paths.values()) == ["clip.v1.csv", "clip.v1.json", "clip.v1.npz"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporaries left

    arrays, info = read_predictions(tmp_path / "out" / "clip.v1")
    np.testing.assert_array_equal(arrays["tracks"], tracks)
    np.testing.assert_array_equal(arrays["tracks_visible"], visible)
    assert arrays["frames"].shape == (1, 4, 4, 3)
    # letterbox 640x480: model = source * 0.4 + (0, 32), so source = (model - (0, 32)) / 0.4
    expected_source = (tracks.astype(np.float64) - [0.0, 32.0]) / 0.4
    np.testing.assert_allclose(arrays["tracks_source"], expected_source, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(transform.points_to_model(arrays["tracks_source"]), tracks, atol=1e-4)

    header, rows = read_csv(paths["csv"])
    assert header == ["sample", "point", "step", "x_model", "y_model", "x_src", "y_src", "visible"]
    assert len(rows) == 2 * 3 * 4
    table = np.array(rows, dtype=np.float64)
    s, p, h = table[:, 0].astype(int), table[:, 1].astype(int), table[:, 2].astype(int) - 1  # steps count from 1
    assert h.min() == 0 and h.max() == 3
    # the CSV's 9 significant digits read back as the very same float32 numbers
    np.testing.assert_array_equal(table[:, 3:5].astype(np.float32), tracks[s, p, h])
    np.testing.assert_array_equal(table[:, 5:7].astype(np.float32), arrays["tracks_source"][s, p, h])
    np.testing.assert_array_equal(table[:, 7].astype(bool), visible[s, p, h])

    assert info["horizon"] == 4 and info["samples"] == 2 and info["points"] == 3 and info["fps"] == 15.0
    assert info["checkpoint"] == "runs/x" and info["caption"] == "open"
    assert FrameTransform.from_dict(info["transform"]) == transform
    assert info["csv_columns"] == header


def test_visibility_is_tracked_and_on_source_content():
    transform = FrameTransform(width=640, height=480, mode="letterbox")  # content rows [32, 224)
    tracks = np.array([[[[10.0, 31.9], [10.0, 32.0], [255.9, 223.9], [256.0, 100.0], [np.nan, 50.0]]]])
    np.testing.assert_array_equal(on_source(tracks, transform), [[[False, True, True, False, False]]])
    hidden = prediction_visible(tracks, transform, start_visible=np.array([[False]]))
    assert not hidden.any()


def test_bad_exports_are_refused(tmp_path):
    transform = FrameTransform(width=64, height=64)
    tracks = np.zeros((1, 2, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"\(S, N, H, 2\)"):
        write_predictions(tmp_path / "a", tracks[0], np.ones((1, 2, 3), bool), transform, 10.0, "c")
    with pytest.raises(ValueError, match=r"visible must be a bool array of shape \(1, 2, 3\)"):
        write_predictions(tmp_path / "a", tracks, np.ones((1, 2), bool), transform, 10.0, "c")
    with pytest.raises(ValueError, match="overwrite"):
        write_predictions(tmp_path / "a", tracks, np.ones((1, 2, 3), bool), transform, 10.0, "c", arrays={"tracks_source": tracks})
    (tmp_path / "b.npz").write_bytes(b"")
    (tmp_path / "b.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="b.json is not an ARFM predictions file"):
        read_predictions(tmp_path / "b")
    (tmp_path / "b.json").write_text(json.dumps({"format": "arfm-predictions/1"}))
    with pytest.raises(ValueError, match="b.npz is not a readable npz"):
        read_predictions(tmp_path / "b")


def moving_texture_video(path, frames: int = 8, width: int = 96, height: int = 64):
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height, width + 2 * frames, 3), dtype=np.uint8)
    return write_mp4(path, np.stack([np.ascontiguousarray(texture[:, 2 * t : 2 * t + width]) for t in range(frames)]), fps=10.0)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", TrackShiftFlowPredictor(tiny_model_config(horizon=3)))
    return tmp_path / "ckpt"


def test_predict_writes_mp4_and_exports_in_source_pixels(tmp_path, checkpoint):
    video = moving_texture_video(tmp_path / "clip.mp4")
    out = tmp_path / "pred" / "clip.mp4"
    arfm_main(["predict", "--checkpoint", str(checkpoint), "--video", str(video), "--out", str(out), "--num-points", "4", "--num-samples", "2"])
    animation = read_video(out)
    assert animation.frames.shape[0] == 4 and not (tmp_path / "pred" / "clip.gif").exists()  # reset frame + 3 steps
    arrays, info = read_predictions(tmp_path / "pred" / "clip")
    assert arrays["tracks"].shape == (2, 4, 3, 2) and arrays["frames"].shape == (1, 256, 256, 3)
    transform = FrameTransform(width=96, height=64, mode="center_crop")
    assert FrameTransform.from_dict(info["transform"]) == transform
    np.testing.assert_allclose(arrays["tracks_source"], transform.points_to_source(arrays["tracks"]), atol=1e-4)
    np.testing.assert_array_equal(arrays["tracks_visible"], on_source(arrays["tracks"], transform))
    assert info["fps"] == pytest.approx(10.0) and info["horizon"] == 3 and info["checkpoint"] == str(checkpoint)
    _, rows = read_csv(tmp_path / "pred" / "clip.csv")
    assert len(rows) == 2 * 4 * 3


def test_stream_writes_mp4_and_exports_in_source_pixels(tmp_path, checkpoint):
    video = moving_texture_video(tmp_path / "clip.mp4", width=64, height=96)
    out = tmp_path / "live" / "clip.mp4"
    arfm_main(["stream", "--checkpoint", str(checkpoint), "--video", str(video), "--out", str(out), "--num-points", "4",
               "--horizon", "2", "--max-frames", "3"])
    assert read_video(out).frames.shape[0] == 3
    arrays, info = read_predictions(tmp_path / "live" / "clip")
    transform = FrameTransform(width=64, height=96, mode="center_crop")  # rows [16, 80) of the source
    assert arrays["horizons"].shape == (3, 4, 2, 2) and info["frames"] == 3 and info["csv_columns"][0] == "frame"
    np.testing.assert_allclose(arrays["horizons_source"], transform.points_to_source(arrays["horizons"]), atol=1e-4)
    np.testing.assert_allclose(arrays["tracked_source"], transform.points_to_source(arrays["tracked"]), atol=1e-4)
    expected = on_source(arrays["horizons"], transform) & arrays["tracked_visible"][..., None]
    np.testing.assert_array_equal(arrays["horizons_visible"], expected)
    header, rows = read_csv(tmp_path / "live" / "clip.csv")
    assert header[0] == "frame" and len(rows) == 3 * 4 * 2
