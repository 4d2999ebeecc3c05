"""Table 3 helper: does each trained GR-1 seed use its track token? (``integrations.gr1.diagnostics``)

The arm-action error of a policy with ground-truth, no and shuffled tracks on held-out
demonstrations, run by ``experiments/table3.py`` after every GR-1 training and printed under the
table: a cheap learning signal to read before the closed-loop success rates.
"""

from __future__ import annotations

import json
from pathlib import Path

from stages import same_record, write_text_atomic


def diagnose_gr1(ckpt: Path, plain: Path | None, data: Path, windows: int, out: Path) -> dict[str, float]:
    """The track-sensitivity check of one seed's policy on ``data`` (reused when unchanged):
    arm-action error with ground-truth / no / shuffled tracks (and of the plain GR-1)."""
    from integrations.gr1.data import CalvinWindowDataset
    from integrations.gr1.diagnostics import track_sensitivity
    from integrations.gr1.modeling_gr1 import GR1Policy

    wanted = {"checkpoint": str(ckpt), "checkpoint_args": json.loads((ckpt / "train_args.json").read_text()),
              "plain": None if plain is None else json.loads((plain / "train_args.json").read_text()),
              "data": str(data.resolve()), "windows": windows}
    if same_record(out / "diagnostic_spec.json", wanted) and (out / "diagnostic.json").is_file():
        return json.loads((out / "diagnostic.json").read_text())
    policy = GR1Policy.from_pretrained(ckpt)
    c = policy.config
    dataset = CalvinWindowDataset(data, window=c.window, video_offset=c.video_offset, track_len=c.track_len, with_tracks=True,
                                  track_frame_size=c.track_frame_size, max_points=wanted["checkpoint_args"]["max_points"])
    result = track_sensitivity(policy, dataset, windows, seed=0, plain=None if plain is None else GR1Policy.from_pretrained(plain))
    write_text_atomic(out / "diagnostic.json", json.dumps(result, indent=1))
    write_text_atomic(out / "diagnostic_spec.json", json.dumps(wanted))
    return result


def format_diagnostics(per_seed: dict[int, dict[str, float]], data: str) -> str:
    """Markdown lines of the per-seed track-sensitivity numbers."""
    keys = [k for k in ("error_gt", "error_none", "error_shuffled", "error_plain", "change_gt_vs_none", "change_gt_vs_shuffled",
                        "action_scale") if any(k in r for r in per_seed.values())]
    lines = [f"Track sensitivity of each GR-1 seed on {data} (`integrations.gr1.diagnostics`; arm L1, demonstrated scale "
             "`action_scale`):", "", "| seed | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for seed, r in per_seed.items():
        lines.append(f"| {seed} | " + " | ".join(f"{r[k]:.4f}" if k in r else "—" for k in keys) + " |")
    return "\n".join(lines)
