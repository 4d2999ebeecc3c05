"""``arfm label <input> <output> [options]``: pseudo-label videos into a training set (paper §3.1).

Examples::

    arfm label ../shared/data/videos/ out/labelled            # LK tracker, 1000 points per clip
    arfm label /data/calvin/task_ABC_D out/calvin --format calvin
    arfm label videos/ out/ --tracker bootstapir --tracker-checkpoint ckpt/bootstapir_checkpoint_v2.pt
"""

from __future__ import annotations

import sys
import tyro

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


def main(argv: list[str] | None = None) -> None:
    """Run ``arfm label``; exit status 1 when nothing could be labelled."""
    cfg = parse_args(argv)
    try:
        summary = label_dataset(cfg)
    except (FileNotFoundError, ValueError) as exc:
        print(f"arfm label: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(summary.format())
    if summary.dataset_clips == 0:
        raise SystemExit(1)
