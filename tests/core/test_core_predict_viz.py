"""`arfm predict` end to end on a real clip, and the track drawing."""

import numpy as np
import pytest
import torch

from arfm.checkpoint import save_checkpoint
from arfm.cli import main as arfm_main
from arfm.config import tiny_model_config
from arfm.model import TrackShiftFlowPredictor
from arfm.predict import grid_queries
from arfm.viz import draw_tracks, step_colour


def test_step_colours_go_from_blue_to_red():
    r0, g0, b0 = step_colour(0, 10)
    r1, g1, b1 = step_colour(9, 10)
    assert b0 > r0 and r1 > b1


def test_draw_tracks_paints_the_path_only():
    frame = np.zeros((32, 32, 3), np.uint8)
    tracks = np.array([[[4.0, 4.0], [28.0, 4.0]]])  # one horizontal segment along y = 4
    image = draw_tracks(frame, tracks, scale=1, dim_background=0.0)
    assert image[4, 16].sum() > 0  # on the segment
    assert image[20, 16].sum() == 0  # far from it
    hidden = draw_tracks(frame, tracks, visible=np.array([[True, False]]), scale=1, dim_background=0.0)
    assert hidden[4, 16].sum() == 0  # an invisible end point hides the segment


def test_grid_queries_cover_the_frame():
    q = grid_queries(100)
    assert q.shape == (100, 2)
    assert q.min() > 0 and q.max() < 256
    assert len(np.unique(q[:, 0])) == 10


def test_predict_cli_writes_picture_gif_and_numbers(tmp_path, shared_data):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", TrackShiftFlowPredictor(tiny_model_config(horizon=5)))
    video = shared_data / "videos" / "robot" / "bridge_data_v1_berkeley_toykitchen1_put_banana_on_plate.mp4"
    out = tmp_path / "pred" / "banana"
    arfm_main(["predict", "--checkpoint", str(tmp_path / "ckpt"), "--video", str(video), "--out", str(out), "--num-points", "16", "--cond-frames", "2", "--num-samples", "2"])
    data = np.load(out.with_suffix(".npz"))
    assert data["tracks"].shape == (2, 16, 5, 2)
    assert data["frames"].shape == (2, 256, 256, 3)
    assert out.with_suffix(".png").stat().st_size > 0
    assert out.with_suffix(".gif").stat().st_size > 0


def test_cli_rejects_unknown_command(capsys):
    with pytest.raises(SystemExit):
        arfm_main(["frobnicate"])
    assert "unknown command" in capsys.readouterr().err
