"""Evaluate CHOIS with swappable track predictors: the Table 2 layout of the ARFM paper (§4.3).

    python integrations/chois/eval.py --checkpoint runs/chois_tiny/checkpoint --tracks none gt no-movement arfm:<ckpt>

Every predictor is built by name through :func:`arfm.predictors.build_predictor`; the same CHOIS
checkpoint (trained on ground-truth tracks) is used for all rows. Each test window's first frame
is rendered from the window's camera and handed to the predictor with the query points (the
tracks' first positions); the predicted horizon, prefixed by the query points, is encoded.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make the workspace root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tyro

from integrations.chois.train import DEFAULT_MOCAP, REPO, ensure_data

if TYPE_CHECKING:  # torch-heavy: imported where used, so `--help` starts fast
    from arfm.predictors import TrackPredictor
    from integrations.chois.data.fbm_dataset import FbmWindowDataset
    from integrations.chois.modeling_chois import ChoisModel


@dataclass
class EvalArgs:
    """Command-line options.

    Attributes:
        checkpoint: CHOIS checkpoint folder (from ``train.py``).
        tracks: predictor specs, one table row each (``none``, ``gt``, ``no-movement``, ``arfm:<ckpt>``, ...).
        data: FullBodyManipulation-format folder; built from ``mocap`` when it has no data yet.
        mocap: BVH folder for the embedded default.
        smplx_dir: SMPL-X model folder (real data); ``None`` for the mocap proxy.
        evaluator: TorchScript text-motion evaluator for R_prec/FID; skipped when absent.
        max_windows: evaluate at most this many test windows (0 = all).
        seed: sampling seed (the same noise for every row).
        guidance: apply CHOIS guidance in the last sampling steps.
        out: folder for ``table2.md`` and ``table2.json``.
    """

    checkpoint: Path
    tracks: list[str] = field(default_factory=lambda: ["none", "gt"])
    data: Path = REPO / "runs" / "chois_data"
    mocap: Path = DEFAULT_MOCAP
    smplx_dir: Path | None = None
    evaluator: Path | None = None
    max_windows: int = 0
    seed: int = 0
    guidance: bool = True
    out: Path = REPO / "runs" / "chois_eval"


def evaluate_predictor(model: ChoisModel, dataset: FbmWindowDataset, predictor: TrackPredictor, max_windows: int, seed: int, guidance: bool, evaluator=None) -> dict[str, float | str]:
    """Mean Table 2 metrics of one track predictor over the test windows."""
    import torch
    from tqdm import tqdm

    from arfm.predictors import PredictionRequest
    from integrations.chois.data.fbm_dataset import collate_items
    from integrations.chois.evaluator import frechet_distance, r_precision
    from integrations.chois.metrics import window_metrics
    from integrations.chois.representation import unpack_motion

    cfg = model.config
    count = len(dataset) if max_windows <= 0 else min(max_windows, len(dataset))
    rows, gen_motions, real_motions, captions = [], [], [], []
    for i in tqdm(range(count), desc=f"eval tracks={predictor.name}"):
        item = dataset[i]
        batch = collate_items([item])
        tracks, visible = item["tracks"], item["track_visible"]
        request = PredictionRequest(
            frames=item["frame0"][None], observed_tracks=tracks[:, :1], observed_visible=visible[:, :1], caption=item["caption"],
            horizon=cfg.track_horizon, num_samples=1, future_tracks=tracks[:, 1:], future_visible=visible[:, 1:],
        )
        future = predictor.predict(request)
        cond_tracks = None if future is None else torch.cat([tracks[None, :, :1], future[:1].to(tracks)], dim=2)
        motion = model.sample(batch, cond_tracks, torch.Generator().manual_seed(seed + i), guidance=guidance)[0]
        pred, gt = unpack_motion(motion.double()), unpack_motion(item["motion"].double())
        gt_contact = item["motion"][:, -4:-2].bool().any(dim=1)
        rows.append(window_metrics(pred, gt, item["half_extents"].double(), gt_contact, cfg.waypoint_every))
        gen_motions.append(motion)
        real_motions.append(item["motion"])
        captions.append(item["caption"])
    result: dict[str, float | str] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    if evaluator is None:
        result["R_prec"] = result["FID"] = "skipped"
    else:
        with torch.no_grad():
            text = evaluator.encode_text(captions)
            gen = evaluator.encode_motion(torch.stack(gen_motions))
            real = evaluator.encode_motion(torch.stack(real_motions))
        result["R_prec"] = r_precision(text, gen)
        result["FID"] = frechet_distance(real, gen)
    return result


def format_table(results: dict[str, dict[str, float | str]], body_model: str) -> str:
    """Markdown table in the Table 2 column order, units in the header."""
    from integrations.chois.metrics import TABLE2_COLUMNS, UNITS

    header = "| Tracks | " + " | ".join(f"{c} ({UNITS[c]})" for c in TABLE2_COLUMNS) + " |"
    lines = [f"Body model: {body_model}", "", header, "|" + "---|" * (len(TABLE2_COLUMNS) + 1)]
    for spec, res in results.items():
        cells = [f"{res[c]:.3f}" if isinstance(res[c], float) else str(res[c]) for c in TABLE2_COLUMNS]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: prints the table and writes ``table2.md`` / ``table2.json``."""
    args = tyro.cli(EvalArgs, args=argv)
    from arfm.predictors import build_predictor
    from integrations.chois.checkpointing import load_checkpoint
    from integrations.chois.data.fbm_dataset import FbmWindowDataset
    from integrations.chois.evaluator import load_evaluator
    from integrations.chois.metrics import UNITS

    model = load_checkpoint(args.checkpoint, use_tracks=True)
    dataset = FbmWindowDataset(ensure_data(args.data, args.mocap), "test", model.config, smplx_dir=args.smplx_dir, render=True)
    evaluator = None
    try:
        evaluator = load_evaluator(args.evaluator)
    except FileNotFoundError as exc:
        print(f"note: {exc}", file=sys.stderr)
    predictors = {spec: build_predictor(spec) for spec in args.tracks}  # fail fast on a bad spec or checkpoint
    results = {spec: evaluate_predictor(model, dataset, p, args.max_windows, args.seed, args.guidance, evaluator) for spec, p in predictors.items()}
    body_model = dataset.sequences[0]["body_model"]
    table = format_table(results, body_model)
    print(table)
    _write_atomic(args.out / "table2.md", table + "\n")
    _write_atomic(args.out / "table2.json", json.dumps({"checkpoint": str(args.checkpoint), "body_model": body_model, "units": UNITS, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    from arfm.errors import run_cli

    run_cli(main, "chois eval")
