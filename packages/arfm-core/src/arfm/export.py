"""Predictions out to other tools: npz, CSV and JSON, in model pixels and in the source video's pixels.

``arfm predict`` and ``arfm stream`` call :func:`write_predictions` with their predicted tracks
``(S, N, H, 2)`` in model-frame pixels (``S`` samples for predict, frames for stream; ``N``
points; ``H`` future steps) and the :class:`arfm.coords.FrameTransform` that brought the video
to the model frame. Three files are written atomically beside each other:

- ``<base>.npz``: the caller's arrays, plus ``<key>`` (model pixels), ``<key>_source`` (source
  pixels, the transform's exact inverse) and ``<key>_visible`` (bool), ``key`` being
  ``"tracks"`` (predict) or ``"horizons"`` (stream);
- ``<base>.csv``: one row per (sample or frame, point, step): ``sample, point, step, x_model,
  y_model, x_src, y_src, visible`` (the first column is named ``frame`` for a stream). Steps
  count from 1 (the first future frame); floats are written with 9 significant digits, so
  they read back as the same float32 numbers;
- ``<base>.json``: what the numbers mean: the transform (its fields and the affine map
  ``model = source * scale + offset``), fps, horizon, checkpoint, the column and array names.

A predicted step is *visible* when the point was tracked on the frame the prediction starts
from and the step lies on source content (inside the model frame, off a letterbox's pad):
the model predicts positions, not occlusions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from arfm.atomic import atomic_path, write_text_atomic
from arfm.coords import FrameTransform

FORMAT = "arfm-predictions/1"
COLUMNS = ("point", "step", "x_model", "y_model", "x_src", "y_src", "visible")


def on_source(tracks_model: np.ndarray, transform: FrameTransform) -> np.ndarray:
    """Bool ``(...)``: the model-pixel points ``(..., 2)`` lie on source content."""
    x0, y0, x1, y1 = transform.content_box()
    x, y = tracks_model[..., 0], tracks_model[..., 1]
    return np.isfinite(tracks_model).all(-1) & (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def prediction_visible(tracks_model: np.ndarray, transform: FrameTransform, start_visible: np.ndarray | None = None) -> np.ndarray:
    """Visibility ``(S, N, H)`` of predicted tracks ``(S, N, H, 2)`` (module docstring).

    Args:
        start_visible: ``(N,)`` or ``(S, N)`` bool: the point was tracked on the frame the
            prediction starts from (``None``: all were).
    """
    visible = on_source(tracks_model, transform)
    if start_visible is not None:
        start = np.asarray(start_visible, bool)
        visible &= (start[None] if start.ndim == 1 else start)[..., None]
    return visible


def _check(tracks_model: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tracks_model = np.asarray(tracks_model, np.float32)
    visible = np.asarray(visible)
    if tracks_model.ndim != 4 or tracks_model.shape[-1] != 2:
        raise ValueError(f"predicted tracks must be (S, N, H, 2) model pixels, got shape {tracks_model.shape}")
    if visible.shape != tracks_model.shape[:3] or visible.dtype != bool:
        raise ValueError(f"visible must be a bool array of shape {tracks_model.shape[:3]}, got {visible.dtype} {visible.shape}")
    return tracks_model, visible


def write_predictions(
    base: str | Path,
    tracks_model: np.ndarray,
    visible: np.ndarray,
    transform: FrameTransform,
    fps: float,
    checkpoint: str | Path,
    key: str = "tracks",
    index_name: str = "sample",
    arrays: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``<base>.npz``, ``<base>.csv`` and ``<base>.json`` (module docstring).

    Args:
        base: output path without suffix.
        tracks_model: ``(S, N, H, 2)`` predicted positions, model-frame pixels.
        visible: ``(S, N, H)`` bool (see :func:`prediction_visible`).
        transform: the map from the source video to the model frame.
        fps: the source video's frame rate (one step = one frame).
        checkpoint: the checkpoint that predicted them.
        key: name of the predictions in the npz.
        index_name: what the first axis is (``"sample"`` or ``"frame"``), the CSV's first column.
        arrays: more arrays for the npz (must not reuse the prediction names).
        metadata: more JSON-ready entries for the JSON file.

    Returns:
        ``{"npz": ..., "csv": ..., "json": ...}`` paths.
    """
    tracks_model, visible = _check(tracks_model, visible)
    tracks_source = transform.points_to_source(tracks_model)
    names = {key: tracks_model, f"{key}_source": tracks_source, f"{key}_visible": visible}
    arrays = dict(arrays or {})
    clash = sorted(set(arrays) & set(names))
    if clash:
        raise ValueError(f"extra arrays {clash} would overwrite the predictions in the npz")
    base = Path(base)
    paths = {suffix: base.with_name(base.name + "." + suffix) for suffix in ("npz", "csv", "json")}
    with atomic_path(paths["npz"]) as tmp:
        np.savez_compressed(tmp, **names, **arrays)
    _write_csv(paths["csv"], tracks_model, tracks_source, visible, index_name)
    num, points, horizon = tracks_model.shape[:3]
    info = {
        "format": FORMAT,
        "checkpoint": str(checkpoint),
        "fps": float(fps),
        "horizon": int(horizon),
        index_name + "s": int(num),
        "points": int(points),
        "transform": transform.to_dict(),
        "pixels": "(x, y), x right, y down; pixel i covers [i, i + 1) (arfm.coords)",
        "csv_columns": [index_name, *COLUMNS],
        "step": "frames after the frame the prediction starts from (1 = the next frame)",
        "npz": {key: "model-frame pixels", f"{key}_source": "source-video pixels", f"{key}_visible": "bool", **{k: "" for k in arrays}},
        "files": {suffix: path.name for suffix, path in paths.items()},
        **(metadata or {}),
    }
    write_text_atomic(paths["json"], json.dumps(info, indent=2) + "\n")
    return paths


def _write_csv(path: Path, model: np.ndarray, source: np.ndarray, visible: np.ndarray, index_name: str) -> None:
    num, points, horizon = model.shape[:3]
    index = np.indices((num, points, horizon)).reshape(3, -1).T  # rows in (index, point, step) order
    index[:, 2] += 1  # steps count from 1
    floats = np.concatenate([model.reshape(-1, 2), source.reshape(-1, 2)], axis=1).astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(",".join((index_name, *COLUMNS)) + "\n")
            for (i, p, s), (xm, ym, xs, ys), v in zip(index, floats, visible.reshape(-1)):
                f.write(f"{i},{p},{s},{xm:.9g},{ym:.9g},{xs:.9g},{ys:.9g},{int(v)}\n")


def read_predictions(base: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read back ``(npz arrays, JSON metadata)`` of :func:`write_predictions`."""
    base = Path(base)
    json_path, npz_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".npz")
    info = json.loads(json_path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{json_path} is not an ARFM predictions file (format {info.get('format')!r}, expected {FORMAT!r})")
    try:
        with np.load(npz_path) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{npz_path} is not a readable npz file: {exc}") from exc
    return arrays, info
