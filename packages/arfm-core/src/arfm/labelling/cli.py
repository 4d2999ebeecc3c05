"""``arfm label <input> <output> [options]``: pseudo-label videos into a training set (paper §3.1).

Examples::

    arfm label ../shared/data/videos/ out/labelled            # LK tracker, 1000 points per clip
    arfm label /data/calvin/task_ABC_D out/calvin --format calvin
    arfm label videos/ out/ --tracker bootstapir --tracker-checkpoint ckpt/bootstapir_checkpoint_v2.pt
    arfm label videos/ out/ --shard 0/4            # one of 4 processes / machines (1/4, 2/4, 3/4 the others)
    torchrun --nproc-per-node 8 -m arfm.labelling.cli videos/ out/ --shard env --tracker bootstapir ...
    arfm label --merge out/                        # join the shard indexes (the last shard does it itself)
"""

from __future__ import annotations

import argparse
import sys

import tyro

from arfm.data.shards import merge_shards
from arfm.errors import run_cli
from arfm.labelling.lock import OutputInUseError
from arfm.labelling.pipeline import LabelConfig, label_dataset


def parse_args(argv: list[str] | None = None) -> LabelConfig:
    """Parse ``arfm label`` arguments into a :class:`LabelConfig` (input and output are positional)."""
    return tyro.cli(
        LabelConfig,
        args=list(sys.argv[1:] if argv is None else argv),
        prog="arfm label",
        description=__doc__,
        config=(tyro.conf.PositionalRequiredArgs,),
    )


def merge_main(argv: list[str]) -> None:
    """``arfm label --merge OUTPUT``: write ``OUTPUT/manifest.json`` from its finished shards."""
    parser = argparse.ArgumentParser(prog="arfm label --merge", description="Join the shard indexes of a dataset labelled with --shard i/n.")
    parser.add_argument("output", help="the OUTPUT given to every `arfm label ... --shard i/n` run")
    args = parser.parse_args(argv)
    try:
        merged = merge_shards(args.output)
    except (FileNotFoundError, ValueError) as exc:
        print(f"arfm label --merge: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"merged {len(merged['shards'])} shards: {len(merged['clips'])} clips in {args.output}/manifest.json")


def main(argv: list[str] | None = None) -> None:
    """Run ``arfm label``; exit status 1 when nothing could be labelled (a shard whose share of
    the clips is empty is not an error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--merge" in argv:
        argv.remove("--merge")
        merge_main(argv)
        return
    cfg = parse_args(argv)
    try:
        summary = label_dataset(cfg)
    except (FileNotFoundError, ValueError, OutputInUseError) as exc:
        print(f"arfm label: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(summary.format())
    if summary.dataset_clips == 0 and not (summary.shard and summary.assigned == 0):
        raise SystemExit(1)


if __name__ == "__main__":
    run_cli(main, "arfm label")
