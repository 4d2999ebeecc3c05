"""GR-1 data loader on files written in CALVIN's real on-disk format, with track sidecars (paper §4.4)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gr1_testdata import write_fake_calvin  # noqa: E402

from integrations.gr1.data import CalvinWindowDataset, collate_gr1, load_language_annotations  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fake_calvin(tmp_path_factory.mktemp("calvin") / "training")


def frame_ids(item: dict) -> list[int]:
    return (item["robot_obs"][:, 0] * 100).round().long().tolist()


def test_windows_cover_every_start_inside_each_annotation(root: Path) -> None:
    ds = CalvinWindowDataset(root)
    # annotation (0, 14): starts 0..5; annotation (20, 41): starts 20..32
    assert len(ds) == 6 + 13
    assert [t for _, t in ds.items] == list(range(0, 6)) + list(range(20, 33))
    item = ds[0]
    assert frame_ids(item) == list(range(10))
    assert item["instruction"] == "open the drawer" and item["task"] == "open_drawer"
    assert item["rgb_static"].shape == (10, 3, 32, 32) and item["rgb_static"].dtype == torch.uint8
    assert item["rgb_static"][:, 0, 0, 0].tolist() == list(range(10))  # channel-first, pixel (0, 0) holds the id
    assert item["rgb_gripper"].shape == (10, 3, 16, 16)
    torch.testing.assert_close(item["actions"][:, 0], torch.arange(10) / 100.0)
    assert item["valid"].all()


def test_video_target_is_three_frames_ahead_inside_the_episode(root: Path) -> None:
    ds = CalvinWindowDataset(root)
    item = ds[len(ds) - 1]  # frames 32..41, episode (20, 41)
    assert frame_ids(item) == list(range(32, 42))
    assert item["future_static"][:7, 0, 0, 0].tolist() == list(range(35, 42))
    assert item["future_valid"].tolist() == [True] * 7 + [False] * 3


def test_future_tracks_start_at_the_frame_and_hold_the_last_position(root: Path) -> None:
    ds = CalvinWindowDataset(root, track_len=16)
    item = ds[len(ds) - 1]
    tracks = item["tracks"]  # (T, N, L, 2)
    assert tracks.shape == (10, 5, 16, 2)
    # point i at frame f of the episode starting at 20: x = 10 + 20 i + (f - 20), y = 120
    step0 = tracks[0, 3, :, 0].tolist()  # frame 32: local 12..21 then held at 21
    assert step0 == [70.0 + k for k in range(12, 22)] + [70.0 + 21] * 6
    assert (tracks[..., 1] == 120.0).all()
    last = tracks[9, 0, :, 0]  # frame 41 is the episode's last: every position held
    assert last.tolist() == [31.0] * 16
    assert ds.future_tracks(0).shape == (5, 16, 2)


def test_short_annotation_pads_at_the_end(root: Path) -> None:
    ds = CalvinWindowDataset(root, window=20)
    item = ds[0]  # annotation (0, 14) shorter than the window: one padded window
    assert item["valid"].tolist() == [True] * 15 + [False] * 5
    assert frame_ids(item) == list(range(15)) + [14] * 5


def test_max_points_and_collate_pad_track_counts(root: Path) -> None:
    a = CalvinWindowDataset(root, max_points=3)[0]
    b = CalvinWindowDataset(root)[1]
    assert a["tracks"].shape[1] == 3
    assert a["tracks"][0, :, 0, 0].tolist() == [10.0, 50.0, 90.0]  # evenly spaced: points 0, 2, 4
    batch = collate_gr1([a, b])
    assert batch["tracks"].shape == (2, 10, 5, 16, 2)
    assert batch["track_mask"][0, 0].tolist() == [True] * 3 + [False] * 2 and batch["track_mask"][1].all()
    assert batch["instruction"] == ["open the drawer"] * 2 and batch["rgb_static"].shape == (2, 10, 3, 32, 32)
    with pytest.raises(ValueError, match="empty"):
        collate_gr1([])


def test_without_tracks_needs_no_sidecars(tmp_path: Path) -> None:
    root = write_fake_calvin(tmp_path / "d", with_tracks=False)
    with pytest.raises(FileNotFoundError, match="tracks"):
        CalvinWindowDataset(root)
    item = CalvinWindowDataset(root, with_tracks=False)[0]
    assert "tracks" not in item and "track_mask" not in collate_gr1([item])


def test_language_annotations_read_back(root: Path) -> None:
    assert load_language_annotations(root) == [(0, 14, "open_drawer", "open the drawer"), (20, 41, "lift_red_block", "lift the red block")]


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CalvinWindowDataset(tmp_path / "nowhere")
    root = write_fake_calvin(tmp_path / "d")
    (root / "episode_0000003.npz").write_bytes(b"not a zip")
    ds = CalvinWindowDataset(root)
    with pytest.raises(ValueError, match="episode_0000003.npz"):
        ds[0]
    (root / "episode_0000004.npz").unlink()
    with pytest.raises(FileNotFoundError, match="episode_0000004.npz"):
        ds[4]  # frames 4..13
    np.savez(root / "tracks" / "ep_0000000_0000019.npz", tracks=np.zeros((2, 20, 2), np.float32), frame_size=np.array([84, 84]))
    with pytest.raises(ValueError, match="frames of"):
        CalvinWindowDataset(root).future_tracks(0)
    np.savez(root / "tracks" / "ep_0000000_0000019.npz", tracks=np.full((2, 20, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        CalvinWindowDataset(root).future_tracks(0)
    (root / "lang_annotations" / "auto_lang_ann.npy").unlink()
    with pytest.raises(FileNotFoundError, match="auto_lang_ann.npy"):
        CalvinWindowDataset(root)
    np.save(root / "lang_annotations" / "auto_lang_ann.npy", {"info": {}}, allow_pickle=True)
    with pytest.raises(ValueError, match="not a CALVIN annotation dict"):
        CalvinWindowDataset(root)
