"""Labelling in shards on many processes or machines, and merging the shards into one index (§3.1).

``arfm label <input> <output> --shard i/n`` labels the ``i``-th of ``n`` disjoint subsets of the
clips into ``<output>/shards/<i>-of-<n>/``, itself a complete dataset root with its own
``clips/``, ``manifest.json`` and lock, so ``n`` runs (GPUs, machines sharing a file system,
or ranks of ``torchrun`` / ``accelerate launch`` with ``--shard env``) never touch each other's
files. A clip's shard is a hash of its id (:func:`shard_of`), so it does not depend on which
other clips exist, and adding videos later never moves a labelled clip to another shard.

:func:`merge_shards` joins the shard manifests into ``<output>/manifest.json``, whose entries
name their shard; :class:`arfm.data.dataset.LabelledDataset` reads it like any dataset. The run
that finishes last merges automatically; ``arfm label --merge <output>`` merges by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from arfm.atomic import write_text_atomic
from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.clip_store import CLIPS_DIR, FORMAT_VERSION, MANIFEST, SHARDS_DIR, read_manifest, shard_dirs


_SHARD_NAME = re.compile(r"^\d{5}-of-\d{5}$")


class IncompleteShardsError(FileNotFoundError):
    """Some shards have not finished a labelling run yet; the message names them."""


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``"env"`` reads ``RANK`` / ``WORLD_SIZE``
    (set by ``torchrun`` and ``accelerate launch``).

    Raises:
        ValueError: a malformed spec, or ``env`` outside a launcher.
    """
    if spec == "env":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ValueError("shard 'env' needs the RANK and WORLD_SIZE environment variables (run under torchrun or accelerate launch)")
        spec = f"{os.environ['RANK']}/{os.environ['WORLD_SIZE']}"
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"shard must be 'i/n' (e.g. 0/4) or 'env', got {spec!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"shard {spec!r}: need 0 <= i < n")
    return index, count


def shard_of(clip_id: str, count: int) -> int:
    """The shard (``0 .. count - 1``) that labels ``clip_id``: a stable hash of the id alone.

    Uses other bits of SHA-1 than :func:`arfm.data.clip_store.split_of`, so a shard's clips
    are not biased towards either split.
    """
    return int(hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[8:16], 16) % count


def shard_name(index: int, count: int) -> str:
    """Directory name of shard ``index`` of ``count`` (``00003-of-00008``)."""
    return f"{index:05d}-of-{count:05d}"


def shard_root(root: str | Path, index: int, count: int) -> Path:
    """The dataset root that shard ``index`` of ``count`` writes."""
    return Path(root) / SHARDS_DIR / shard_name(index, count)


def merge_shards(root: str | Path) -> dict:
    """Join the manifests of every shard under ``root/shards`` into ``root/manifest.json``.

    Reads only the shard manifests (not the clips), so it is cheap for any number of clips.
    The merged entries are sorted by clip id and carry ``"shard"``; ``"shards"`` lists the shard
    names and ``"last_run"`` the union of the shards' failures.

    Returns:
        The merged manifest.

    Raises:
        FileNotFoundError: ``root`` has no shards.
        IncompleteShardsError: a shard of the set is missing or has no manifest yet (named).
        ValueError: shards of different counts, split settings or frame sizes, or a clip id in
            two shards (named), or clips outside the shards.
    """
    root = Path(root)
    shards = shard_dirs(root)
    if not shards:
        raise FileNotFoundError(f"{root} has no {SHARDS_DIR}/ to merge (label it with `arfm label ... --shard i/n`)")
    if (root / CLIPS_DIR).is_dir() and any(not p.name.startswith(".") for p in (root / CLIPS_DIR).iterdir()):
        raise ValueError(f"{root} holds clips both in {CLIPS_DIR}/ and in {SHARDS_DIR}/; label one output either unsharded or in shards")
    strays = [p.name for p in shards if not _SHARD_NAME.fullmatch(p.name)]
    if strays:
        raise ValueError(f"{root}/{SHARDS_DIR} holds folders that are not shards ({strays}); shards are named like {shard_name(0, 4)}")
    counts = {name.split("-of-")[-1] for name in (p.name for p in shards)}
    if len(counts) != 1:
        raise ValueError(f"{root}/{SHARDS_DIR} mixes shard counts {sorted(counts)}; merge needs one set of n shards")
    count = int(counts.pop())
    expected = [shard_name(i, count) for i in range(count)]
    missing = [name for name in expected if not (root / SHARDS_DIR / name / MANIFEST).is_file()]
    if missing:
        raise IncompleteShardsError(f"{root}: shards {missing} have not finished (no {MANIFEST}); run them, then `arfm label --merge {root}`")
    entries, failed, owner, settings = [], [], {}, set()
    for name in expected:
        shard = root / SHARDS_DIR / name
        manifest = json.loads((shard / MANIFEST).read_text(encoding="utf-8"))
        settings.add((manifest.get("val_fraction", 0.0), manifest.get("frame_size", MODEL_FRAME_SIZE)))
        failed += manifest.get("last_run", {}).get("failed", [])
        for entry in read_manifest(shard):  # validated: ids are directory names
            if entry["clip_id"] in owner:
                raise ValueError(f"{root}: clip {entry['clip_id']!r} is in shards {owner[entry['clip_id']]} and {name}")
            owner[entry["clip_id"]] = name
            entries.append({**entry, "shard": name})
    if len(settings) != 1:
        raise ValueError(f"{root}: shards were labelled with different (val_fraction, frame_size): {sorted(settings)}")
    val_fraction, frame_size = settings.pop()
    merged = {
        "format_version": FORMAT_VERSION,
        "frame_size": frame_size,
        "val_fraction": val_fraction,
        "shards": expected,
        "clips": sorted(entries, key=lambda e: e["clip_id"]),
        "last_run": {"merged_shards": count, "failed": failed},
    }
    write_text_atomic(root / MANIFEST, json.dumps(merged, indent=1))
    return merged


def try_merge_shards(root: str | Path) -> dict | None:
    """:func:`merge_shards` when every shard has finished, else ``None`` (another run will)."""
    try:
        return merge_shards(root)
    except IncompleteShardsError:
        return None
