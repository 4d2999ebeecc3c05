"""`arfm label`: ingestion, captions, error reporting, resumability, and a real shared clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from arfm.data.dataset import LabelledTrackDataset, open_labelled_dataset
from arfm.labelling import LabelConfig, discover_sources, label_dataset
from arfm.labelling.cli import main as label_main
from arfm.tracking import LucasKanadeTracker


def textured_frames(num=12, size=(120, 90), shift=2, seed=0):
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (size[1] + 60, size[0] + 60 + num * shift, 3), dtype=np.uint8), (0, 0), 1.5)
    return np.stack([texture[30 : 30 + size[1], t * shift : t * shift + size[0]] for t in range(num)])


def write_mp4(path, frames, fps=10.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def make_input(root: Path) -> Path:
    write_mp4(root / "a_walk.mp4", textured_frames(seed=1))
    (root / "a_walk.txt").write_text("a person walks\n")
    write_mp4(root / "sub" / "b.mp4", textured_frames(seed=2), fps=25.0)
    (root / "sub" / "b.json").write_text(json.dumps({"caption": "from json", "fps": 5}))
    images = [Image.fromarray(f) for f in textured_frames(seed=3)]
    images[0].save(root / "c.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    frames_dir = root / "d_frames"
    frames_dir.mkdir()
    for t, f in enumerate(textured_frames(seed=4)):
        cv2.imwrite(str(frames_dir / f"{t:04d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (root / "captions.csv").write_text("path,caption\nc.gif,from csv\n")
    return root


def cfg(src, out, **kw):
    kw.setdefault("num_points", 60)
    return LabelConfig(input=src, output=out, **kw)


def test_discovery_and_captions(tmp_path):
    src = make_input(tmp_path / "in")
    found = {s.clip_id: s for s in discover_sources(src).sources}
    assert sorted(found) == ["a_walk.mp4", "c.gif", "d_frames", "sub__b.mp4"]
    assert found["a_walk.mp4"].caption == "a person walks" and found["sub__b.mp4"].caption == "from json"
    assert found["sub__b.mp4"].fps == 5.0 and found["c.gif"].caption == "from csv" and found["d_frames"].kind == "frames"
    assert found["d_frames"].caption == ""
    named = {s.clip_id: s.caption for s in discover_sources(src, caption_from_filename=True).sources}
    assert named["d_frames"] == "d frames"
    cv2.imwrite(str(src / "thumb.jpg"), np.zeros((8, 8, 3), np.uint8))  # beside videos: not a frame clip
    found = discover_sources(src)
    assert sorted(s.clip_id for s in found.sources) == ["a_walk.mp4", "c.gif", "d_frames", "sub__b.mp4"]
    assert "thumb" not in str([s.path for s in found.sources]) and "image files beside videos" in found.warnings[0]
    (src / "captions.csv").write_text("file,text\n")
    with pytest.raises(ValueError, match="captions.csv.*'path' and 'caption'"):
        discover_sources(src)


def test_ingestion_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clips found"):
        discover_sources(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing"):
        discover_sources(tmp_path / "missing")
    with pytest.raises(SystemExit):
        label_main([str(tmp_path / "empty"), str(tmp_path / "out")])
    assert "no clips found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_points"):
        LabelConfig(input=tmp_path, output=tmp_path, num_points=0)


def test_label_run_skips_corrupt_and_unreadable(tmp_path):
    src = make_input(tmp_path / "in")
    (src / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated garbage")
    (src / "dangling.avi").symlink_to(tmp_path / "nowhere.avi")  # an unreadable entry
    broken = src / "e_frames"
    broken.mkdir()
    (broken / "0001.png").write_bytes(b"not a png")
    summary = label_dataset(cfg(src, tmp_path / "out"), progress=False)
    failed = {Path(name).name: reason for name, reason in summary.failed}
    assert sorted(failed) == ["corrupt.mp4", "dangling.avi", "e_frames"]
    assert "0001.png" in failed["e_frames"]
    assert sorted(summary.labelled) == ["a_walk.mp4", "c.gif", "d_frames", "sub__b.mp4"]
    assert "3 failed" in summary.format() and "corrupt.mp4" in summary.format()
    data = open_labelled_dataset(tmp_path / "out")
    clip = data.load_clip("sub__b.mp4")
    assert clip.fps == 5.0 and clip.tracks.shape == (60, 12, 2) and clip.frames.shape == (12, 256, 256, 3)
    # content slides left 2 source px per frame; 90 px high centre crop -> 256/90 model px per source px
    steady = clip.visible.all(axis=1)
    assert steady.mean() > 0.5
    np.testing.assert_allclose(np.diff(clip.tracks[steady], axis=1).mean(axis=(0, 1)), [-2 * 256 / 90, 0], atol=0.3)
    assert data.load_clip("c.gif").fps == pytest.approx(10.0)  # GIF, 100 ms per frame
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["last_run"]["failed"]) == 3


class InterruptingTracker(LucasKanadeTracker):
    """Dies (like a kill) when asked to track the n-th clip."""

    def __init__(self, die_at: int):
        super().__init__()
        self.calls, self.die_at = 0, die_at

    def track(self, video, queries):
        self.calls += 1
        if self.calls == self.die_at:
            raise KeyboardInterrupt
        return super().track(video, queries)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_resume_after_kill_gives_identical_dataset(tmp_path):
    src = make_input(tmp_path / "in")
    label_dataset(cfg(src, tmp_path / "clean"), progress=False)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        label_dataset(cfg(src, out), tracker=InterruptingTracker(die_at=3), progress=False)
    assert len(list((out / "clips").iterdir())) == 2 and not (out / "manifest.json").exists()
    (out / "clips" / ".partial-c-deadbeef").mkdir()  # what a SIGKILL mid-write leaves behind
    (out / "clips" / ".partial-c-deadbeef" / "frames.npy").write_bytes(b"half")
    assert len(open_labelled_dataset(out)) == 2  # readable mid-run: complete clips only
    summary = label_dataset(cfg(src, out), progress=False)
    assert len(summary.already_present) == 2 and len(summary.labelled) == 2
    assert any("partial-c-deadbeef" in w for w in summary.warnings)
    assert _tree(out) == _tree(tmp_path / "clean")


def test_cli_subprocess_and_training_windows(tmp_path):
    src = make_input(tmp_path / "in")
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "arfm.cli", "label", str(src), str(out), "--num-points", "40", "--num-query-frames", "2", "--val-fraction", "0.0"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "labelled 4 clips" in run.stdout and "dataset: 4 clips, 160 tracks" in run.stdout
    ds = LabelledTrackDataset(out, num_points=20, horizon=6, max_cond_frames=3)
    assert len(ds) == 4 and ds[0].tracks.shape == (20, 9, 2)
    meta = json.loads((out / "clips" / "a_walk.mp4" / "meta.json").read_text())
    assert meta["query_frames"] == [0, 6] and meta["tracker"] == "lk" and meta["caption"] == "a person walks"


def test_real_shared_clip(shared_data, tmp_path):
    clip_path = shared_data / "videos/robot/bridge_data_v1_berkeley_toysink2_bww_put_knife_on_cutting_board.mp4"
    summary = label_dataset(cfg(clip_path, tmp_path / "out", caption_from_filename=True, num_points=200), progress=False)
    assert summary.labelled == ["bridge_data_v1_berkeley_toysink2_bww_put_knife_on_cutting_board.mp4"]
    clip = open_labelled_dataset(tmp_path / "out").load_clip(0)
    assert clip.frames.shape == (23, 256, 256, 3) and clip.fps == 15.0
    assert clip.caption.endswith("put knife on cutting board")
    assert 0.2 < clip.visible.mean() <= 1.0
    ds = LabelledTrackDataset(tmp_path / "out", num_points=100, horizon=16, max_cond_frames=4)
    w = ds[0]
    assert w.tracks.shape == (100, 20, 2) and w.visible.float().mean() > 0.5
