"""Figures of the evaluation (paper §4.2 and App. C): ``<δ^x`` curves, best-of-K curves, qualitative grid.

Tracks are drawn as in the paper's Figure 6: each predicted track starts blue and fades to red
along the horizon; pseudo-label tracks get their own column for comparison. PNGs are written
atomically (rendered to a temporary file, then renamed).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from arfm.evaluation.protocol import EvalResult  # noqa: E402
from arfm.evaluation.report import OUTPUT_FILE_MODE  # noqa: E402


def _save_atomic(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temp, dpi=110, bbox_inches="tight")
        os.chmod(temp, OUTPUT_FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def plot_delta_curves(result: EvalResult, path: str | Path) -> Path:
    """``<δ^x`` against ``x`` (log scale), one line per predictor."""
    figure, axis = plt.subplots(figsize=(5.5, 4))
    thresholds = list(result.protocol.thresholds)
    for predictor in result.predictors:
        summary = predictor.summary()
        axis.plot(thresholds, [summary["delta"][x] for x in thresholds], marker="o", label=predictor.spec)
    axis.set_xscale("log", base=2)
    axis.minorticks_off()
    axis.set_xticks(thresholds, [str(x) for x in thresholds])
    axis.set_ylim(0, 1)
    axis.set_xlabel("threshold x (px at 256 x 256)")
    axis.set_ylabel("<δ^x (fraction of visible points)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return _save_atomic(figure, path)


def plot_best_of_k(result: EvalResult, path: str | Path) -> Path:
    """Expected best-of-K ``δ_avg`` and minADE@K against K, one line per predictor."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    ks = list(result.protocol.k_values)
    for predictor in result.predictors:
        summary = predictor.summary()
        left.plot(ks, [summary["best_delta_avg_at_k"][k] for k in ks], marker="o", label=predictor.spec)
        right.plot(ks, [summary["min_ade_at_k"][k] for k in ks], marker="o", label=predictor.spec)
    for axis, label in ((left, "best-of-K <δ^x_avg"), (right, "minADE@K (px)")):
        axis.set_xscale("log")
        axis.minorticks_off()
        axis.set_xticks(ks, [str(k) for k in ks])
        axis.set_xlabel("K samples")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.legend(fontsize=7)
    return _save_atomic(figure, path)


def _draw_tracks(axis: plt.Axes, frame: np.ndarray, start: np.ndarray, tracks: np.ndarray, visible: np.ndarray | None) -> None:
    """Frame with tracks fading blue -> red along the horizon (invisible steps left out)."""
    axis.imshow(frame)
    horizon = tracks.shape[1]
    colours = plt.get_cmap("coolwarm")(np.linspace(0.0, 1.0, horizon))
    for point in range(tracks.shape[0]):
        path = np.concatenate([start[point][None], tracks[point]], axis=0)  # (H + 1, 2)
        segments = np.stack([path[:-1], path[1:]], axis=1)  # (H, 2, 2)
        keep = np.ones(horizon, dtype=bool) if visible is None else visible[point]
        if keep.any():
            axis.add_collection(LineCollection(segments[keep], colors=colours[keep], linewidths=1.2))
    axis.scatter(start[:, 0], start[:, 1], s=3, c=[colours[0]], linewidths=0)
    axis.set_xlim(0, frame.shape[1])
    axis.set_ylim(frame.shape[0], 0)
    axis.set_xticks([])
    axis.set_yticks([])


def plot_qualitative_grid(result: EvalResult, path: str | Path) -> Path:
    """Rows = kept clips; columns = pseudo-label tracks, then each predictor's scored sample."""
    if not result.qualitative:
        raise ValueError("the evaluation kept no qualitative clips (EvalProtocol.num_qualitative = 0?)")
    specs = [p.spec for p in result.predictors]
    rows, cols = len(result.qualitative), 1 + len(specs)
    figure, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for row, clip in enumerate(result.qualitative):
        _draw_tracks(axes[row, 0], clip.frame, clip.start, clip.target, clip.visible)
        axes[row, 0].set_ylabel(clip.clip_id, fontsize=6)
        for col, spec in enumerate(specs, start=1):
            _draw_tracks(axes[row, col], clip.frame, clip.start, clip.predictions[spec], None)
    for col, title in enumerate(["pseudo-label", *specs]):
        axes[0, col].set_title(title, fontsize=7)
    return _save_atomic(figure, path)


def write_plots(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``delta_curves.png``, ``best_of_k.png`` and (when clips were kept) ``qualitative.png``."""
    out = Path(out_dir)
    paths = {
        "delta_curves": plot_delta_curves(result, out / "delta_curves.png"),
        "best_of_k": plot_best_of_k(result, out / "best_of_k.png"),
    }
    if result.qualitative:
        paths["qualitative"] = plot_qualitative_grid(result, out / "qualitative.png")
    return paths
