"""Evaluate one row of Table 3 for one GR-1 seed, so rows can run in parallel processes.

    python experiments/table3_row.py experiments/configs/table3_oracle.json "GR-1 + ground-truth tracks (oracle)" 0 [ARFM_CKPT]

Same function (`table3.evaluate_row`), arguments and output folder (`<out>/eval/gr1_seed<seed>/<row>`)
as `experiments/table3.py` uses for each row; the GR-1 checkpoint must already be trained at
`<out>/gr1_seed<seed>/checkpoint`. The optional last argument replaces `{ckpt:arfm}` in the row's
track spec (an external ARFM checkpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from table3 import Table3Config, evaluate_row, resolve, slug  # noqa: E402


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        raise SystemExit(__doc__)
    cfg = Table3Config.from_json(argv[0])
    label, seed = argv[1], int(argv[2])
    if label not in cfg.rows:
        raise SystemExit(f"table3_row: error: row {label!r} is not in {argv[0]} (rows: {', '.join(cfg.rows)})")
    out, name = resolve(cfg.out), f"gr1_seed{seed}"
    tracks = cfg.rows[label]
    if len(argv) == 4:
        tracks = tracks.replace("{ckpt:arfm}", argv[3])
    result, seconds = evaluate_row(out / name / "checkpoint", tracks, cfg.eval, label, out / "eval" / name / slug(label))
    print(label, result["success_rates"], result["avg_len"], round(seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
