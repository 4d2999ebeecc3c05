"""Does a trained GR-1 policy use its track token? A check for Table 3 runs (not in the paper).

Runs the policy on random training windows three times — with the windows' ground-truth tracks,
with the learned "no tracks" embedding, and with the tracks of another window (shuffled) — and
reports the arm-action error of each and how far the actions move between them. A policy whose
actions barely move and whose error is the same all three ways has learnt to ignore tracks: no
track predictor can then change its success rate, which is worth knowing before reading a table.
Run on held-out demonstrations (``--data`` of other seeds), the same numbers are a cheap learning
signal before any closed-loop run: does the oracle-conditioned policy predict the expert's actions
better than without tracks, and better than a GR-1 trained without the track token
(``--plain-checkpoint``, reported as ``error_plain``)? And with the tracks a predictor makes from
each window's current frame (``--predictors arfm:<ckpt> no-movement``, reported as
``error_<kind>``, e.g. ``error_arfm``): how much of the oracle's gain would that predictor's tracks keep, before
paying for a closed-loop run?

    python -m integrations.gr1.diagnostics --checkpoint runs/x/gr1_seed0/checkpoint --data runs/x/demos
    python -m integrations.gr1.diagnostics --checkpoint runs/x/gr1_seed0/checkpoint --data heldout/demos \
        --plain-checkpoint runs/x/gr1_seed0_plain/checkpoint --windows 128
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from integrations.gr1.data import CalvinWindowDataset, collate_gr1
from integrations.gr1.modeling_gr1 import GRIPPER_OBS_INDEX, GR1Policy


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
        predictors: track predictor specs (:func:`arfm.predictors.build_predictor`) whose tracks,
            predicted from each step's static frame and the ground truth's current positions,
            replace the ground truth in one more pass each.
    """

    checkpoint: str
    data: str
    windows: int = 32
    max_points: int = 64
    seed: int = 0
    plain_checkpoint: str | None = None
    predictors: list[str] = field(default_factory=list)


def predicted_tracks(predictor, batch: dict, track_len: int, frame_size: int) -> torch.Tensor:
    """``(B, T, N, track_len, 2)``: for every step of every window, ``predictor``'s tracks from that
    step's static frame, starting at the ground truth's current positions (the closed-loop
    conditioner's path, :class:`integrations.gr1.policy_runner.OnlineTrackConditioner`)."""
    from integrations.gr1.policy_runner import OnlineTrackConditioner

    conditioner = OnlineTrackConditioner(predictor, track_len, frame_size)
    gt, frames = batch["tracks"], batch["rgb_static"]
    if frames.dtype != torch.uint8 or frames.shape[-1] != frame_size:
        raise ValueError(f"predicted tracks need the full {frame_size}-px uint8 static frames (a dataset without image_size)")
    out = torch.zeros_like(gt)
    for i in range(gt.shape[0]):
        for k in range(gt.shape[1]):
            conditioner.reset()  # one conditioning frame per prediction, as Table 1's protocol
            points = gt[i, k, :, 0].numpy()
            image = frames[i, k].permute(1, 2, 0).numpy()
            out[i, k] = conditioner(image, points, np.ones(len(points), bool), batch["instruction"][i])
    return out


@torch.no_grad()
def track_sensitivity(policy: GR1Policy, dataset: CalvinWindowDataset, windows: int = 32, seed: int = 0,
                      plain: GR1Policy | None = None, predictors: dict | None = None) -> dict[str, float]:
    """Arm-action L1 error with true / no / shuffled tracks, and the mean action change.

    Args:
        policy: a GR-1 with the track token.
        dataset: windows with track sidecars.
        windows: how many windows to draw (all of them when the dataset is smaller).
        seed: which windows.
        plain: optionally a GR-1 without the track token, run on the same windows.
        predictors: ``{name: TrackPredictor}`` whose tracks (:func:`predicted_tracks`) are tried too.

    Returns:
        ``error_gt``, ``error_none``, ``error_shuffled`` (mean |predicted - demonstrated| arm
        action over valid steps), ``change_gt_vs_none``, ``change_gt_vs_shuffled`` (mean
        |difference| of the predicted arm actions), ``action_scale`` (mean |demonstrated|) and,
        with ``plain``, ``error_plain``; per predictor ``error_<name>`` and ``track_ade_<name>`` (mean
        pixel distance of its future positions to the ground truth's); for a real GR-1,
        ``gripper_agreement_gt`` / ``_none`` (share of steps whose open/close command matches the
        demonstration's) and ``gripper_agreement_repeat_state`` (the share of repeating the robot's
        last command, ``robot_obs[14]``: what a policy that reads its state gets for free).
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
    track_ade = {}
    for name, predictor in (predictors or {}).items():
        tracks = predicted_tracks(predictor, batch, c.track_len, c.track_frame_size)
        tokens[name] = policy.encode_tracks(tracks, batch["track_mask"], every)
        # mean distance (camera px) to the ground truth over the future positions of real points on valid steps
        points = (batch["track_mask"] & valid[..., None]).float()  # (B, T, N)
        dist = (tracks[..., 1:, :] - batch["tracks"][..., 1:, :]).norm(dim=-1).mean(-1)  # (B, T, N)
        track_ade[f"track_ade_{name}"] = float((dist * points).sum() / points.sum())
    outputs = {name: policy(static, gripper, text, batch["robot_obs"], tok, valid) for name, tok in tokens.items()}
    arm = {name: o.arm for name, o in outputs.items()}
    target = batch["actions"][..., : c.arm_dim].float()
    weight = valid[..., None].float().expand_as(target)

    def mean_abs(x: torch.Tensor) -> float:
        return float((x.abs() * weight).sum() / weight.sum())

    out = {f"error_{name}": mean_abs(pred - target) for name, pred in arm.items()}
    out["change_gt_vs_none"] = mean_abs(arm["gt"] - arm["none"])
    out["change_gt_vs_shuffled"] = mean_abs(arm["gt"] - arm["shuffled"])
    out["action_scale"] = mean_abs(target)
    out.update(track_ade)
    if getattr(outputs["gt"], "gripper_logit", None) is not None:
        # share of valid steps whose gripper command (open: logit > 0) matches the demonstration's, and
        # the share a policy would get by repeating the robot's last gripper command (robot_obs[14])
        opened = batch["actions"][..., c.arm_dim] > 0
        for name in ("gt", "none"):
            out[f"gripper_agreement_{name}"] = float(((outputs[name].gripper_logit > 0) == opened)[valid].float().mean())
        out["gripper_agreement_repeat_state"] = float(((batch["robot_obs"][..., GRIPPER_OBS_INDEX] > 0) == opened)[valid].float().mean())
    if plain is not None:
        plain.eval()
        plain_arm = plain(plain.encode_images(batch["rgb_static"]), plain.encode_images(batch["rgb_gripper"]),
                          plain.encode_text(batch["instruction"]), batch["robot_obs"], None, valid).arm
        out["error_plain"] = mean_abs(plain_arm - target)
    return out


def main(args: SensitivityArgs) -> dict[str, float]:
    from arfm.predictors import build_predictor

    policy = GR1Policy.from_pretrained(args.checkpoint)
    c = policy.config
    dataset = CalvinWindowDataset(
        args.data, window=c.window, video_offset=c.video_offset, track_len=c.track_len, with_tracks=True,
        track_frame_size=c.track_frame_size, max_points=args.max_points,
    )
    plain = GR1Policy.from_pretrained(args.plain_checkpoint) if args.plain_checkpoint else None
    names = [spec.split(":")[0] for spec in args.predictors]  # "arfm:<ckpt>" -> error_arfm
    if len(set(names)) != len(names):
        raise ValueError(f"--predictors: one spec per kind, got {args.predictors}")
    predictors = {name: build_predictor(spec) for name, spec in zip(names, args.predictors)}
    result = track_sensitivity(policy, dataset, args.windows, args.seed, plain, predictors)
    print(f"GR-1 track sensitivity of {args.checkpoint} on {min(args.windows, len(dataset))} windows of {args.data}")
    print("| " + " | ".join(result) + " |\n|" + "---|" * len(result) + "\n| " + " | ".join(f"{v:.4g}" for v in result.values()) + " |")
    return result


if __name__ == "__main__":
    import tyro

    main(tyro.cli(SensitivityArgs))
