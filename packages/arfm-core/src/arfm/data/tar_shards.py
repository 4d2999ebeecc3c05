"""Streaming shards: a labelled dataset packed into tar files with one index (paper §3.1 data at scale).

A folder of clip folders suits one disk. For collections read from object storage or a network
file system, :func:`pack_tar_shards` packs a dataset into ``shard-00000.tar, shard-00001.tar, ...``
of ``clips_per_shard`` clips each, plus ``index.json``. Each tar holds the clip folders'
files unchanged (``<clip_id>/meta.json``, ``tracks.npy``, ``visible.npy``, ``movement.npy``,
then ``frames.mp4`` or ``frames.npy``), uncompressed, so a shard can be read two ways:

- **sequentially**, without seeking (a pipe, an HTTP stream): :func:`iter_tar_shard` yields one
  :class:`~arfm.data.dataset.LabelledClip` per clip as its last member arrives;
- **at random**: :class:`TarShardDataset` (what :func:`~arfm.data.dataset.open_labelled_dataset`
  returns for a folder with this ``index.json``) memory-maps each ``.npy`` member at the byte
  offset the index records, and decodes ``frames.mp4`` from its bytes, so training windows and
  ``eval_windows`` read a tar set like a clip folder dataset.

The tars are byte-reproducible (members in a fixed order, zero times and owners).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from arfm.atomic import atomic_path, write_text_atomic
from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.clip_store import FORMAT_VERSION, TRACK_ARRAYS, check_clip_id
from arfm.data.dataset import LabelledClip, LabelledDataset, open_labelled_dataset
from arfm.data.frame_codec import FRAMES_MP4, FRAMES_NPY, EncodedFrames

INDEX = "index.json"
INDEX_KIND = "arfm-tar-shards"
_MEMBERS = ("meta.json",) + TRACK_ARRAYS  # then the frames file, last: a streamed clip is complete when it arrives


def is_tar_shard_set(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`pack_tar_shards`."""
    index = Path(path) / INDEX
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("kind") == INDEX_KIND
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def _add(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
    with open(path, "rb") as handle:
        tar.addfile(info, handle)


def pack_tar_shards(root: str | Path, out: str | Path, clips_per_shard: int = 256) -> dict:
    """Pack the labelled dataset at ``root`` (plain or sharded) into tar shards under ``out``.

    Args:
        root: a labelled dataset root.
        out: folder to write ``shard-XXXXX.tar`` files and ``index.json`` into.
        clips_per_shard: clips per tar file.

    Returns:
        The index (also written to ``out/index.json``, last, atomically).
    """
    if clips_per_shard < 1:
        raise ValueError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
    data = open_labelled_dataset(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, files = [], []
    for first in range(0, len(data), clips_per_shard):
        name = f"shard-{first // clips_per_shard:05d}.tar"
        keys = range(first, min(first + clips_per_shard, len(data)))
        with atomic_path(out / name) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for key in keys:
                    clip_dir = data.clip_dir(key)
                    frames = FRAMES_MP4 if (clip_dir / FRAMES_MP4).is_file() else FRAMES_NPY
                    for member in _MEMBERS + (frames,):
                        _add(tar, f"{data.entries[key]['clip_id']}/{member}", clip_dir / member)
            with tarfile.open(tmp, "r") as tar:  # where each member's bytes start, for random access
                offsets = {m.name: [m.offset_data, m.size] for m in tar.getmembers()}
        for key in keys:
            entry = dict(data.entries[key])
            entry.pop("shard", None)
            prefix = f"{entry['clip_id']}/"
            entry["tar"] = name
            entry["members"] = {k[len(prefix):]: v for k, v in offsets.items() if k.startswith(prefix)}
            entries.append(entry)
        files.append(name)
    index = {"kind": INDEX_KIND, "format_version": FORMAT_VERSION, "frame_size": MODEL_FRAME_SIZE, "tars": files, "clips": entries}
    write_text_atomic(out / INDEX, json.dumps(index, indent=1))
    return index


def _npy_at(path: Path, offset: int) -> np.ndarray:
    """Memory-map the ``.npy`` file that starts at byte ``offset`` of ``path``."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        start = handle.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order="F" if fortran else "C")


class TarShardDataset(LabelledDataset):
    """Random access to a tar shard set through the :class:`LabelledDataset` interface.

    Args:
        root: the folder holding ``index.json`` and the tars.
        split: ``"train"``, ``"val"`` or ``"all"``.
    """

    def __init__(self, root: str | Path, split: str = "all") -> None:  # noqa: D107 (the index replaces the manifest)
        self.root, self.split = Path(root), split
        index_path = self.root / INDEX
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            entries = list(index["clips"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"tar shard index {index_path} is missing or corrupt: {exc}") from exc
        for number, entry in enumerate(entries):
            try:
                check_clip_id(entry["clip_id"])
                check_clip_id(entry["tar"])  # a plain file name inside root
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"tar shard index {index_path}: clip entry {number}: {exc}") from None
        if split != "all":
            entries = [e for e in entries if e["split"] == split]
        if not entries:
            raise ValueError(f"tar shard set {self.root} has no clips" + (f" in split {split!r}" if split != "all" else ""))
        self.entries = entries
        self._index = {e["clip_id"]: i for i, e in enumerate(entries)}

    def clip_dir(self, key: int | str) -> Path:
        """Where a clip lives, for messages: ``<tar>#<clip_id>``."""
        entry = self.entries[self._resolve(key)]
        return Path(f"{self.root / entry['tar']}#{entry['clip_id']}")

    def open_arrays(self, key: int | str) -> dict[str, np.ndarray]:
        """Memory-mapped track arrays, and the frames (memory-mapped, or decoded on indexing)."""
        entry = self.entries[self._resolve(key)]
        tar, members = self.root / entry["tar"], entry["members"]
        arrays = {name[:-4]: _npy_at(tar, members[name][0]) for name in TRACK_ARRAYS}
        if FRAMES_MP4 in members:
            offset, size = members[FRAMES_MP4]
            with open(tar, "rb") as handle:
                handle.seek(offset)
                data = handle.read(size)
            arrays["frames"] = EncodedFrames(self.clip_dir(key), entry["num_frames"], data=data)
        else:
            arrays["frames"] = _npy_at(tar, members[FRAMES_NPY][0])
        return arrays

    def load_clip(self, key: int | str) -> LabelledClip:
        """A clip, its metadata taken from the index."""
        entry = self.entries[self._resolve(key)]
        arrays = self.open_arrays(key)
        return LabelledClip(
            clip_id=entry["clip_id"], frames=arrays["frames"], tracks=np.asarray(arrays["tracks"], dtype=np.float32),
            visible=np.asarray(arrays["visible"], dtype=bool), fps=float(entry["fps"]),
            caption=str(entry.get("caption") or ""), source=str(entry.get("source") or ""),
        )  # fmt: skip


def iter_tar_shard(source: str | Path | IO[bytes]) -> Iterator[LabelledClip]:
    """Read one tar shard front to back without seeking, one clip at a time.

    Args:
        source: a tar path or a readable binary stream (a pipe, an HTTP response body).

    Yields:
        :class:`LabelledClip` objects whose frames decode from memory when indexed.

    Raises:
        ValueError: a member out of the packer's order, or a corrupt member (named).
    """
    opened = tarfile.open(source, "r|") if isinstance(source, (str, Path)) else tarfile.open(fileobj=source, mode="r|")
    with opened as tar:
        clip_id, files = None, {}
        for member in tar:
            folder, _, name = member.name.partition("/")
            if folder != clip_id:
                if files:
                    raise ValueError(f"tar shard {source}: clip {clip_id} ends without its frames file")
                clip_id, files = folder, {}
            files[name] = tar.extractfile(member).read()
            if name not in (FRAMES_MP4, FRAMES_NPY):
                continue
            meta = json.loads(files["meta.json"])
            tracks, visible = (np.load(io.BytesIO(files[f"{k}.npy"]), allow_pickle=False) for k in ("tracks", "visible"))
            if name == FRAMES_MP4:
                frames = EncodedFrames(Path(f"{source}#{clip_id}"), tracks.shape[1], meta.get("frame_size", 256), data=files[name])
            else:
                frames = np.load(io.BytesIO(files[name]), allow_pickle=False)
            yield LabelledClip(
                clip_id=meta["clip_id"], frames=frames, tracks=tracks.astype(np.float32), visible=visible.astype(bool),
                fps=float(meta["fps"]), caption=str(meta.get("caption", "")), source=str(meta.get("source", "")),
            )  # fmt: skip
            clip_id, files = None, {}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m arfm.data.tar_shards", description="Pack a labelled dataset into tar shards + index.json.")
    parser.add_argument("root", help="labelled dataset root (plain or labelled in shards)")
    parser.add_argument("out", help="folder for shard-XXXXX.tar and index.json")
    parser.add_argument("--clips-per-shard", type=int, default=256)
    args = parser.parse_args()
    packed = pack_tar_shards(args.root, args.out, args.clips_per_shard)
    print(f"packed {len(packed['clips'])} clips into {len(packed['tars'])} tar shards in {args.out}")
