"""Reader of the official ARFM evaluation sets (HF ``datasets`` arrow shards) for ``arfm eval`` (§4.2).

The official UCF-101 evaluation set (``jxie/UCF_101-100_samples-100_points-50_movement_min-mwt0.5``)
is a folder of HF ``datasets`` shards (``data-0000x-of-0000n.arrow``, Arrow IPC *stream* files, as
``save_to_disk`` writes them; ``.parquet`` shards of a hub snapshot are read too). Each row:

- ``video``: an MP4 (H.264, decoded with PyAV), stored as ``{bytes, path}`` or plain bytes;
- ``tracks``: ``np.save`` bytes of a ``(N, T, 2)`` float array, ``(x, y)`` pixels of the video
  frame (the official labelling resizes every video to 256 x 256 before tracking);
- ``visibles``: ``np.save`` bytes of ``(N, T)`` bool;
- ``query_points``: ``np.save`` bytes of ``(N, 3)`` rows ``(t, x, y)`` (checked, not used: the
  window's conditioning positions are the tracks at the start frame);
- optional ``camera_motion`` (kept in the entry) and ``text`` (the caption).

:class:`ArrowTrackDataset` exposes this as a :class:`~arfm.data.dataset.LabelledDataset`, so
:func:`~arfm.data.dataset.eval_windows` applies the same evaluation filter as to our own labelled
data. Frames are brought to the 256 x 256 model frame by a plain resize, as the official code does,
and tracks follow through :func:`arfm.coords.rescale_pixels`. Only ``pyarrow`` is needed, not the
``datasets`` package.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from arfm.coords import MODEL_FRAME_SIZE, rescale_pixels
from arfm.data.clip_store import MANIFEST
from arfm.data.dataset import LabelledClip, LabelledDataset

REQUIRED_COLUMNS = ("video", "tracks", "visibles", "query_points")
SHARD_SUFFIXES = (".arrow", ".parquet")


def find_shards(path: str | Path, split: str = "all") -> list[Path]:
    """Arrow / parquet shards of an evaluation set: ``path`` itself or every shard below it, sorted.

    With ``split != "all"`` only shards inside a folder named ``split`` or named ``<split>-*`` are kept.
    ``datasets`` cache files (``cache-*.arrow``) are ignored.
    """
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix in SHARD_SUFFIXES else []
    if not path.is_dir() or (path / MANIFEST).is_file():  # a labelled dataset root: no need to walk its clips
        return []
    shards = sorted(p for p in path.rglob("*") if p.suffix in SHARD_SUFFIXES and p.is_file() and not p.name.startswith("cache-"))
    if split != "all":
        shards = [p for p in shards if split in p.relative_to(path).parts[:-1] or p.name.startswith(f"{split}-")]
    return shards


def is_arrow_dataset(path: str | Path) -> bool:
    """Whether ``path`` is an arrow/parquet evaluation set rather than a labelled dataset root."""
    return bool(find_shards(path))


def _read_table(shard: Path):
    import pyarrow as pa

    if shard.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(shard)
    source = pa.memory_map(str(shard))
    try:  # HF datasets writes the IPC *stream* format; accept the random-access file format too
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid as exc:
            raise ValueError(f"evaluation shard {shard} is neither an Arrow IPC stream/file nor parquet: {exc}") from exc


def _payload(value: object) -> bytes | None:
    """The bytes of a ``datasets`` Video / Array cell (``{"bytes": ...}`` struct or plain binary)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, (bytes, bytearray)) else None


class ArrowTrackDataset(LabelledDataset):
    """An HF-arrow evaluation set behind the :class:`LabelledDataset` interface (read lazily by row).

    Opening reads every row's ``tracks`` / ``visibles`` / ``query_points`` (small) and validates them;
    videos are decoded only by :meth:`open_arrays`. Every error names the shard and row.
    """

    def __init__(self, root: str | Path, split: str = "all") -> None:  # noqa: D107 (no super().__init__: no manifest here)
        self.root = Path(root)
        self.split = split
        shards = find_shards(self.root, split)
        if not shards:
            raise FileNotFoundError(f"no .arrow / .parquet shards found at {self.root}" + (f" for split {split!r}" if split != "all" else ""))
        self._tables: list = []
        self._rows: list[tuple[int, int]] = []  # (table index, row) per entry
        self.entries: list[dict] = []
        for shard in shards:
            table = _read_table(shard)
            missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
            if missing:
                raise ValueError(f"evaluation shard {shard}: missing column(s) {missing} (columns: {table.column_names})")
            self._tables.append((shard, table))
            stem = "_".join(shard.relative_to(self.root).with_suffix("").parts) if shard != self.root else shard.stem
            for row in range(table.num_rows):
                tracks, visible, _ = self._track_arrays(len(self._tables) - 1, row)
                entry = {"clip_id": f"{stem}-row{row:05d}", "num_frames": int(tracks.shape[1]), "num_tracks": int(tracks.shape[0]), "split": split, "fps": None}
                entry["caption"] = str(self._cell(table, "text", row) or "") if "text" in table.column_names else ""
                if "camera_motion" in table.column_names:
                    entry["camera_motion"] = self._cell(table, "camera_motion", row)
                self._rows.append((len(self._tables) - 1, row))
                self.entries.append(entry)
        if not self.entries:
            raise ValueError(f"evaluation set {self.root} holds no rows")
        self._index = {e["clip_id"]: i for i, e in enumerate(self.entries)}

    @staticmethod
    def _cell(table, column: str, row: int) -> object:
        return table.column(column)[row].as_py()

    def _where(self, table_index: int, row: int) -> str:
        return f"evaluation shard {self._tables[table_index][0]}, row {row}"

    def _array(self, table_index: int, row: int, column: str) -> np.ndarray:
        table = self._tables[table_index][1]
        data = _payload(self._cell(table, column, row))
        if data is None:
            raise ValueError(f"{self._where(table_index, row)}: column {column!r} is empty (expected np.save bytes)")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{self._where(table_index, row)}: column {column!r} is not a readable np.save array: {exc}") from exc

    def _track_arrays(self, table_index: int, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated ``tracks (N, T, 2)`` float32 (video pixels), ``visible (N, T)`` bool, ``query_points (N, 3)``."""
        where = self._where(table_index, row)
        tracks = self._array(table_index, row, "tracks")
        visible = self._array(table_index, row, "visibles")
        queries = self._array(table_index, row, "query_points")
        if tracks.ndim != 3 or tracks.shape[-1] < 2 or tracks.shape[0] == 0:
            raise ValueError(f"{where}: 'tracks' must be (N, T, 2) with N >= 1, got {tracks.shape}")
        tracks = tracks[..., :2].astype(np.float32)  # (x, y); a depth channel, if any, is not used
        if visible.shape != tracks.shape[:2]:
            raise ValueError(f"{where}: 'visibles' must be {tracks.shape[:2]} to match 'tracks', got {visible.shape}")
        if visible.dtype != np.bool_:
            if not np.isin(visible, (0, 1)).all():
                raise ValueError(f"{where}: 'visibles' holds {visible.dtype} values other than 0/1")
            visible = visible.astype(bool)
        if queries.ndim != 2 or queries.shape[0] != tracks.shape[0] or queries.shape[1] < 3:
            raise ValueError(f"{where}: 'query_points' must be (N, 3) rows (t, x, y) with N = {tracks.shape[0]}, got {queries.shape}")
        return tracks, visible, queries

    def _decode_video(self, table_index: int, row: int) -> tuple[np.ndarray, float]:
        """``(T, H, W, 3)`` uint8 RGB frames and the frame rate of a row's MP4."""
        import av

        where = self._where(table_index, row)
        data = _payload(self._cell(self._tables[table_index][1], "video", row))
        if data is None:
            raise ValueError(f"{where}: column 'video' is empty (expected MP4 bytes)")
        try:
            with av.open(io.BytesIO(data)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        except (av.error.FFmpegError, IndexError, ValueError) as exc:
            raise ValueError(f"{where}: column 'video' is not a decodable video: {exc}") from exc
        if not frames:
            raise ValueError(f"{where}: column 'video' decodes to no frames")
        return np.stack(frames), float(rate) if rate else 0.0

    def clip_dir(self, key: int | str) -> Path:
        """Where a row lives, for messages: ``<shard>#row<r>``."""
        table_index, row = self._rows[self._resolve(key)]
        return Path(f"{self._tables[table_index][0]}#row{row}")

    def open_arrays(self, key: int | str) -> dict[str, np.ndarray]:
        """``frames (T, 256, 256, 3)`` uint8, ``tracks (N, T, 2)`` float32 model-frame pixels, ``visible (N, T)``, ``query_points``.

        Also fills the entry's ``fps`` from the video stream.
        """
        index = self._resolve(key)
        table_index, row = self._rows[index]
        tracks, visible, queries = self._track_arrays(table_index, row)
        frames, fps = self._decode_video(table_index, row)
        if len(frames) != tracks.shape[1]:
            raise ValueError(f"{self._where(table_index, row)}: the video has {len(frames)} frames but 'tracks' has {tracks.shape[1]} steps")
        height, width = frames.shape[1:3]
        if (width, height) != (MODEL_FRAME_SIZE, MODEL_FRAME_SIZE):
            import cv2

            frames = np.stack([cv2.resize(f, (MODEL_FRAME_SIZE, MODEL_FRAME_SIZE), interpolation=cv2.INTER_AREA) for f in frames])
            tracks = rescale_pixels(tracks, (width, height), MODEL_FRAME_SIZE)  # plain resize, as the official code
        self.entries[index]["fps"] = fps
        return {"frames": frames, "tracks": tracks, "visible": visible, "query_points": queries}

    def load_clip(self, key: int | str) -> LabelledClip:
        """One row as a :class:`LabelledClip` (frames decoded, tracks in model-frame pixels)."""
        index = self._resolve(key)
        arrays = self.open_arrays(index)
        entry = self.entries[index]
        return LabelledClip(
            clip_id=entry["clip_id"], frames=arrays["frames"], tracks=arrays["tracks"], visible=arrays["visible"],
            fps=entry["fps"], caption=entry["caption"], source=str(self.clip_dir(index)),
        )  # fmt: skip


def open_eval_dataset(path: str | Path, split: str = "all") -> LabelledDataset:
    """A labelled dataset root or an arrow evaluation set, whichever ``path`` is."""
    if is_arrow_dataset(path):
        return ArrowTrackDataset(path, split)
    from arfm.data.dataset import open_labelled_dataset

    return open_labelled_dataset(path, split)
