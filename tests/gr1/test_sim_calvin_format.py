"""CALVIN on-disk format: writer -> reader round trip, the raw layout, and errors on bad input."""

import numpy as np
import pytest

from integrations.gr1.sim.calvin_format import (
    EMBEDDING_DIM, CalvinEpisodeReader, CalvinWriter, episode_path, hashed_embedding,
)


def _frame(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "actions": rng.normal(size=7), "rel_actions": np.clip(rng.normal(size=7), -1, 1),
        "robot_obs": rng.normal(size=15), "scene_obs": rng.normal(size=24),
        "rgb_static": rng.integers(0, 256, (200, 200, 3), dtype=np.uint8),
        "rgb_gripper": rng.integers(0, 256, (84, 84, 3), dtype=np.uint8),
        "depth_static": rng.random((200, 200), dtype=np.float32), "depth_gripper": rng.random((84, 84), dtype=np.float32),
    }


@pytest.fixture()
def dataset(tmp_path):
    writer = CalvinWriter(tmp_path)
    frames = [_frame(i) for i in range(7)]
    for f in frames[:4]:
        writer.write_frame(f)
    tracks = np.random.default_rng(0).uniform(0, 200, (5, 3, 2)).astype(np.float32)
    writer.annotate(1, 3, "open_drawer", "pull the handle to open the drawer", tracks, tracks[..., 0] > 100)
    assert writer.end_episode() == (0, 3)
    for f in frames[4:]:
        writer.write_frame(f)
    writer.annotate(4, 6, "turn_on_led", "press the button to turn on the led light")
    writer.close()
    return tmp_path, frames, tracks


def test_round_trip(dataset):
    root, frames, tracks = dataset
    reader = CalvinEpisodeReader(root)
    assert reader.episode_ids.tolist() == [[0, 3], [4, 6]] and len(reader) == 7
    for i, f in enumerate(frames):
        got = reader.frame(i)
        assert set(got) == set(f)
        for key in f:
            assert np.array_equal(got[key], f[key]), key
    assert reader.annotations() == [(1, 3, "open_drawer", "pull the handle to open the drawer"),
                                    (4, 6, "turn_on_led", "press the button to turn on the led light")]
    emb = reader.language_embeddings()
    assert emb.shape == (2, 1, EMBEDDING_DIM) and emb.dtype == np.float32
    side = reader.tracks(1, 3)
    assert np.array_equal(side["tracks"], tracks) and side["visible"].dtype == bool
    assert side["frame_size"].tolist() == [200, 200] and int(side["start"]) == 1 and int(side["end"]) == 3
    with pytest.raises(FileNotFoundError, match="ep_0000004_0000006"):
        reader.tracks(4, 6)


def test_raw_layout_matches_calvin(dataset):
    root, _, _ = dataset
    assert episode_path(root, 5).name == "episode_0000005.npz" and episode_path(root, 5).is_file()
    ids = np.load(root / "ep_start_end_ids.npy")
    assert ids.shape == (2, 2) and np.issubdtype(ids.dtype, np.integer)
    lang = np.load(root / "lang_annotations" / "auto_lang_ann.npy", allow_pickle=True).item()
    assert lang["info"]["indx"] == [(1, 3), (4, 6)] and lang["info"]["episodes"] == []
    assert lang["language"]["task"] == ["open_drawer", "turn_on_led"]
    assert lang["language"]["emb"].shape == (2, 1, 384)
    assert np.load(root / "scene_info.npy", allow_pickle=True).item() == {"embedded_tabletop": [0, 6]}
    assert not list(root.rglob("*.tmp"))  # atomic writes leave no temp files


def test_hashed_embedding():
    a, b = hashed_embedding("open the drawer"), hashed_embedding("open the drawer")
    c = hashed_embedding("close the drawer")
    assert np.array_equal(a, b) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)
    assert abs(float(a @ c)) < 0.3


def test_writer_rejects_bad_frames(tmp_path):
    writer = CalvinWriter(tmp_path)
    bad = _frame(0)
    bad["robot_obs"] = np.zeros(14)
    with pytest.raises(ValueError, match="robot_obs"):
        writer.write_frame(bad)
    bad = _frame(0)
    del bad["rel_actions"]
    with pytest.raises(KeyError, match="rel_actions"):
        writer.write_frame(bad)
    bad = _frame(0)
    bad["depth_static"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        writer.write_frame(bad)
    with pytest.raises(ValueError, match="outside the written frames"):
        writer.annotate(0, 0, "t", "x")


def test_reader_errors_name_missing_files(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="not found"):
        CalvinEpisodeReader(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="ep_start_end_ids.npy"):
        CalvinEpisodeReader(empty)
    np.save(empty / "ep_start_end_ids.npy", np.zeros((0, 2), int))
    with pytest.raises(FileNotFoundError, match="auto_lang_ann.npy"):
        CalvinEpisodeReader(empty)
    root, _, _ = dataset
    reader = CalvinEpisodeReader(root)
    with pytest.raises(FileNotFoundError, match="episode_0000099.npz"):
        reader.frame(99)
    episode_path(root, 2).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="episode_0000002.npz"):
        reader.frame(2)
