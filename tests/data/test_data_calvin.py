"""CALVIN importer on tiny episodes written in CALVIN's exact on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arfm.data.calvin import CALVIN_FPS, CalvinFormatError, iter_calvin_segments, load_segment_frames, read_annotations
from arfm.data.dataset import open_labelled_dataset
from arfm.labelling.cli import main as label_main
from arfm.labelling.sources import discover_sources


def write_calvin_split(split_dir: Path, num_frames: int = 24, segments=((0, 9), (12, 23)), instructions=("open the drawer", "push the blue block")) -> Path:
    """episode_XXXXXXX.npz per frame, ep_start_end_ids.npy, lang_annotations/auto_lang_ann.npy."""
    split_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, size=(400, 400, 3), dtype=np.uint8)
    for i in range(num_frames):
        np.savez(
            split_dir / f"episode_{i:07d}.npz",
            rgb_static=np.ascontiguousarray(texture[100 : 300, 100 + i : 300 + i]),  # scene slides 1 px per frame
            rgb_gripper=np.zeros((84, 84, 3), np.uint8),
            actions=np.zeros(7),
            rel_actions=np.zeros(7),
            robot_obs=np.zeros(15),
            scene_obs=np.zeros(24),
        )
    np.save(split_dir / "ep_start_end_ids.npy", np.array([[0, num_frames - 1]]))
    (split_dir / "lang_annotations").mkdir()
    ann = {
        "info": {"indx": list(segments), "episodes": []},
        "language": {"ann": list(instructions), "task": ["open_drawer", "push_blue_block_left"], "emb": np.zeros((len(segments), 1, 384), np.float32)},
    }
    np.save(split_dir / "lang_annotations" / "auto_lang_ann.npy", np.array(ann, dtype=object), allow_pickle=True)
    return split_dir


def test_reads_segments_and_frames(tmp_path):
    split = write_calvin_split(tmp_path / "calvin" / "training")
    segments = list(iter_calvin_segments(tmp_path / "calvin"))
    assert [(s.start, s.end, s.instruction) for s in segments] == [(0, 9, "open the drawer"), (12, 23, "push the blue block")]
    assert segments[0].clip_id == "calvin_training_00000_0000000-0000009"
    frames = load_segment_frames(segments[1])
    assert frames.shape == (12, 256, 256, 3) and frames.dtype == np.uint8  # inclusive end
    assert list(iter_calvin_segments(split))[0].task == "open_drawer"  # a split folder works directly
    sources = discover_sources(tmp_path / "calvin").sources
    assert [s.caption for s in sources] == ["open the drawer", "push the blue block"] and sources[0].kind == "calvin"


def test_format_errors_name_the_file(tmp_path):
    with pytest.raises(CalvinFormatError, match="not a CALVIN dataset"):
        list(iter_calvin_segments(tmp_path))
    split = write_calvin_split(tmp_path / "training")
    (split / "lang_annotations" / "auto_lang_ann.npy").write_bytes(b"garbage")
    with pytest.raises(CalvinFormatError, match="auto_lang_ann.npy"):
        read_annotations(split)
    split2 = write_calvin_split(tmp_path / "v2" / "training")
    (split2 / "episode_0000005.npz").unlink()
    seg = read_annotations(split2)[0]
    with pytest.raises(CalvinFormatError, match="episode_0000005.npz"):
        load_segment_frames(seg)
    (split2 / "episode_0000003.npz").write_bytes(b"not a zip")
    with pytest.raises(CalvinFormatError, match="episode_0000003.npz"):
        load_segment_frames(seg)
    np.save(split2 / "ep_start_end_ids.npy", np.array([[0, 4], [5, 23]]))  # segment 0-9 now straddles two episodes
    with pytest.raises(CalvinFormatError, match="lies in no episode"):
        load_segment_frames(read_annotations(split2)[0])


def test_label_cli_on_calvin(tmp_path, capsys):
    split = write_calvin_split(tmp_path / "calvin" / "training")
    (split / "episode_0000020.npz").unlink()  # the second segment is broken: reported, skipped
    out = tmp_path / "out"
    label_main([str(tmp_path / "calvin"), str(out), "--num-points", "50"])
    printed = capsys.readouterr().out
    assert "labelled 1 clips" in printed and "1 failed" in printed and "episode_0000020.npz" in printed
    data = open_labelled_dataset(out)
    clip = data.load_clip(0)
    assert clip.caption == "open the drawer" and clip.fps == CALVIN_FPS
    assert clip.frames.shape == (10, 256, 256, 3) and clip.tracks.shape == (50, 10, 2)
    # the static view slides left by 1 source px = 1.28 model px per frame
    moving = clip.visible.all(axis=1)
    assert moving.sum() > 25
    shift = np.diff(clip.tracks[moving], axis=1).mean(axis=(0, 1))
    np.testing.assert_allclose(shift, [-1.28, 0.0], atol=0.05)
