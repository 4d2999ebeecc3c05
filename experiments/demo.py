"""``make demo``: ARFM's predicted motion next to the truth, on simulator episodes it never saw and on real clips.

    python experiments/demo.py --out demo_out            # uses the committed checkpoints/tiny-sim
    python experiments/demo.py --out demo_out --train    # rebuilds it first (see experiments/RESULTS.md)

1. **Unseen simulator episodes.** The embedded tabletop's scripted expert runs chains from a
   scene seed that no training or evaluation run uses (9000; training uses 0, the held-out
   table 1000). Each task segment is exported with its exact tracks; from ONE frame the tiny
   ARFM (``checkpoints/tiny-sim``, trained only on simulator episodes) samples 5 futures of
   50 steps. A GIF per episode plays the best of the 5 samples (chosen by ``<δ^x_avg`` against
   the truth, as the §4.2 protocol does) next to the simulator's ground truth, over the true
   frames; the panel titles give ``<δ^x_avg`` and ADE, and those of standing still.
2. **Real clips** (``../shared/data/videos``, LK pseudo-labels, the held-out split): the same
   sim-trained checkpoint *zero-shot*, and *fine-tuned* = that checkpoint trained briefly on
   the train split of the shared clips. Both are shown on held-out clips.

Every picture carries a legend of the colour ramp (a trail goes from blue at the first
predicted step to red at the last). ``overview.png`` stacks the first frame of every panel.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import tyro

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

from arfm.evaluation.metrics import score_clip  # noqa: E402
from arfm.viz import draw_tracks, label, step_colour, write_gif, write_png  # noqa: E402

DEMO_CHECKPOINT = REPO / "checkpoints" / "tiny-sim"
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "videos"


@dataclass
class DemoCommand:
    """Draw ARFM predictions on unseen simulator episodes and on real clips.

    Attributes:
        out: output folder.
        checkpoint: sim-trained tiny ARFM (default: the committed one).
        train: retrain the checkpoint first (simulates the training data; see RESULTS.md).
        train_data: where ``--train`` writes the simulator dataset.
        sim_seed: scene seed of the demo episodes (never used in training or the table).
        sim_episodes: most expert chains simulated (three tasks each); it stops once ``max_sim``
            tasks are long enough for a window.
        max_sim: simulator windows drawn.
        real: also run the real-clip part.
        videos: folder of real clips.
        max_real: real windows drawn.
        finetune_steps: steps of the fine-tuned row (0 = zero-shot only).
        num_samples: futures sampled per window (the δ metrics use the best).
        horizon: future steps (paper: 50).
        seed: seed of sampling and fine-tuning.
        threads: torch CPU threads (1 is the safe choice on a small shared machine).
    """

    out: Path = Path("demo_out")
    checkpoint: Path = DEMO_CHECKPOINT
    train: bool = False
    train_data: Path = REPO / "runs" / "sim_data"  # ignored by git: the dataset is ~3.2 GB
    sim_seed: int = 9000
    sim_episodes: int = 8
    max_sim: int = 3
    real: bool = True
    videos: Path = DEFAULT_VIDEOS
    max_real: int = 2
    finetune_steps: int = 60
    num_samples: int = 5
    horizon: int = 50
    seed: int = 0
    threads: int = 1


# ---------------------------------------------------------------------- drawing
def with_ramp_legend(image: np.ndarray, steps: int) -> np.ndarray:
    """Append a strip under ``image`` showing the trail colour of step 1 .. ``steps``."""
    h, w = 22, image.shape[1]
    strip = np.zeros((h, w, 3), dtype=np.uint8)
    x0, x1 = 64, w - 64
    for x in range(x0, x1):
        strip[5:17, x] = step_colour(round((x - x0) / max(1, x1 - x0 - 1) * (steps - 1)), steps)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(strip, "step 1", (4, 15), font, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(strip, f"step {steps}", (x1 + 4, 15), font, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([image, strip], axis=0)


def panel(frame: np.ndarray, tracks: np.ndarray, visible: np.ndarray | None, upto: int | None, title: str, scale: int = 2) -> np.ndarray:
    """One titled, legended panel: tracks ``(N, S, 2)`` drawn up to step ``upto``."""
    return with_ramp_legend(label(draw_tracks(frame, tracks, visible, upto=upto, scale=scale), title), tracks.shape[1] - 1)


def side_by_side(frames: np.ndarray, panels: list[tuple[str, np.ndarray, np.ndarray | None]], every: int = 2,
                 scale: int = 2) -> list[np.ndarray]:
    """Animation frames (every ``every``-th step, the last always) of titled panels side by side."""
    steps = panels[0][1].shape[1]
    shown = sorted(set(range(0, steps, every)) | {steps - 1})
    return [np.concatenate([panel(frames[min(t, len(frames) - 1)], tr, vis, t, title, scale) for title, tr, vis in panels], axis=1)
            for t in shown]


def score(samples: np.ndarray, truth: np.ndarray, visible: np.ndarray) -> tuple[int, float, float]:
    """(best sample, <δ^x_avg of it, mean ADE) of ``(K, N, S+1, 2)`` samples against the truth, §4.2."""
    s = score_clip(samples[:, :, 1:], truth[:, 1:], visible[:, 1:], paper_samples=len(samples), k_values=(1,))
    return s.best_sample, s.delta_avg, s.ade


# ---------------------------------------------------------------------- stages
def predict_window(model, window, num_samples: int, horizon: int, generator: torch.Generator) -> np.ndarray:
    """``(K, N, horizon + 1, 2)`` sampled tracks from the window's first frame (step 0 = observed)."""
    observed = window.tracks[:, :1]
    future = model.sample(window.frames[:1][None], observed[None], [window.caption], horizon=horizon,
                          num_samples=num_samples, generator=generator)[0]
    return torch.cat([observed[None].expand(num_samples, -1, -1, -1), future], dim=2).numpy()


def draw_window(out: Path, name: str, frames: np.ndarray, rows: list[tuple[str, np.ndarray]], truth: np.ndarray,
                visible: np.ndarray, truth_title: str, scale: int = 2, every: int = 2) -> tuple[Path, np.ndarray, list[str]]:
    """GIF of each predictor's best sample next to the truth; returns it, its first-frame strip and text lines.

    Real footage compresses badly as GIF: its callers pass ``scale=1, every=3`` to stay under ~3 MB.
    """
    still = np.repeat(truth[:, :1], truth.shape[1], axis=1)
    _, still_delta, still_ade = score(still[None], truth, visible)
    panels, lines = [], []
    for title, samples in rows:
        best, delta, ade = score(samples, truth, visible)
        panels.append((f"{title}: dAvg {delta:.2f} ADE {ade:.0f}px", samples[best], None))  # dAvg = <delta^x_avg
        lines.append(f"  {name} {title}: <d_avg {delta:.3f}, ADE {ade:.1f} px (no movement {still_delta:.3f}, {still_ade:.1f} px)")
    panels.append((f"{truth_title}|still {still_delta:.2f} {still_ade:.0f}px", truth, visible))
    gif = write_gif(out / f"{name}.gif", side_by_side(frames, panels, every, scale))
    strip = np.concatenate([panel(frames[0], tr, vis, None, title, 2) for title, tr, vis in panels], axis=1)
    return gif, strip, lines


def sim_part(cmd: DemoCommand, model, generator: torch.Generator) -> tuple[list[Path], list[np.ndarray]]:
    """Stage 1: unseen simulator episodes, exact ground truth."""
    from sim_data import simulate, write_segment

    from arfm.data.clip_store import clip_exists, write_manifest
    from arfm.data.dataset import eval_windows, open_labelled_dataset

    root = cmd.out / "sim_unseen"
    print(f"[sim] simulating expert chains from unseen seed {cmd.sim_seed} until {cmd.max_sim} tasks last {cmd.horizon + 1} frames -> {root}")
    long_enough = 0
    for seg in simulate(cmd.sim_seed, cmd.sim_episodes, tasks_per_episode=3, num_points=256):
        if not clip_exists(root, seg.clip_id):
            write_segment(root, seg, "val", cmd.sim_seed)
        long_enough += len(seg.frames) > cmd.horizon
        if long_enough >= cmd.max_sim:
            break  # the generator's finally closes the simulator
    write_manifest(root)
    data = open_labelled_dataset(root)
    gifs, strips = [], []
    for clip_id, window in eval_windows(data, horizon=cmd.horizon, min_movement=0.0):
        if len(gifs) >= cmd.max_sim:
            break
        samples = predict_window(model, window, cmd.num_samples, cmd.horizon, generator)
        frames = np.asarray(data.open_arrays(clip_id)["frames"][: cmd.horizon + 1])
        gif, strip, lines = draw_window(cmd.out, clip_id, frames, [(f"ARFM best of {cmd.num_samples}, unseen", samples)],
                                        window.tracks.numpy(), window.visible.numpy(), "truth (sim)")
        print("\n".join(lines) + f" -> {gif}")
        gifs.append(gif)
        strips.append(strip)
    if not gifs:
        raise RuntimeError(f"no simulated segment of {root} has the {cmd.horizon + 1} frames a window needs")
    return gifs, strips


def real_part(cmd: DemoCommand, model, generator: torch.Generator) -> tuple[list[Path], list[np.ndarray]]:
    """Stage 2: held-out real clips, zero-shot and after a brief fine-tuning on the other clips."""
    from arfm.checkpoint import load_model
    from arfm.config import tiny_train_config
    from arfm.data.batch import collate_windows
    from arfm.data.dataset import LabelledTrackDataset, eval_windows, open_labelled_dataset
    from arfm.labelling.pipeline import LabelConfig, label_dataset
    from arfm.train import fit

    if not cmd.videos.is_dir():
        raise FileNotFoundError(f"real clips folder '{cmd.videos}' not found: pass --videos DIR or --no-real")
    labelled = cmd.out / "real_labelled"
    print(f"[real] pseudo-labelling {cmd.videos} -> {labelled} (LK, 40% of clips held out)")
    print(label_dataset(LabelConfig(input=cmd.videos, output=labelled, val_fraction=0.4)).format())
    rows = [("zero-shot", model)]
    if cmd.finetune_steps:
        cfg = model.config
        print(f"[real] fine-tuning the sim checkpoint for {cmd.finetune_steps} steps on the train split")
        dataset = LabelledTrackDataset(labelled, split="train", num_points=32, horizon=cfg.horizon, max_cond_frames=1, seed=cmd.seed)
        train_cfg = tiny_train_config(steps=cmd.finetune_steps, batch_size=4, max_cond_frames=1, seed=cmd.seed,
                                      save_every=cmd.finetune_steps, warmup_steps=5)
        ckpt = fit(lambda: load_model(cmd.checkpoint).train(), dataset, collate_windows, train_cfg, cmd.out / "real_finetune",
                   resume="auto", show_progress=False)
        rows.append(("fine-tuned", load_model(ckpt)))
    data = open_labelled_dataset(labelled, split="val")
    gifs, strips = [], []
    for clip_id, window in eval_windows(data, horizon=cmd.horizon):
        if len(gifs) >= cmd.max_real:
            break
        frames = np.asarray(data.open_arrays(clip_id)["frames"][: cmd.horizon + 1])
        preds = [(name, predict_window(m, window, cmd.num_samples, cmd.horizon, generator)) for name, m in rows]
        gif, strip, lines = draw_window(cmd.out, f"real_heldout_{Path(clip_id).stem}", frames, preds, window.tracks.numpy(),
                                        window.visible.numpy(), "LK labels", scale=1, every=3)
        print("\n".join(lines) + f" -> {gif}")
        gifs.append(gif)
        strips.append(strip)
    return gifs, strips


def run_demo(cmd: DemoCommand) -> list[Path]:
    """Both stages; returns the pictures written."""
    from arfm.checkpoint import load_model

    torch.set_num_threads(cmd.threads)
    if cmd.train:
        import table1_sim
        from sim_data import build_sim_dataset

        print(f"[train] simulating the training episodes into {cmd.train_data} and training the flow run")
        build_sim_dataset(cmd.train_data, train_episodes=49, val_episodes=12)  # the committed run (RESULTS.md)
        table1_sim.main(["--data", str(cmd.train_data), "--only", "flow", "--train-demo-checkpoint"])
        cmd.checkpoint = DEMO_CHECKPOINT
    if not (cmd.checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at '{cmd.checkpoint}': pass --train to build it (experiments/table1_sim.py)")
    model = load_model(cmd.checkpoint)
    generator = torch.Generator().manual_seed(cmd.seed)
    cmd.out.mkdir(parents=True, exist_ok=True)
    gifs, strips = sim_part(cmd, model, generator)
    if cmd.real:
        real_gifs, real_strips = real_part(cmd, model, generator)
        gifs += real_gifs
        strips += real_strips
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    overview = write_png(cmd.out / "overview.png", np.concatenate(padded, axis=0))
    print(f"wrote {len(gifs)} GIFs and {overview}")
    return [*gifs, overview]


def main(argv: list[str] | None = None) -> None:
    run_demo(tyro.cli(DemoCommand, args=argv, prog="experiments/demo.py"))


if __name__ == "__main__":
    main()
