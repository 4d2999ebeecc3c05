"""``arfm eval`` on the official evaluation sets' encoding (HF ``datasets`` arrow shards, issue 12).

The test writes a small set exactly as the official ``datasets`` fork stores
``jxie/UCF_101-100_samples-100_points-50_movement_min-mwt0.5``: an Arrow IPC stream file
``data-00000-of-00001.arrow`` with ``video`` = ``{bytes: MP4 (H.264, PyAV), path}``, ``tracks`` /
``query_points`` / ``visibles`` = ``{bytes: np.save}``, ``camera_motion`` and ``text``; tracks are
``(N, T, 2)`` ``(x, y)`` pixels of the video frame, query points ``(t, x, y)``.
"""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pytest

from arfm.data.hf_arrow import ArrowTrackDataset, find_shards, open_eval_dataset
from arfm.evaluation.cli import main as eval_main

FRAMES = 12
HORIZON = 10
SHIFT = np.array([2.0, 1.0])  # px per frame in the 256 x 256 model frame, (x, y)

VIDEO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
ARRAY = pa.struct([("bytes", pa.binary())])
SCHEMA = pa.schema(
    [("video", VIDEO), ("tracks", ARRAY), ("query_points", ARRAY), ("visibles", ARRAY), ("camera_motion", pa.bool_()), ("text", pa.string())],
    metadata={"huggingface": json.dumps({"info": {"features": {"video": {"_type": "Video"}, "tracks": {"_type": "Array"}}}})},
)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _mp4(frames: np.ndarray, fps: int = 10) -> bytes:
    """H.264 MP4 bytes of ``(T, H, W, 3)`` uint8 frames, written with PyAV as the official encoder does."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "h264", Fraction(fps))
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _texture(seed: int, size: int) -> np.ndarray:
    """Smooth random colours (H.264 keeps them to a few grey levels)."""
    coarse = np.random.default_rng(seed + 1000).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _row(size: int, seed: int, points: int = 20, caption: str | None = "a ball rolls") -> dict:
    """A texture translating by ``SHIFT`` (model-frame px) per frame in a ``size``-px video, with exact tracks."""
    rng = np.random.default_rng(seed)
    step = SHIFT * size / 256  # in this video's pixels
    texture = _texture(seed, size)
    frames = np.stack([np.roll(texture, (int(t * step[1]), int(t * step[0])), axis=(0, 1)) for t in range(FRAMES)])
    start = rng.integers(int(0.1 * size), int(0.6 * size), (points, 2)).astype(float)  # float16 stores these exactly
    tracks = (start[:, None] + np.arange(FRAMES)[None, :, None] * step).astype(np.float16)  # (N, T, 2), (x, y)
    queries = np.concatenate([np.zeros((points, 1)), tracks[:, 0]], axis=1).astype(np.float16)  # (t, x, y)
    return {
        "video": {"bytes": _mp4(frames), "path": None},
        "tracks": {"bytes": _npy(tracks)},
        "query_points": {"bytes": _npy(queries)},
        "visibles": {"bytes": _npy(np.ones((points, FRAMES), dtype=bool))},
        "camera_motion": False,
        "text": caption,
    }


def _write_shard(path: Path, rows: list[dict], schema: pa.Schema = SCHEMA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:  # HF datasets: IPC stream format
        writer.write_table(table)
    return path


@pytest.fixture(scope="module")
def arrow_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf_arrow")
    # two 256-px rows (the official size) and one 128-px row (tracks must be rescaled with the frame)
    _write_shard(root / "test" / "data-00000-of-00001.arrow", [_row(256, 0), _row(128, 1, caption=None), _row(256, 2)])
    return root


def test_reader_decodes_rows_in_model_frame_pixels(arrow_set: Path):
    data = open_eval_dataset(arrow_set)
    assert isinstance(data, ArrowTrackDataset) and len(data) == 3
    assert [e["num_frames"] for e in data.entries] == [FRAMES] * 3
    assert data.entries[0]["caption"] == "a ball rolls" and data.entries[1]["caption"] == ""
    assert data.entries[0]["camera_motion"] is False
    for index in range(3):
        arrays = data.open_arrays(index)
        assert arrays["frames"].shape == (FRAMES, 256, 256, 3) and arrays["frames"].dtype == np.uint8
        assert arrays["tracks"].dtype == np.float32 and arrays["visible"].dtype == np.bool_
        shifts = np.diff(arrays["tracks"], axis=1)
        np.testing.assert_allclose(shifts, np.broadcast_to(SHIFT, shifts.shape), atol=1e-6)  # the 128-px row scaled x2
    assert data.entries[0]["fps"] == pytest.approx(10.0)
    # the decoded first frame is the encoded texture (H.264 is lossy: compare loosely), not another one
    first = data.open_arrays(0)["frames"][0].astype(float)
    assert np.abs(first - _texture(0, 256)).mean() < 8 < 30 < np.abs(first - _texture(2, 256)).mean()
    assert find_shards(arrow_set, split="test") and not find_shards(arrow_set, split="train")


def test_arfm_eval_runs_on_arrow_shards(arrow_set: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    eval_main(["--data", str(arrow_set), "--predictors", "no-movement,gt", "--out", str(out), "--horizon", str(HORIZON), "--num-points", "20", "--min-movement", "0", "--no-plots"])
    results = json.loads((out / "results.json").read_text())
    assert len(results["clip_ids"]) == 3 and not results["skipped"]
    by_spec = {p["spec"]: p["summary"] for p in results["predictors"]}
    # standing still is off by k * |SHIFT| at step k: ADE = |SHIFT| * mean(1..H)
    assert by_spec["no-movement"]["ade"] == pytest.approx(math.hypot(*SHIFT) * (HORIZON + 1) / 2, rel=1e-3)
    assert by_spec["gt"]["ade"] == pytest.approx(0.0, abs=1e-4) and by_spec["gt"]["delta_avg"] == pytest.approx(1.0)
    assert "no-movement" in capsys.readouterr().out


def test_bad_rows_are_named(tmp_path: Path):
    corrupt = _row(64, 3)
    corrupt["video"] = {"bytes": b"\x00\x00\x00 ftypisom not really an mp4", "path": None}
    root = tmp_path / "corrupt"
    _write_shard(root / "data-00000-of-00001.arrow", [_row(64, 4), corrupt])
    data = ArrowTrackDataset(root)
    data.open_arrays(0)
    with pytest.raises(ValueError, match=r"data-00000-of-00001.arrow, row 1: column 'video' is not a decodable video"):
        data.open_arrays(1)

    missing_column = pa.schema([f for f in SCHEMA if f.name != "visibles"])
    rows = [{k: v for k, v in _row(64, 5).items() if k != "visibles"}]
    _write_shard(tmp_path / "nocol" / "data-00000-of-00001.arrow", rows, missing_column)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['visibles'\]"):
        ArrowTrackDataset(tmp_path / "nocol")

    empty_tracks = _row(64, 6)
    empty_tracks["tracks"] = {"bytes": None}
    _write_shard(tmp_path / "empty" / "data-00000-of-00001.arrow", [_row(64, 7), empty_tracks])
    with pytest.raises(ValueError, match=r"row 1: column 'tracks' is empty"):
        ArrowTrackDataset(tmp_path / "empty")

    mismatched = _row(64, 8)
    mismatched["visibles"] = {"bytes": _npy(np.ones((3, FRAMES), dtype=bool))}
    _write_shard(tmp_path / "shape" / "data-00000-of-00001.arrow", [mismatched])
    with pytest.raises(ValueError, match=r"row 0: 'visibles' must be \(20, 12\)"):
        ArrowTrackDataset(tmp_path / "shape")


def test_labelled_roots_and_missing_paths_are_not_arrow(tmp_path: Path):
    assert not find_shards(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("[]")
    (tmp_path / "stray.arrow").write_bytes(b"")
    assert not find_shards(tmp_path)  # a labelled root is never walked for shards
