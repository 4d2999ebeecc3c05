"""`arfm label` under hostile inputs: colliding names, cut videos, symlink loops, two labellers,
unsafe manifests, and AV1/VP9 videos that only FFmpeg (PyAV) decodes (issue 14, issue 16)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from arfm.data import video as video_module
from arfm.data.clip_store import read_manifest
from arfm.data.dataset import open_labelled_dataset
from arfm.data.video import read_video
from arfm.labelling import LabelConfig, discover_sources, label_dataset
from arfm.labelling.cli import main as label_main
from arfm.labelling.lock import LOCK_FILE, OutputInUseError, OutputLock
from arfm.labelling.sources import clip_id_for


def square_frames(num: int = 6, width: int = 64, height: int = 48) -> np.ndarray:
    """A red square sliding right 4 px per frame on black, plus texture for the tracker."""
    rng = np.random.default_rng(num)
    frames = np.repeat(rng.integers(0, 60, (1, height, width, 3), dtype=np.uint8), num, axis=0)
    for t in range(num):
        frames[t, 10:26, 4 + 4 * t : 20 + 4 * t] = (250, 40, 40)
    return frames


def write_with_pyav(path: Path, frames: np.ndarray, codec: str, fps: int = 10, options: dict | None = None, container_options: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options or {}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_mp4v(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_gif(path: Path, frames: np.ndarray) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def cfg(src: Path, out: Path, **kw) -> LabelConfig:
    kw.setdefault("num_points", 16)
    return LabelConfig(input=src, output=out, **kw)


# ---------------------------------------------------------------- 1. clip ids


def test_clip_ids_keep_the_extension_and_hash_only_lossy_names():
    assert clip_id_for(Path("a_b.mp4")) == "a_b.mp4"
    assert clip_id_for(Path("sub/clip.gif")) == "sub__clip.gif"
    assert clip_id_for(Path("frames_dir")) == "frames_dir"
    digest = hashlib.sha1(b"a b.mp4").hexdigest()[:8]
    assert clip_id_for(Path("a b.mp4")) == f"a_b.mp4-{digest}"
    # a name with its own "__" would collide with a folder join ("x/y" -> "x__y"): hashed
    assert clip_id_for(Path("x__y.mp4")) != clip_id_for(Path("x/y.mp4")) == "x__y.mp4"


def test_colliding_names_give_unique_stable_ids_and_every_clip_is_labelled(tmp_path):
    src = tmp_path / "in"
    frames = square_frames()
    for name in ("a b.mp4", "a_b.mp4", "a+b.mp4", "clip.mp4"):
        write_mp4v(src / name, frames)
    write_gif(src / "clip.gif", frames)
    ids = [s.clip_id for s in discover_sources(src).sources]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert {"a_b.mp4", "clip.mp4", "clip.gif"} <= set(ids)
    write_mp4v(src / "a-b.mp4", frames)  # a new neighbour renames no existing clip
    again = {s.path.name: s.clip_id for s in discover_sources(src).sources}
    assert [again[s.path.name] for s in discover_sources(src).sources if s.path.name != "a-b.mp4"] == ids
    summary = label_dataset(cfg(src, tmp_path / "out"), progress=False)
    assert len(summary.labelled) == 6 and summary.dataset_clips == 6 and not summary.failed
    sources = sorted(Path(e["source"]).name for e in read_manifest(tmp_path / "out"))
    assert sources == sorted(["a b.mp4", "a_b.mp4", "a+b.mp4", "a-b.mp4", "clip.mp4", "clip.gif"])


def test_a_dataset_labelled_under_old_ids_resumes_without_duplicates(tmp_path):
    src = tmp_path / "in"
    write_mp4v(src / "walk.mp4", square_frames())
    out = tmp_path / "out"
    label_dataset(cfg(src, out), progress=False)
    os.rename(out / "clips" / "walk.mp4", out / "clips" / "walk")  # the id an older version gave it
    meta = json.loads((out / "clips" / "walk" / "meta.json").read_text())
    (out / "clips" / "walk" / "meta.json").write_text(json.dumps({**meta, "clip_id": "walk"}))
    summary = label_dataset(cfg(src, out), progress=False)
    assert summary.labelled == [] and summary.already_present == ["walk"] and summary.dataset_clips == 1


# ---------------------------------------------------------------- 2. videos cut mid-stream


def cut_video(tmp_path: Path, name: str = "cut.mp4", num: int = 30) -> Path:
    rng = np.random.default_rng(0)  # noise: every frame costs bytes, so half a file is about half the frames
    frames = rng.integers(0, 255, (num, 48, 64, 3), dtype=np.uint8)
    full = write_with_pyav(tmp_path / "full.mp4", frames, "h264", container_options={"movflags": "faststart"})
    data = full.read_bytes()
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the front: the cut file still opens
    return path


def test_cut_video_is_read_with_a_warning(tmp_path):
    clip = read_video(cut_video(tmp_path))
    assert clip.expected_frames == 30 and 0 < clip.decoded_frames < 30 and len(clip.frames) == clip.decoded_frames
    assert "cut short" in clip.warning and "of the 30" in clip.warning
    whole = read_video(tmp_path / "full.mp4")
    assert whole.warning == "" and whole.decoded_frames == whole.expected_frames == 30
    assert read_video(cut_video(tmp_path), max_frames=3).warning == ""  # stopped on purpose: nothing to report


def test_cut_video_is_reported_in_the_summary_and_the_manifest(tmp_path):
    path = cut_video(tmp_path)
    summary = label_dataset(cfg(path.parent, tmp_path / "out"), progress=False)
    assert summary.labelled == ["cut.mp4"]
    assert any("cut.mp4" in w and "cut short" in w for w in summary.warnings)
    assert "cut short" in summary.format()
    (entry,) = read_manifest(tmp_path / "out")
    assert entry["cut_short"]["expected_frames"] == 30 and entry["cut_short"]["decoded_frames"] == entry["num_frames"] < 30


# ---------------------------------------------------------------- 3. symlink loops


@pytest.mark.timeout(60)
def test_symlink_loops_end_and_each_clip_is_found_once(tmp_path):
    src = tmp_path / "in"
    write_mp4v(src / "clip.mp4", square_frames())
    write_mp4v(src / "sub" / "other.mp4", square_frames())
    (src / "self").symlink_to(".")
    (src / "sub" / "up").symlink_to("..")
    (src / "alias.mp4").symlink_to("clip.mp4")
    (tmp_path / "elsewhere").mkdir()
    (src / "sub" / "root_link").symlink_to(tmp_path)  # an ancestor of the input: a loop too
    discovery = discover_sources(src)
    assert sorted(s.path.name for s in discovery.sources) == ["alias.mp4", "other.mp4"]
    assert sum("ignored" in w for w in discovery.warnings) == 4
    summary = label_dataset(cfg(src, tmp_path / "out"), progress=False)
    assert summary.dataset_clips == 2


# ---------------------------------------------------------------- 4. two labellers on one output


def test_second_labeller_is_refused_and_leaves_the_first_ones_work(tmp_path, capsys):
    src = tmp_path / "in"
    write_mp4v(src / "clip.mp4", square_frames())
    out = tmp_path / "out"
    with OutputLock(out):  # the first run, mid-write
        in_progress = out / "clips" / ".partial-clip.mp4-0123abcd"
        in_progress.mkdir(parents=True)
        with pytest.raises(OutputInUseError, match=f"pid {os.getpid()}"):
            label_dataset(cfg(src, out), progress=False)
        assert in_progress.is_dir()  # not swept away as a leftover
        with pytest.raises(SystemExit):
            label_main([str(src), str(out), "--num-points", "16"])
        assert "being labelled by another process" in capsys.readouterr().err
    summary = label_dataset(cfg(src, out), progress=False)  # released: the next run goes ahead
    assert summary.labelled == ["clip.mp4"] and (out / LOCK_FILE).read_text() == ""


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="flock semantics are POSIX")
def test_lock_held_by_another_process_refuses_until_that_process_dies(tmp_path):
    src = tmp_path / "in"
    write_mp4v(src / "clip.mp4", square_frames())
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(OutputInUseError, match=f"pid {other.pid}"):
            label_dataset(cfg(src, out), progress=False)
    finally:
        other.kill()  # a SIGKILL: no cleanup runs, the kernel drops the lock
        other.wait(timeout=30)
    assert (out / LOCK_FILE).read_text() == str(other.pid)  # the stale pid is still in the file
    assert label_dataset(cfg(src, out), progress=False).labelled == ["clip.mp4"]


# ---------------------------------------------------------------- 5. unsafe manifests


@pytest.mark.parametrize("clip_id", ["../../outside", "/etc", "clips/../x", "a\n"])
def test_manifest_clip_ids_outside_the_root_are_refused(tmp_path, clip_id):
    src = tmp_path / "in"
    write_mp4v(src / "clip.mp4", square_frames())
    out = tmp_path / "out"
    label_dataset(cfg(src, out), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["clips"][0]["clip_id"] = clip_id
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="manifest.*clip entry 0.*invalid clip id"):
        open_labelled_dataset(out)


def test_manifest_with_a_repeated_id_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"clips": [{"clip_id": "a"}, {"clip_id": "a"}]}))
    with pytest.raises(ValueError, match="'a' appears twice"):
        read_manifest(tmp_path)


# ---------------------------------------------------------------- 6. PyAV decoding


class NoStreamCapture:
    """An OpenCV without the codec (a build lacking dav1d): opens nothing."""

    def __init__(self, *args) -> None:
        pass

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return False

    def release(self) -> None:
        pass


def modern_codec_clip(tmp_path: Path) -> tuple[Path, np.ndarray]:
    frames = square_frames(num=8)
    if "libsvtav1" in av.codecs_available:
        return write_with_pyav(tmp_path / "lerobot.mp4", frames, "libsvtav1", options={"preset": "12"}), frames
    return write_with_pyav(tmp_path / "lerobot.webm", frames, "libvpx-vp9"), frames


def test_av1_or_vp9_decodes_with_pyav_when_opencv_cannot(tmp_path, monkeypatch):
    path, frames = modern_codec_clip(tmp_path)
    monkeypatch.setattr(video_module.cv2, "VideoCapture", NoStreamCapture)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and clip.fps == pytest.approx(10.0) and clip.warning == ""
    # lossy codec: compare the red square's place, not exact pixels
    red = (clip.frames[..., 0] > 150) & (clip.frames[..., 1] < 110)
    centres = [np.nonzero(mask)[1].mean() for mask in red]
    np.testing.assert_allclose(centres, [11.5 + 4 * t for t in range(8)], atol=1.0)
    summary = label_dataset(cfg(path, tmp_path / "out"), progress=False)
    assert summary.labelled == [path.name] and summary.dataset_clips == 1


def test_opencv_is_the_fallback_when_pyav_cannot_open(tmp_path, monkeypatch):
    path = write_mp4v(tmp_path / "a.mp4", square_frames())

    def refuse(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(av, "open", refuse)
    clip = read_video(path)
    assert clip.frames.shape == (6, 48, 64, 3) and clip.expected_frames == 6
    monkeypatch.setattr(video_module.cv2, "VideoCapture", NoStreamCapture)
    with pytest.raises(video_module.VideoReadError, match="a.mp4.*PyAV.*OpenCV"):
        read_video(path)
