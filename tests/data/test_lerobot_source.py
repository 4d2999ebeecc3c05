"""`arfm label` on LeRobot datasets: v2.1 (one mp4 per episode) and v3.0 (episodes share mp4s).

Each test writes a tiny dataset in the real layout (PyAV mp4s, pyarrow parquet). Every frame
carries its episode in its colour and its index within the episode in the grey level of a top
band, so a clip that starts one frame early or late, or takes a neighbour's frames, fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arfm.data.dataset import LabelledDataset
from arfm.data.video import write_mp4
from arfm.labelling import LabelConfig, discover_sources, label_dataset
from arfm.labelling.cli import main as label_main
from arfm.labelling.lerobot import LeRobotFormatError, list_episodes

FPS = 10
LENGTHS = (12, 9, 11)
TASKS = ("pick up the red block", "open the drawer", "push the green button")
COLOURS = ((200, 40, 40), (40, 190, 40), (40, 40, 200))
CAMERAS = ("observation.images.front", "observation.images.wrist")


def episode_frames(episode: int, camera: str = CAMERAS[0]) -> np.ndarray:
    """``(T, 64, 64, 3)``: top band grey level = 14 * frame + 30, the rest the episode colour,
    with a textured square moving 2 px per frame (something for the tracker to follow)."""
    rng = np.random.default_rng(episode)
    texture = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    frames = np.empty((LENGTHS[episode], 64, 64, 3), np.uint8)
    for t in range(LENGTHS[episode]):
        frames[t] = COLOURS[episode]
        frames[t, :16] = 14 * t + 30
        frames[t, 24:36, 30 + t : 42 + t] = texture
    return frames if camera == CAMERAS[0] else 255 - frames  # the wrist camera: negative image


def check_clip(frames: np.ndarray, episode: int, camera: str = CAMERAS[0]) -> None:
    """Model frames (centre crop 64 -> 256, 4x) match the episode's frames one to one."""
    assert frames.shape == (LENGTHS[episode], 256, 256, 3)
    expected = episode_frames(episode, camera)
    for t, frame in enumerate(frames):
        band = frame[8:56].reshape(-1, 3).mean(axis=0)  # source rows 2..14
        body = frame[176:248, 8:104].reshape(-1, 3).mean(axis=0)  # source rows 44..62, cols 2..26
        assert np.abs(band - expected[t, 8, 0]).max() < 6, (episode, t, band)
        assert np.abs(body - expected[t, 50, 5]).max() < 8, (episode, t, body)


def write_parquet(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def features(cameras=CAMERAS) -> dict:
    feats = {k: {"dtype": "video", "shape": [64, 64, 3], "names": ["height", "width", "channels"]} for k in cameras}
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        feats[name] = {"dtype": "float32" if name == "timestamp" else "int64", "shape": [1], "names": None}
    return feats


def frame_rows(episodes) -> dict:
    rows = {"timestamp": [], "frame_index": [], "episode_index": [], "index": [], "task_index": []}
    for ep in episodes:
        for t in range(LENGTHS[ep]):
            rows["timestamp"].append(t / FPS)
            rows["frame_index"].append(t)
            rows["episode_index"].append(ep)
            rows["index"].append(sum(LENGTHS[:ep]) + t)
            rows["task_index"].append(ep)
    return rows


def make_v21(root: Path) -> Path:
    info = {
        "codebase_version": "v2.1",
        "fps": FPS,
        "chunks_size": 1000,
        "total_episodes": len(LENGTHS),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features(CAMERAS[:1]),
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    episodes = [{"episode_index": i, "tasks": [TASKS[i]], "length": n} for i, n in enumerate(LENGTHS)]
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    (root / "meta" / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS)))
    for ep in range(len(LENGTHS)):
        write_parquet(root / f"data/chunk-000/episode_{ep:06d}.parquet", frame_rows([ep]))
        video = root / f"videos/chunk-000/{CAMERAS[0]}/episode_{ep:06d}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(video, episode_frames(ep), fps=FPS)
    return root


def make_v30(root: Path) -> Path:
    """Episodes 0 and 1 share ``file-000`` (data and videos), episode 2 is alone in ``file-001``;
    episode 2 lists no task text, so its caption comes from ``meta/tasks.parquet``."""
    files = {0: [0, 1], 1: [2]}
    info = {
        "codebase_version": "v3.0",
        "fps": FPS,
        "chunks_size": 1000,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features(),
    }
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    write_parquet(root / "meta" / "tasks.parquet", {"task_index": list(range(len(TASKS))), "task": list(TASKS)})
    episodes: dict = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [], "data/file_index": []}
    for camera in CAMERAS:
        for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            episodes[f"videos/{camera}/{name}"] = []
    for file_index, members in files.items():
        write_parquet(root / f"data/chunk-000/file-{file_index:03d}.parquet", frame_rows(members))
        for camera in CAMERAS:
            video = root / f"videos/{camera}/chunk-000/file-{file_index:03d}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            write_mp4(video, np.concatenate([episode_frames(ep, camera) for ep in members]), fps=FPS)
        start = 0.0
        for ep in members:
            episodes["episode_index"].append(ep)
            episodes["tasks"].append([TASKS[ep]] if ep != 2 else [])
            episodes["length"].append(LENGTHS[ep])
            episodes["data/chunk_index"].append(0)
            episodes["data/file_index"].append(file_index)
            for camera in CAMERAS:
                episodes[f"videos/{camera}/chunk_index"].append(0)
                episodes[f"videos/{camera}/file_index"].append(file_index)
                episodes[f"videos/{camera}/from_timestamp"].append(start)
                episodes[f"videos/{camera}/to_timestamp"].append(start + LENGTHS[ep] / FPS)
            start += LENGTHS[ep] / FPS
    episodes["tasks"] = pa.array(episodes["tasks"], type=pa.list_(pa.string()))
    write_parquet(root / "meta/episodes/chunk-000/file-000.parquet", episodes)
    return root


def labelled(out: Path) -> dict:
    data = LabelledDataset(out, "all")
    return {cid: data.load_clip(cid) for cid in data.clip_ids}


def test_v21_dataset_labels_one_clip_per_episode(tmp_path):
    src = make_v21(tmp_path / "v21")
    found = discover_sources(src)  # auto-detected by meta/info.json
    assert found.format == "lerobot" and not found.warnings
    assert [s.caption for s in found.sources] == list(TASKS)
    summary = label_dataset(LabelConfig(input=src, output=tmp_path / "out", num_points=30), progress=False)
    assert not summary.failed and summary.dataset_clips == 3
    clips = labelled(tmp_path / "out")
    assert sorted(clips) == [f"{CAMERAS[0]}__episode_{i:06d}" for i in range(3)]
    for ep in range(3):
        clip = clips[f"{CAMERAS[0]}__episode_{ep:06d}"]
        assert clip.caption == TASKS[ep] and clip.fps == FPS
        check_clip(np.asarray(clip.frames), ep)
        assert clip.tracks.shape == (30, LENGTHS[ep], 2)


def test_v30_shared_videos_are_split_by_timestamps(tmp_path, capsys):
    src = make_v30(tmp_path / "v30")
    found = discover_sources(src, camera=CAMERAS[1])
    assert [s.caption for s in found.sources] == list(TASKS)  # episode 2's from tasks.parquet
    assert found.sources[1].source.endswith("file-000.mp4#t=1.2,2.1")
    for ep, source in enumerate(found.sources):  # seeking lands on each episode's exact frames
        frames, fps, info = source.load()
        check_clip(frames, ep, CAMERAS[1])
        assert fps == FPS and info["episode_index"] == ep and "cut_short" not in info
    frames, fps, _ = found.sources[1].load(max_frames=3, frame_stride=2)
    assert fps == FPS / 2 and len(frames) == 3
    np.testing.assert_allclose(frames[:, 8:56].mean(axis=(1, 2, 3)), 255 - (14 * np.array([0, 2, 4]) + 30), atol=6)

    # the CLI: auto-detection, --camera, the summary
    label_main([str(src), str(tmp_path / "out"), "--num-points", "30", "--camera", CAMERAS[0]])
    assert "labelled 3 clips" in capsys.readouterr().out
    clips = labelled(tmp_path / "out")
    assert sorted(clips) == [f"{CAMERAS[0]}__episode_{i:06d}" for i in range(3)]
    for ep in range(3):
        clip = clips[f"{CAMERAS[0]}__episode_{ep:06d}"]
        assert clip.caption == TASKS[ep]
        check_clip(np.asarray(clip.frames), ep)


def test_default_camera_is_the_first_and_is_announced(tmp_path):
    src = make_v30(tmp_path / "v30")
    found = discover_sources(src, "lerobot")
    assert {s.episode.camera for s in found.sources} == {CAMERAS[0]}
    assert "--camera" in found.warnings[0] and CAMERAS[1] in found.warnings[0]


def test_missing_video_is_reported_and_the_other_episodes_labelled(tmp_path):
    src = make_v21(tmp_path / "v21")
    (src / f"videos/chunk-000/{CAMERAS[0]}/episode_000001.mp4").unlink()
    summary = label_dataset(LabelConfig(input=src, output=tmp_path / "out", num_points=20), progress=False)
    assert len(summary.labelled) == 2 and len(summary.failed) == 1
    assert "episode_000001.mp4" in summary.failed[0][1]


def test_short_video_is_labelled_and_flagged_cut_short(tmp_path):
    src = make_v21(tmp_path / "v21")
    write_mp4(src / f"videos/chunk-000/{CAMERAS[0]}/episode_000000.mp4", episode_frames(0)[:7], fps=FPS)
    frames, _, info = discover_sources(src).sources[0].load()
    assert len(frames) == 7 and info["cut_short"]["expected_frames"] == 12 and "holds 7 of its 12" in info["cut_short"]["reason"]


def test_bad_metadata_names_the_file(tmp_path, capsys):
    src = make_v21(tmp_path / "v21")
    (src / "meta" / "episodes.jsonl").unlink()
    with pytest.raises(LeRobotFormatError, match=r"meta/episodes\.jsonl is missing"):
        discover_sources(src)
    with pytest.raises(SystemExit):
        label_main([str(src), str(tmp_path / "out")])
    assert "episodes.jsonl is missing" in capsys.readouterr().err

    (src / "meta" / "episodes.jsonl").write_text('{"episode_index": 0, "tasks": ["a"], "length": 12}\n{oops\n')
    with pytest.raises(LeRobotFormatError, match=r"episodes\.jsonl line 2 is not JSON"):
        list_episodes(src)
    (src / "meta" / "info.json").write_text("{not json")
    with pytest.raises(LeRobotFormatError, match=r"meta/info\.json is not readable JSON"):
        discover_sources(src)
    (src / "meta" / "info.json").unlink()
    with pytest.raises(LeRobotFormatError, match=r"meta/info\.json is missing"):
        discover_sources(src, "lerobot")

    v3 = make_v30(tmp_path / "v30")
    with pytest.raises(LeRobotFormatError, match=r"camera 'observation\.images\.top'.*observation\.images\.front"):
        discover_sources(v3, camera="observation.images.top")
    episodes = v3 / "meta/episodes/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(episodes).drop([f"videos/{CAMERAS[0]}/from_timestamp"]), episodes)
    with pytest.raises(LeRobotFormatError, match=r"meta/episodes/chunk-000/file-000\.parquet lacks the column.*from_timestamp"):
        discover_sources(v3)
    info = json.loads((v3 / "meta" / "info.json").read_text())
    info["codebase_version"] = "v1.6"
    (v3 / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotFormatError, match=r"codebase_version 'v1\.6' is not supported"):
        discover_sources(v3)
