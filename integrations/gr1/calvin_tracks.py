"""GR-1 training tracks from ``arfm label --format calvin`` output (paper §4.4; issue 15).

One source of truth for the tracks GR-1 trains on: the labelled dataset. ``arfm label
--format calvin ROOT OUT`` writes one labelled clip per language annotation of a CALVIN split
(:mod:`arfm.data.calvin`), in the labelled-clip format (``docs/data-format.md``): frames and
tracks in **pixels of the 256 x 256 model frame**. GR-1's loader
(:class:`integrations.gr1.data.CalvinWindowDataset`) reads track sidecars
``<split>/tracks/ep_<start>_<end>.npz`` in **pixels of the static camera** (200 x 200 in CALVIN),
the frame its policy and its track conditioner work in. :func:`labelled_to_sidecars` converts
the first into the second, through :func:`arfm.coords.rescale_pixels` (the CALVIN importer
resizes the square static image to 256 x 256 with no crop, so the map is a pure scale)::

    arfm label /data/task_D_D/training runs/calvin_labelled --format calvin
    python -m integrations.gr1.calvin_tracks runs/calvin_labelled /data/task_D_D/training
    python integrations/gr1/train.py --data /data/task_D_D/training --out runs/gr1 ...

The embedded simulator writes the same sidecars directly from its exact tracks
(:mod:`integrations.gr1.sim.tracks`); both kinds are the same format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arfm.coords import rescale_pixels
from integrations.gr1.sim.tracks import save_tracks, sidecar_name

CALVIN_CLIP_ID = re.compile(r"^calvin_(?P<split>.+)_(?P<index>\d{5})_(?P<start>\d{7})-(?P<end>\d{7})$")
"""Clip ids of :class:`arfm.data.calvin.CalvinSegment`: split folder name, annotation index, frame range."""


@dataclass
class ConversionSummary:
    """What :func:`labelled_to_sidecars` did.

    Attributes:
        written: sidecar files written.
        present: sidecars already there (kept; ``overwrite`` replaces them).
        duplicates: clips whose frame range another clip already gave (first one kept).
        camera_size: side of the static camera the tracks were moved to.
    """

    written: int = 0
    present: int = 0
    duplicates: int = 0
    camera_size: int = 0


def _camera_size(split: Path, frame: int) -> int:
    path = split / f"episode_{frame:07d}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"CALVIN frame {path} not found (is {split} the split the clips were labelled from?)")
    with np.load(path) as data:
        if "rgb_static" not in data.files:
            raise ValueError(f"CALVIN frame {path} has no rgb_static")
        h, w = data["rgb_static"].shape[:2]
    if h != w:
        raise ValueError(f"{path}: rgb_static is {w}x{h}; the labelled-clip tracks can only be mapped back from a square camera")
    return int(w)


def labelled_to_sidecars(labelled: str | Path, split: str | Path, overwrite: bool = False) -> ConversionSummary:
    """Write GR-1 track sidecars into ``split/tracks`` from a labelled dataset of that split.

    Args:
        labelled: output root of ``arfm label --format calvin`` (``clips/<id>/{tracks,visible}.npy``, ``meta.json``).
        split: the CALVIN split folder the clips came from (its folder name is part of the clip ids).
        overwrite: replace sidecars that exist.

    Raises:
        FileNotFoundError: no labelled clips, or the split's frames are missing.
        ValueError: no clip of this split, a gripper-camera clip, or a clip whose frame count is not
            its annotation's (labelled with ``--frame-stride``/``--max-frames``).
    """
    labelled, split = Path(labelled), Path(split)
    clips_dir = labelled / "clips"
    if not clips_dir.is_dir():
        raise FileNotFoundError(f"no labelled clips under {clips_dir} (write them with `arfm label --format calvin`)")
    summary, seen = ConversionSummary(), set()
    for clip_dir in sorted(p for p in clips_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = CALVIN_CLIP_ID.match(clip_dir.name)
        if match is None or match["split"] != split.name or not (clip_dir / "meta.json").is_file():
            continue
        meta = json.loads((clip_dir / "meta.json").read_text())
        start, end = int(match["start"]), int(match["end"])
        if meta.get("camera", "rgb_static") != "rgb_static":
            raise ValueError(f"labelled clip {clip_dir} is from {meta['camera']}; GR-1's tracks live on rgb_static")
        if int(meta["num_frames"]) != end - start + 1:
            raise ValueError(f"labelled clip {clip_dir} has {meta['num_frames']} frames for annotation {start}..{end}; "
                             "relabel without --frame-stride/--max-frames")
        if (start, end) in seen:
            summary.duplicates += 1
            continue
        seen.add((start, end))
        if summary.camera_size == 0:
            summary.camera_size = _camera_size(split, start)
        target = split / "tracks" / sidecar_name(start, end)
        if target.exists() and not overwrite:
            summary.present += 1
            continue
        tracks = np.load(clip_dir / "tracks.npy").astype(np.float32)  # (M, T, 2) model pixels
        visible = np.load(clip_dir / "visible.npy").astype(bool)
        camera = rescale_pixels(tracks, int(meta.get("frame_size", 256)), summary.camera_size)
        save_tracks(target, camera, visible, (summary.camera_size, summary.camera_size), start, end)
        summary.written += 1
    if not seen:
        raise ValueError(f"{labelled} holds no clip labelled from the CALVIN split {split} (clip ids calvin_{split.name}_...)")
    return summary


def label_and_convert(split: str | Path, labelled: str | Path, seed: int = 0) -> ConversionSummary:
    """``arfm label --format calvin SPLIT LABELLED`` (LK, resumable: labelled clips are kept) and
    then :func:`labelled_to_sidecars`: everything GR-1 needs to train with tracks on a CALVIN split."""
    from arfm.labelling.pipeline import LabelConfig, label_dataset

    print(label_dataset(LabelConfig(input=Path(split), output=Path(labelled), format="calvin", seed=seed)).format())
    return labelled_to_sidecars(labelled, split)


def main(argv: list[str] | None = None) -> ConversionSummary:
    """``python -m integrations.gr1.calvin_tracks LABELLED SPLIT [--overwrite]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("labelled", help="output root of `arfm label --format calvin`")
    parser.add_argument("split", help="the CALVIN split folder the clips were labelled from (e.g. task_D_D/training)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sidecars")
    args = parser.parse_args(argv)
    summary = labelled_to_sidecars(args.labelled, args.split, args.overwrite)
    print(f"{summary.written} sidecars written to {Path(args.split) / 'tracks'} ({summary.present} already there, "
          f"{summary.duplicates} duplicate ranges skipped), tracks in {summary.camera_size}-px camera coordinates")
    return summary


if __name__ == "__main__":
    main()
