"""Video decoding, the 256 x 256 transform and its point map, and read errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from arfm.data.video import FrameTransform, VideoReadError, read_video


def write_mp4(path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def moving_square_frames(num: int = 6, width: int = 96, height: int = 64) -> np.ndarray:
    frames = np.zeros((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, 20:36, 10 + 4 * t : 26 + 4 * t] = (250, 40, 40)
    return frames


@pytest.mark.parametrize("mode", ["center_crop", "letterbox", "resize"])
def test_transform_maps_points_with_the_pixels(mode):
    # a single bright pixel must land where apply_points sends its centre
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[30, 70] = 255
    transform = FrameTransform(width=100, height=60, mode=mode, size=256)
    out = transform(frame).astype(np.float64)[..., 0]
    assert out.shape == (256, 256)
    ys, xs = np.nonzero(out)
    weights = out[ys, xs]
    centroid = np.array([(xs + 0.5) @ weights, (ys + 0.5) @ weights]) / weights.sum()
    mapped = transform.apply_points(np.array([70.5, 30.5]))
    np.testing.assert_allclose(mapped, centroid, atol=0.6)
    np.testing.assert_allclose(transform.invert_points(mapped), [70.5, 30.5], atol=1e-4)


def test_transform_hand_computed_center_crop():
    t = FrameTransform(width=320, height=240, mode="center_crop", size=256)
    # crop x in [40, 280), scale 256 / 240
    np.testing.assert_allclose(t.apply_points(np.array([[40.0, 0.0], [280.0, 240.0]])), [[0, 0], [256, 256]], atol=1e-4)
    with pytest.raises(ValueError, match="mode"):
        FrameTransform(width=10, height=10, mode="zoom")


def test_read_mp4_gif_and_frame_folder(tmp_path):
    frames = moving_square_frames()
    clip = read_video(write_mp4(tmp_path / "a.mp4", frames), "center_crop")
    assert clip.frames.shape == (6, 256, 256, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(12.0) and clip.original_size == (96, 64)
    # GIF: the rate comes from the frame durations (50 ms -> 20 fps)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "b.gif", save_all=True, append_images=images[1:], duration=50, loop=0)
    gif = read_video(tmp_path / "b.gif")
    assert gif.frames.shape == (6, 64, 96, 3) and gif.fps == pytest.approx(20.0)
    np.testing.assert_allclose(gif.frames[2, 28, 20], [250, 40, 40], atol=30)
    # frame folder in natural order (frame2 before frame10)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        cv2.imwrite(str(folder / f"frame{[10, 2, 1][t]}.png"), np.full((8, 8, 3), [10, 2, 1][t] * 20, np.uint8))
    seq = read_video(folder, default_fps=7.0, frame_stride=1)
    assert [int(f[0, 0, 0]) for f in seq.frames] == [20, 40, 200] and seq.fps == 7.0
    strided = read_video(write_mp4(tmp_path / "c.mp4", frames), frame_stride=2, max_frames=2)
    assert len(strided.frames) == 2 and strided.fps == pytest.approx(6.0)


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        read_video(bad)
    badgif = tmp_path / "corrupt.gif"
    badgif.write_bytes(b"GIF89a garbage")
    with pytest.raises(VideoReadError, match="corrupt.gif"):
        read_video(badgif)
    with pytest.raises(VideoReadError, match="does not exist"):
        read_video(tmp_path / "missing.avi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no JPEG/PNG"):
        read_video(tmp_path / "empty")
    (tmp_path / "notes.doc").write_text("x")
    with pytest.raises(VideoReadError, match="unsupported file type"):
        read_video(tmp_path / "notes.doc")
    folder = tmp_path / "broken_frames"
    folder.mkdir()
    (folder / "0001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(VideoReadError, match="0001.png"):
        read_video(folder)


def test_real_shared_clip_decodes(shared_data):
    clip = read_video(shared_data / "videos/robot/bridge_data_v1_berkeley_toysink1_room8052_flip_pot_upright_which_is_in_sink.mp4", "center_crop")
    assert clip.frames.shape == (20, 256, 256, 3) and clip.fps == pytest.approx(15.0)
