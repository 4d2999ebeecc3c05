"""Does a trained GR-1 policy use its track token? A check for Table 3 runs (not in the paper).

Runs the policy on random training windows three times — with the windows' ground-truth tracks,
with the learned "no tracks" embedding, and with the tracks of another window (shuffled) — and
reports the arm-action error of each and how far the actions move between them. A policy whose
actions barely move and whose error is the same all three ways has learnt to ignore tracks: no
track predictor can then change its success rate, which is worth knowing before reading a table.
Run on held-out demonstrations (``--data`` of other seeds), the same numbers are a cheap learning
signal before any closed-loop run: does the oracle-conditioned policy predict the expert's actions
better than without tracks, and better than a GR-1 trained without the track token
(``--plain-checkpoint``, reported as ``error_plain``)?

    python -m integrations.gr1.diagnostics --checkpoint runs/x/gr1_seed0/checkpoint --data runs/x/demos
    python -m integrations.gr1.diagnostics --checkpoint runs/x/gr1_seed0/checkpoint --data heldout/demos \
        --plain-checkpoint runs/x/gr1_seed0_plain/checkpoint --windows 128
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from integrations.gr1.data import CalvinWindowDataset, collate_gr1
from integrations.gr1.modeling_gr1 import GR1Policy


@dataclass
class SensitivityArgs:
    """Measure how much a GR-1 checkpoint's actions depend on its track token.

    Attributes:
        checkpoint: GR-1 checkpoint directory (``accelerate launch integrations/gr1/train.py``).
        data: CALVIN-format data with track sidecars (the demonstrations it was trained on).
        windows: random training windows used.
        max_points: most tracks per window.
        seed: window draw seed.
        plain_checkpoint: a GR-1 trained without the track token, compared on the same windows.
    """

    checkpoint: str
    data: str
    windows: int = 32
    max_points: int = 64
    seed: int = 0
    plain_checkpoint: str | None = None


@torch.no_grad()
def track_sensitivity(policy: GR1Policy, dataset: CalvinWindowDataset, windows: int = 32, seed: int = 0,
                      plain: GR1Policy | None = None) -> dict[str, float]:
    """Arm-action L1 error with true / no / shuffled tracks, and the mean action change.

    Args:
        policy: a GR-1 with the track token.
        dataset: windows with track sidecars.
        windows: how many windows to draw (all of them when the dataset is smaller).
        seed: which windows.
        plain: optionally a GR-1 without the track token, run on the same windows.

    Returns:
        ``error_gt``, ``error_none``, ``error_shuffled`` (mean |predicted - demonstrated| arm
        action over valid steps), ``change_gt_vs_none``, ``change_gt_vs_shuffled`` (mean
        |difference| of the predicted arm actions), ``action_scale`` (mean |demonstrated|) and,
        with ``plain``, ``error_plain``.
    """
    c = policy.config
    if not c.use_tracks:
        raise ValueError("this GR-1 policy was trained without tracks (use_tracks=False): nothing to measure")
    if plain is not None and plain.config.use_tracks:
        raise ValueError("plain must be a GR-1 trained without tracks (use_tracks=False)")
    if len(dataset) < 2:
        raise ValueError(f"track_sensitivity needs at least 2 windows to shuffle tracks, the dataset has {len(dataset)}")
    picked = np.random.default_rng(seed).choice(len(dataset), min(windows, len(dataset)), replace=False)
    batch = collate_gr1([dataset[int(i)] for i in picked])
    if "tracks" not in batch:
        raise ValueError("the dataset has no track sidecars: build it with with_tracks=True")
    policy.eval()
    valid = batch["valid"].bool()
    b, t = valid.shape
    static, gripper = policy.encode_images(batch["rgb_static"]), policy.encode_images(batch["rgb_gripper"])
    text = policy.encode_text(batch["instruction"])
    every = torch.ones(b, t, dtype=torch.bool)
    other = torch.roll(torch.arange(b), 1)  # each window gets its neighbour's tracks
    tokens = {
        "gt": policy.encode_tracks(batch["tracks"], batch["track_mask"], every),
        "none": policy.encode_tracks(None, batch_shape=(b, t)),
        "shuffled": policy.encode_tracks(batch["tracks"][other], batch["track_mask"][other], every),
    }
    arm = {name: policy(static, gripper, text, batch["robot_obs"], tok, valid).arm for name, tok in tokens.items()}
    target = batch["actions"][..., : c.arm_dim].float()
    weight = valid[..., None].float().expand_as(target)

    def mean_abs(x: torch.Tensor) -> float:
        return float((x.abs() * weight).sum() / weight.sum())

    out = {f"error_{name}": mean_abs(pred - target) for name, pred in arm.items()}
    out["change_gt_vs_none"] = mean_abs(arm["gt"] - arm["none"])
    out["change_gt_vs_shuffled"] = mean_abs(arm["gt"] - arm["shuffled"])
    out["action_scale"] = mean_abs(target)
    if plain is not None:
        plain.eval()
        plain_arm = plain(plain.encode_images(batch["rgb_static"]), plain.encode_images(batch["rgb_gripper"]),
                          plain.encode_text(batch["instruction"]), batch["robot_obs"], None, valid).arm
        out["error_plain"] = mean_abs(plain_arm - target)
    return out


def main(args: SensitivityArgs) -> dict[str, float]:
    policy = GR1Policy.from_pretrained(args.checkpoint)
    c = policy.config
    dataset = CalvinWindowDataset(
        args.data, window=c.window, video_offset=c.video_offset, track_len=c.track_len, with_tracks=True,
        track_frame_size=c.track_frame_size, max_points=args.max_points,
    )
    plain = GR1Policy.from_pretrained(args.plain_checkpoint) if args.plain_checkpoint else None
    result = track_sensitivity(policy, dataset, args.windows, args.seed, plain)
    print(f"GR-1 track sensitivity of {args.checkpoint} on {min(args.windows, len(dataset))} windows of {args.data}")
    print("| " + " | ".join(result) + " |\n|" + "---|" * len(result) + "\n| " + " | ".join(f"{v:.4g}" for v in result.values()) + " |")
    return result


if __name__ == "__main__":
    import tyro

    main(tyro.cli(SensitivityArgs))
