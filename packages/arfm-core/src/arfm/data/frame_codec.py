"""Compact storage of a labelled clip's 256 x 256 frames, read lazily by window (paper §3.1 data).

Raw ``uint8`` frames cost 192 KiB each: the 11 MB of shared video became 565 MB of frames.
A clip's frames are therefore stored as one H.264 video, ``frames.mp4``, encoded so that:

- **errors stay at the level of a video's own compression noise.** 4:4:4 chroma (no colour
  subsampling) and a constant rate factor of 10 (``"h264"``, the default) measured a mean
  absolute error of 1.24 grey levels on the 25 shared clips, 21 times smaller than raw frames
  (``docs/data-format.md``). ``"h264-lossless"`` (RGB, QP 0) decodes bit-exactly, 4.3 times
  smaller; ``"npy"`` keeps the raw array (format 1).
- **a window decodes only its own frames, plus at most ``GOP - 1`` before them.** Keyframes are
  forced every :data:`GOP` frames (scene-cut keyframes off, no B-frames, so decode order is
  display order); a read seeks to the keyframe at or before its first frame and decodes
  forward. Frame ``i`` has the presentation time ``i / rate``, so indices never depend on the
  container's clock.
- **output is reproducible**: one encoder thread, so the same frames give the same bytes and a
  resumed labelling run is byte-identical to an uninterrupted one.

:class:`EncodedFrames` looks like the ``(T, S, S, 3)`` uint8 array it replaces (``shape``,
``len``, integer and slice indexing, ``np.asarray``), so readers treat both formats alike.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

FramesCodec = Literal["h264", "h264-lossless", "npy"]
FRAMES_CODECS = ("h264", "h264-lossless", "npy")
GOP = 8
"""Keyframe interval: a random window decodes at most ``GOP - 1`` frames it does not return."""
FRAMES_MP4 = "frames.mp4"
FRAMES_NPY = "frames.npy"
_RATE = Fraction(30)  # nominal time base only; the clip's real fps lives in meta.json

# (encoder, pixel format, encoder options) per codec name
_SETTINGS = {
    "h264": ("libx264", "yuv444p", {"crf": "10", "preset": "medium"}),
    "h264-lossless": ("libx264rgb", "rgb24", {"qp": "0", "preset": "medium"}),
}


def frames_file(codec: FramesCodec) -> str:
    """The file name a codec writes inside a clip directory."""
    check_codec(codec)
    return FRAMES_NPY if codec == "npy" else FRAMES_MP4


def check_codec(codec: str) -> str:
    """Return ``codec`` if it is one of :data:`FRAMES_CODECS`."""
    if codec not in FRAMES_CODECS:
        raise ValueError(f"unknown frames codec {codec!r}: use one of {FRAMES_CODECS}")
    return codec


def encode_frames(path: str | Path, frames: np.ndarray, codec: FramesCodec = "h264") -> dict:
    """Write ``(T, S, S, 3)`` uint8 RGB frames to ``path`` with ``codec``.

    Returns:
        The settings to record in the clip's ``meta.json`` (``{"codec", "file", ...}``).

    Raises:
        ValueError: unknown codec, bad frames, or a PyAV build without the encoder.
    """
    check_codec(codec)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames to encode must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if codec == "npy":
        np.save(path, np.ascontiguousarray(frames))
        return {"codec": codec, "file": FRAMES_NPY}
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frames to encode as {codec} need even height and width, got {frames.shape[1:3]}")
    import av

    encoder, pix_fmt, options = _SETTINGS[codec]
    if encoder not in av.codecs_available:
        raise ValueError(f"this PyAV build has no {encoder} encoder for frames codec {codec!r}; use frames codec 'npy'")
    # x264 options: fixed keyframe interval without scene-cut keyframes, no B-frames, one thread
    x264 = f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=_RATE)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.thread_count = 1
        stream.options = {**options, "x264-params": x264}
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = index
            video_frame.time_base = 1 / _RATE
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())  # flush the encoder
    return {"codec": codec, "file": FRAMES_MP4, "gop": GOP, "encoder": encoder, "pix_fmt": pix_fmt, **options}


class EncodedFrames:
    """A read-only, array-like view of ``frames.mp4`` that decodes only what is indexed.

    ``frames[i]`` is ``(S, S, 3)`` uint8, ``frames[a:b]`` is ``(n, S, S, 3)``; ``np.asarray``
    decodes everything. The file is opened per read, so the object is cheap to create, holds no
    open file or decoder, and is safe to pass to DataLoader worker processes. ``frames[i]`` keeps the
    decoded keyframe group of ``i`` (``GOP`` frames), so a loop over single frames decodes each
    frame once rather than up to ``GOP`` times.

    Args:
        path: the clip's ``frames.mp4``.
        num_frames: frames the clip holds (from its track arrays), checked against the decode.
        size: frame side in pixels.
        data: the file's bytes instead of a path (a clip read out of a tar shard).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: str | Path, num_frames: int, size: int = 256, data: bytes | None = None) -> None:
        self.path, self.data = Path(path), data
        self.shape = (int(num_frames), int(size), int(size), 3)
        self._group: tuple[int, np.ndarray] | None = None  # (first index, frames) of the last group read

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"EncodedFrames({str(self.path)!r}, shape={self.shape})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = self.read(0, len(self))
        return frames if dtype is None else frames.astype(dtype)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            index = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= index < len(self):
                raise IndexError(f"frame {key} out of range for {len(self)} frames of {self.path}")
            first = index - index % GOP
            if self._group is None or self._group[0] != first:
                self._group = (first, self.read(first, min(first + GOP, len(self))))
            return self._group[1][index - first].copy()
        if isinstance(key, slice):
            indices = range(*key.indices(len(self)))
            if not indices:
                return np.zeros((0,) + self.shape[1:], np.uint8)
            low, high = min(indices), max(indices) + 1
            block = self.read(low, high)
            return block if indices.step == 1 else block[[i - low for i in indices]]
        if isinstance(key, tuple) and key:  # frames[a:b, ..., 0]: select frames, then index within them
            selected = self[key[0]]
            return selected[key[1:]] if not isinstance(key[0], slice) else selected[(slice(None),) + key[1:]]
        raise TypeError(f"EncodedFrames indices must be integers, slices or tuples of them, got {type(key).__name__}")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Decode frames ``start .. stop - 1`` (``0 <= start < stop <= len``) as ``(n, S, S, 3)``.

        Raises:
            ValueError: the file is corrupt or holds fewer frames than the clip's tracks.
        """
        import av

        if stop <= start:
            return np.zeros((0,) + self.shape[1:], np.uint8)
        out, filled = None, 0
        try:
            with av.open(io.BytesIO(self.data) if self.data is not None else str(self.path)) as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1  # many readers run in parallel workers already
                keyframe = start - start % GOP
                if keyframe:
                    container.seek(int(keyframe / _RATE / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    index = round(frame.pts * stream.time_base * _RATE)
                    if index >= stop:
                        break
                    if index >= start:
                        pixels = frame.to_ndarray(format="rgb24")
                        if out is None:  # the stream knows the true size (a clip written at another size)
                            out = np.empty((stop - start,) + pixels.shape, np.uint8)
                            self.shape = (len(self),) + pixels.shape
                        out[index - start] = pixels
                        filled += 1
        except av.FFmpegError as exc:
            raise ValueError(f"labelled clip frames {self.path} are corrupt: {exc}") from exc
        if filled != stop - start:
            raise ValueError(f"labelled clip frames {self.path}: decoded {filled} of frames {start}..{stop - 1} (the file holds fewer frames than the tracks)")
        return out


def open_frames(clip_dir: Path, num_frames: int, size: int = 256) -> np.ndarray | EncodedFrames:
    """The frames of a clip directory, whichever format it uses (memory-mapped ``.npy`` or MP4).

    Raises:
        FileNotFoundError: the clip has neither ``frames.npy`` nor ``frames.mp4``.
        ValueError: ``frames.npy`` is corrupt.
    """
    npy = clip_dir / FRAMES_NPY
    if npy.is_file():
        try:
            return np.load(npy, mmap_mode="r")
        except ValueError as exc:
            raise ValueError(f"labelled clip file {npy} is corrupt: {exc}") from exc
    mp4 = clip_dir / FRAMES_MP4
    if mp4.is_file():
        return EncodedFrames(mp4, num_frames, size)
    raise FileNotFoundError(f"labelled clip {clip_dir} has no {FRAMES_NPY} or {FRAMES_MP4}")


def compare_datasets(raw_root: str | Path, encoded_root: str | Path, window: int = 8, repeats: int = 20) -> list[dict]:
    """Per clip: bytes on disk, decode error and time to read a ``window``-frame block, of two
    labellings of the same videos (e.g. ``arfm label --frames-codec npy`` and the default).

    Used for the table in ``docs/data-format.md``:
    ``python -m arfm.data.frame_codec RAW_ROOT ENCODED_ROOT``.
    """
    import time

    from arfm.data.dataset import open_labelled_dataset

    raw, encoded = open_labelled_dataset(raw_root), open_labelled_dataset(encoded_root)
    rng = np.random.default_rng(0)
    rows = []
    for clip_id in raw.clip_ids:
        dirs = raw.clip_dir(clip_id), encoded.clip_dir(clip_id)
        frames = [raw.open_arrays(clip_id)["frames"], encoded.open_arrays(clip_id)["frames"]]
        starts = rng.integers(0, max(1, len(frames[0]) - window + 1), repeats)
        seconds = []
        for block in frames:  # the same random windows for both formats
            begin = time.perf_counter()
            for start in starts:
                np.array(block[start : start + window])
            seconds.append((time.perf_counter() - begin) / repeats)
        error = np.abs(np.asarray(frames[0]).astype(np.int16) - np.asarray(frames[1]).astype(np.int16))
        rows.append({
            "clip_id": clip_id, "frames": len(frames[0]),
            "bytes": [sum(f.stat().st_size for f in d.iterdir()) for d in dirs],
            "mean_abs_error": float(error.mean()), "window_ms": [1e3 * s for s in seconds],
        })
    return rows


if __name__ == "__main__":
    import sys

    results = compare_datasets(sys.argv[1], sys.argv[2])
    print("| clip | frames | raw MB | encoded MB | ratio | mean abs error | 8-frame window raw / encoded ms |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        (a, b), (ta, tb) = row["bytes"], row["window_ms"]
        print(f"| {row['clip_id']} | {row['frames']} | {a / 1e6:.2f} | {b / 1e6:.2f} | {a / b:.1f}x | {row['mean_abs_error']:.2f} | {ta:.2f} / {tb:.1f} |")
    total = np.sum([r["bytes"] for r in results], axis=0)
    frames = sum(r["frames"] for r in results)
    error = sum(r["mean_abs_error"] * r["frames"] for r in results) / frames
    times = np.mean([r["window_ms"] for r in results], axis=0)
    print(f"| all {len(results)} clips | {frames} | {total[0] / 1e6:.1f} | {total[1] / 1e6:.1f} | {total[0] / total[1]:.1f}x | {error:.2f} | {times[0]:.2f} / {times[1]:.1f} |")
