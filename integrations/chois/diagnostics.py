"""Does a trained CHOIS model use its track branch? A check for Table 2 runs (not in the paper).

For every test window and diffusion step, the denoiser predicts the clean motion from the same
noisy input three times: with the window's ground-truth tracks, without tracks, and with another
window's tracks (shuffled). Reported: the error of each prediction against the true motion
(normalised units, as the L1 training loss), how far the predictions move between them, and how
large the track feature is next to the text feature it is added to. A model whose predictions
do not move has learnt to ignore its tracks: no track predictor can then change a Table 2 row.

    python -m integrations.chois.diagnostics --checkpoint runs/experiments/table2/chois_seed0/checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from integrations.chois.data.fbm_dataset import FbmWindowDataset, collate_items
from integrations.chois.modeling_chois import ChoisModel


@torch.no_grad()
def track_sensitivity(model: ChoisModel, dataset: FbmWindowDataset, max_windows: int = 0, seed: int = 0) -> dict[str, float]:
    """One-step clean-motion predictions with true / no / shuffled tracks, at every diffusion step.

    Args:
        model: a CHOIS model with the track branch.
        dataset: windows with ``tracks`` (e.g. the test split).
        max_windows: at most this many windows (0 = all).
        seed: the noise of the noisy inputs (the same for the three predictions).

    Returns:
        ``error_gt``, ``error_none``, ``error_shuffled`` (mean |predicted - true| normalised
        motion), ``change_gt_vs_none``, ``change_gt_vs_shuffled`` (mean |difference| of the
        predictions) and ``feature_ratio`` (mean norm of the projected track feature over the
        norm of the text feature).
    """
    if not model.config.use_tracks:
        raise ValueError("this CHOIS model has no track branch (use_tracks=False): nothing to measure")
    count = len(dataset) if max_windows <= 0 else min(max_windows, len(dataset))
    if count < 2:
        raise ValueError(f"track_sensitivity needs at least 2 windows to shuffle tracks, got {count}")
    model.eval()
    batch = collate_items([dataset[i] for i in range(count)])
    den, steps = model.denoiser, model.config.diffusion_steps
    x0 = model.normalize(batch["motion"])
    cond = model._inputs(batch["motion"])
    tracks = batch["tracks"]
    text = den.encode_context(batch["caption"])
    contexts = {"gt": den.encode_context(batch["caption"], tracks), "none": text,
                "shuffled": den.encode_context(batch["caption"], torch.roll(tracks, 1, dims=0))}
    generator = torch.Generator().manual_seed(seed)
    sums = {k: 0.0 for k in ("error_gt", "error_none", "error_shuffled", "change_gt_vs_none", "change_gt_vs_shuffled")}
    for step in range(steps):
        t = torch.full((count,), step, dtype=torch.long)
        ab = model.alphas_cumprod[t][:, None, None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=generator)
        pred = {name: den(x_t, t, cond, batch["bps"], ctx) for name, ctx in contexts.items()}
        for name in ("gt", "none", "shuffled"):
            sums[f"error_{name}"] += float((pred[name] - x0).abs().mean())
        sums["change_gt_vs_none"] += float((pred["gt"] - pred["none"]).abs().mean())
        sums["change_gt_vs_shuffled"] += float((pred["gt"] - pred["shuffled"]).abs().mean())
    out = {k: v / steps for k, v in sums.items()}
    out["feature_ratio"] = float(((contexts["gt"] - text).norm(dim=-1) / text.norm(dim=-1).clamp(min=1e-12)).mean())
    return out


@dataclass
class SensitivityArgs:
    """Measure how much a CHOIS checkpoint's predictions depend on its tracks.

    Attributes:
        checkpoint: CHOIS checkpoint folder (``integrations/chois/train.py``).
        data: FullBodyManipulation-format folder (the embedded one by default).
        split: which windows (``test``: subjects 16-17).
        max_windows: at most this many windows (0 = all).
        seed: noise seed.
    """

    checkpoint: Path
    data: Path = Path(__file__).resolve().parents[2] / "runs" / "chois_data"
    split: str = "test"
    max_windows: int = 0
    seed: int = 0


def main(args: SensitivityArgs) -> dict[str, float]:
    """Print the numbers as a one-row markdown table and return them."""
    from integrations.chois.checkpointing import load_checkpoint

    model = load_checkpoint(args.checkpoint, use_tracks=True)
    dataset = FbmWindowDataset(args.data, args.split, model.config)
    result = track_sensitivity(model, dataset, args.max_windows, args.seed)
    print(f"CHOIS track sensitivity of {args.checkpoint} on the {args.split} windows of {args.data}")
    print("| " + " | ".join(result) + " |\n|" + "---|" * len(result) + "\n| " + " | ".join(f"{v:.4g}" for v in result.values()) + " |")
    return result


if __name__ == "__main__":
    import tyro

    main(tyro.cli(SensitivityArgs))
