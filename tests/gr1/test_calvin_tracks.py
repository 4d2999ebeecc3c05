"""GR-1 trains on tracks from `arfm label --format calvin` (one source of truth, issue 15).

A tiny CALVIN-format split (written with the simulator's CALVIN writer) shows a textured square
moving 2 camera pixels per frame to the right over a still background. It is pseudo-labelled
with LK (256-px model coordinates), converted to GR-1 sidecars (200-px camera coordinates), and
one GR-1 step trains on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arfm.labelling.pipeline import LabelConfig, label_dataset
from integrations.gr1.calvin_tracks import labelled_to_sidecars, main
from integrations.gr1.data import CalvinWindowDataset
from integrations.gr1.sim.calvin_format import CalvinWriter
from integrations.gr1.sim.tracks import load_tracks

SIZE, FRAMES, SPEED = 200, 24, 2
SQUARE = (40, 70, 60)  # x0, y0, side at frame 0 (camera pixels)


def frame_image(t: int, rng_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    background = np.kron(rng.integers(40, 200, (25, 25, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 8-px cells
    texture = np.kron(rng.integers(0, 255, (15, 15, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    x0, y0, side = SQUARE
    img = background.copy()
    img[y0:y0 + side, x0 + SPEED * t: x0 + SPEED * t + side] = texture
    return img


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("calvin") / "training"
    writer = CalvinWriter(root, compress=False)
    for t in range(FRAMES):
        writer.write_frame({"actions": np.zeros(7), "rel_actions": np.r_[np.full(6, 0.1 * (t % 3)), 1.0],
                            "robot_obs": np.r_[np.zeros(14), 1.0], "scene_obs": np.zeros(24), "rgb_static": frame_image(t),
                            "rgb_gripper": np.full((84, 84, 3), 100, np.uint8), "depth_static": np.ones((SIZE, SIZE), np.float32),
                            "depth_gripper": np.ones((84, 84), np.float32)})
    writer.annotate(0, 11, "push_red_block_right", "go push the red block right")
    writer.annotate(12, FRAMES - 1, "push_red_block_left", "go push the red block left")
    writer.close()
    return root


@pytest.fixture(scope="module")
def labelled(split: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labelled")
    label_dataset(LabelConfig(input=split, output=out, format="calvin", num_points=200, num_query_frames=1), progress=False)
    return out


def test_sidecars_are_in_camera_pixels_and_follow_the_motion(split: Path, labelled: Path) -> None:
    summary = labelled_to_sidecars(labelled, split)
    assert (summary.written, summary.camera_size) == (2, SIZE)
    side = load_tracks(split / "tracks" / "ep_0000000_0000011.npz")
    tracks, visible = side["tracks"], side["visible"]
    assert tracks.shape[1:] == (12, 2) and tuple(side["frame_size"]) == (SIZE, SIZE)
    x0, y0, width = SQUARE
    start = tracks[:, 0]
    inside = (start[:, 0] > x0 + 6) & (start[:, 0] < x0 + width - 6) & (start[:, 1] > y0 + 6) & (start[:, 1] < y0 + width - 6)
    still = (start[:, 0] > x0 + width + 30) & visible.all(1)
    moving = inside & visible.all(1)
    assert moving.sum() >= 5 and still.sum() >= 5
    expected = np.stack([SPEED * np.arange(12.0), np.zeros(12)], -1)  # camera px: 2 px per frame to the right
    np.testing.assert_allclose(np.median(tracks[moving] - start[moving, None], axis=0), expected, atol=0.5)
    np.testing.assert_allclose(np.median(tracks[still] - start[still, None], axis=0), 0.0, atol=0.3)
    again = main([str(labelled), str(split)])  # the CLI keeps what is there
    assert (again.written, again.present) == (0, 2)


def test_wrong_split_and_missing_labels_are_named(split: Path, labelled: Path, tmp_path: Path) -> None:
    other = tmp_path / "validation"
    other.mkdir()
    with pytest.raises(ValueError, match="calvin_validation_"):
        labelled_to_sidecars(labelled, other)
    with pytest.raises(FileNotFoundError, match="arfm label --format calvin"):
        labelled_to_sidecars(tmp_path / "nothing", split)


def test_gr1_trains_one_step_on_the_converted_tracks(split: Path, labelled: Path, tmp_path: Path) -> None:
    from integrations.gr1.train import TrainArgs
    from integrations.gr1.train import main as train

    labelled_to_sidecars(labelled, split)
    ds = CalvinWindowDataset(split, max_points=16)
    item = ds[0]
    assert item["tracks"].shape == (10, 16, 16, 2) and float(item["tracks"].max()) < SIZE
    ckpt = train(TrainArgs(data=str(split), out=str(tmp_path / "run"), steps=1, batch_size=2, warmup_steps=0, max_points=16,
                           track_dropout=0.0, log_every=1, save_every=100))
    assert (ckpt / "model.safetensors").is_file()
