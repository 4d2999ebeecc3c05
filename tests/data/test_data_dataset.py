"""On-disk labelled dataset: round trip, atomic writes, manifest/splits, training and eval windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arfm.data.batch import collate_windows
from arfm.data.clip_store import remove_partial_clips, split_of, write_clip, write_manifest
from arfm.data.dataset import LabelledTrackDataset, eval_windows, open_labelled_dataset


def make_clip(num_frames=30, num_tracks=40, speed=2.0, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, size=(num_frames, 256, 256, 3), dtype=np.uint8)
    start = rng.uniform(20, 230, size=(num_tracks, 1, 2))
    velocity = np.zeros((num_tracks, 1, 2))
    velocity[: num_tracks // 2, 0, 0] = speed * (1 + np.arange(num_tracks // 2) / 10)  # first half moves along x
    tracks = start + velocity * np.arange(num_frames)[None, :, None]
    visible = np.ones((num_tracks, num_frames), bool)
    return frames, tracks.astype(np.float32), visible


@pytest.fixture()
def root(tmp_path):
    for i, length in enumerate([30, 12, 70]):
        frames, tracks, visible = make_clip(length, seed=i)
        write_clip(tmp_path, f"clip{i}", frames, tracks, visible, fps=10.0 + i, caption=f"caption {i}", source=f"src{i}.mp4")
    write_manifest(tmp_path)
    return tmp_path


def test_round_trip_and_lazy_frames(root):
    data = open_labelled_dataset(root)
    assert len(data) == 3 and data.clip_ids == ["clip0", "clip1", "clip2"]
    frames, tracks, visible = make_clip(30, seed=0)
    clip = data.load_clip("clip0")
    assert isinstance(clip.frames, np.memmap)  # frames are read on access, not loaded
    np.testing.assert_array_equal(np.asarray(clip.frames), frames)
    assert clip.tracks.dtype == np.float32 and clip.tracks.shape == (40, 30, 2)
    np.testing.assert_allclose(clip.tracks, tracks, atol=0.13)  # float16 storage: <= 1/8 px below 256
    assert clip.visible.dtype == bool and clip.fps == 10.0 and clip.caption == "caption 0" and clip.source == "src0.mp4"
    movement = np.load(root / "clips/clip0/movement.npy")
    np.testing.assert_allclose(movement, np.linalg.norm(np.diff(tracks, axis=1), axis=-1).sum(1), rtol=1e-2, atol=0.5)
    manifest = json.loads((root / "manifest.json").read_text())
    assert [c["num_frames"] for c in manifest["clips"]] == [30, 12, 70]


def test_write_is_atomic_and_validated(tmp_path, monkeypatch):
    frames, tracks, visible = make_clip(5, 4)
    with pytest.raises(ValueError, match="NaN"):
        bad = tracks.copy()
        bad[0, 0, 0] = np.nan
        write_clip(tmp_path, "bad", frames, bad, visible, fps=5)
    with pytest.raises(ValueError, match="frames must be"):
        write_clip(tmp_path, "bad", frames[..., 0], tracks, visible, fps=5)
    with pytest.raises(ValueError, match="invalid clip id"):
        write_clip(tmp_path, "../escape", frames, tracks, visible, fps=5)
    assert not (tmp_path / "clips").exists()  # rejected before anything is written
    write_clip(tmp_path, "ok", frames, tracks, visible, fps=5)
    with pytest.raises(FileExistsError, match="ok"):
        write_clip(tmp_path, "ok", frames, tracks, visible, fps=5)
    write_clip(tmp_path, "ok", frames, tracks + 1, visible, fps=6, overwrite=True)
    assert open_labelled_dataset(tmp_path).load_clip("ok").fps == 6.0  # no manifest: the clips are scanned
    calls = []

    def failing_save(path, array):  # dies after the first array, as a killed process would
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        np.lib.format.write_array(open(path, "wb"), np.asarray(array))

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        write_clip(tmp_path, "half", frames, tracks, visible, fps=5)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["ok"]  # no half-written clip
    (tmp_path / "clips" / ".partial-ok-1234").mkdir()
    assert remove_partial_clips(tmp_path) == [".partial-ok-1234"]


def test_reader_errors(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_labelled_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clips"):
        open_labelled_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="split 'val'"):
        open_labelled_dataset(root, split="val")
    (root / "clips/clip1/tracks.npy").unlink()
    with pytest.raises(FileNotFoundError, match="clip1/tracks.npy"):
        open_labelled_dataset(root).load_clip("clip1")
    (root / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="manifest.*corrupt"):
        open_labelled_dataset(root)


def test_splits_are_stable_hashes(tmp_path):
    ids = [f"clip{i}" for i in range(200)]
    val = [i for i in ids if split_of(i, 0.25) == "val"]
    assert 30 < len(val) < 70
    assert all(split_of(i, 0.5) == "val" for i in val)  # a larger fraction only adds clips to val
    assert all(split_of(i, 0.0) == "train" for i in ids)


@pytest.mark.parametrize("horizon", [16, 50])
def test_training_windows(root, horizon):
    ds = LabelledTrackDataset(root, split="train", num_points=10, horizon=horizon, max_cond_frames=4, seed=0)
    eligible = {16: ["clip0", "clip2"], 50: ["clip2"]}[horizon]
    assert len(ds) == len(eligible) and ds.window_length == 4 + horizon
    windows = [ds[i % len(ds)] for i in range(12)]
    for w in windows:
        assert w.tracks.shape == (10, 4 + horizon, 2) and w.visible.shape == (10, 4 + horizon)
        assert w.num_cond_frames in (1, 2, 3, 4) and w.frames.shape[1:] == (3, 256, 256)
        assert w.frames.dtype == torch.float32 and 0.0 <= w.frames.min() and w.frames.max() <= 1.0
        assert w.meta["clip_id"] in eligible and w.caption.startswith("caption")
        clip = open_labelled_dataset(root).load_clip(w.meta["clip_id"])
        s = w.meta["start"]
        np.testing.assert_allclose(w.frames[0].permute(1, 2, 0).numpy() * 255, clip.frames[s], atol=1e-3)
    batch = collate_windows(windows)
    assert batch.tracks.shape == (12, 10, 4 + horizon, 2)
    # movement-weighted: moving tracks (indices < 20 in every clip) dominate the draws
    assert len({w.meta["start"] for w in windows}) > 1
    again = LabelledTrackDataset(root, split="train", num_points=10, horizon=horizon, max_cond_frames=4, seed=0)
    torch.testing.assert_close(again[0].tracks, windows[0].tracks)  # reproducible


def test_training_windows_prefer_moving_tracks(root):
    ds = LabelledTrackDataset(root, num_points=10, horizon=16, max_cond_frames=2, temperature=1.0)
    w = ds[0]
    speeds = (w.tracks[:, 1:] - w.tracks[:, :-1]).norm(dim=-1).mean(dim=1)
    assert (speeds > 1.0).all()  # 20 moving (>= 2 px/step) vs 20 still tracks: tau = 1 px^2 picks movers


def test_training_window_errors(root):
    with pytest.raises(ValueError, match="longest has 70"):
        LabelledTrackDataset(root, horizon=100)
    with pytest.raises(ValueError, match="num_points"):
        LabelledTrackDataset(root, num_points=0)


def test_eval_windows_deterministic_filter(root):
    got = list(eval_windows(root, num_points=5, horizon=20, min_movement=38.5))
    # clip0 (30 frames) and clip2 (70 frames) fit 21 frames; top-100 of 40 tracks = mean over all 40:
    # 20 tracks move 2 * (1 + k / 10) px per step for 20 steps, 20 are still ->
    # score = (20 * 2 * 20 + 2 * 20 * 19) / 40 = 39 px
    assert [c for c, _ in got] == ["clip0", "clip2"]
    assert list(eval_windows(root, num_points=5, horizon=20, min_movement=39.5)) == []
    clip_id, w = got[0]
    assert w.num_cond_frames == 1 and w.tracks.shape == (5, 21, 2)
    # the five fastest tracks are 19, 18, 17, 16, 15 (speed grows with the index in the moving half)
    assert w.meta["track_indices"] == [19, 18, 17, 16, 15]
    again = list(eval_windows(root, num_points=5, horizon=20, min_movement=38.5))
    torch.testing.assert_close(again[0][1].tracks, w.tracks)
