"""Adapters for learned point trackers a GPU user will want (paper §3.1 uses BootsTAP).

Both load a checkpoint from a local path (nothing is downloaded) and implement the
:class:`~arfm.tracking.base.PointTracker` protocol. Their packages are optional:

- CoTracker3 (``cotracker``, https://github.com/facebookresearch/co-tracker): install with
  ``pip install git+https://github.com/facebookresearch/co-tracker`` and download
  ``scaled_offline.pth`` from the CoTracker3 release page.
- BootsTAPIR (``tapnet``, https://github.com/google-deepmind/tapnet): install with
  ``pip install 'tapnet[torch] @ git+https://github.com/google-deepmind/tapnet'`` and download
  ``bootstapir_checkpoint_v2.pt`` from the TAPNet checkpoint list.

Coordinate conventions differ: CoTracker scales coordinates with ``align_corners=True`` (pixel
centres on integers, like OpenCV) so points move by 0.5 px on the way in and out; TAPIR uses
raster coordinates whose pixel centres sit on half-integers, like :mod:`arfm.coords`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from arfm.tracking.base import check_track_inputs


def _require_package(module: str, package_hint: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the {module!r} module is needed for this tracker but is not installed: {package_hint}") from exc


def _require_checkpoint(path: str | Path, what: str, hint: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found at {path}: {hint}")
    return path


def _pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class CoTracker3Tracker:
    """CoTracker3 (offline model), tracking queries forward and backward in time.

    Args:
        checkpoint: local path of ``scaled_offline.pth``.
        device: torch device (default: CUDA when available).
        window_len: the model's temporal window (60 for the released offline model).
    """

    name = "cotracker3"

    def __init__(self, checkpoint: str | Path, device: str | None = None, window_len: int = 60) -> None:
        predictor_mod = _require_package(
            "cotracker.predictor", "pip install git+https://github.com/facebookresearch/co-tracker"
        )
        path = _require_checkpoint(checkpoint, "CoTracker3", "download scaled_offline.pth from the CoTracker3 release page")
        self.device = _pick_device(device)
        try:
            model = predictor_mod.CoTrackerPredictor(checkpoint=str(path), offline=True, window_len=window_len)
        except TypeError:  # releases before CoTracker3 take only the checkpoint
            model = predictor_mod.CoTrackerPredictor(checkpoint=str(path))
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`arfm.tracking.base.PointTracker.track`."""
        video, queries = check_track_inputs(video, queries)
        frames = torch.from_numpy(video).permute(0, 3, 1, 2)[None].float().to(self.device)  # (1, T, 3, H, W), 0..255
        q = torch.from_numpy(queries.astype(np.float32)).clone()
        q[:, 1:] -= 0.5
        tracks, visible = self.model(frames, queries=q[None].to(self.device), backward_tracking=True)
        tracks = tracks[0].permute(1, 0, 2).float().cpu().numpy() + 0.5  # (N, T, 2)
        visible = visible[0].permute(1, 0).cpu().numpy().astype(bool)
        if visible.ndim == 3:
            visible = visible[..., 0]
        return tracks.astype(np.float32), visible


class BootsTAPIRTracker:
    """BootsTAPIR (the paper's pseudo-labeller) through TAPNet's PyTorch port.

    Args:
        checkpoint: local path of ``bootstapir_checkpoint_v2.pt``.
        device: torch device (default: CUDA when available).
        query_chunk_size: queries per cost-volume chunk (memory vs speed).
    """

    name = "bootstapir"

    def __init__(self, checkpoint: str | Path, device: str | None = None, query_chunk_size: int = 64) -> None:
        tapir_model = _require_package(
            "tapnet.torch.tapir_model", "pip install 'tapnet[torch] @ git+https://github.com/google-deepmind/tapnet'"
        )
        path = _require_checkpoint(checkpoint, "BootsTAPIR", "download bootstapir_checkpoint_v2.pt from the TAPNet checkpoint list")
        self.device = _pick_device(device)
        model = tapir_model.TAPIR(pyramid_level=1, extra_convs=True)
        model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        self.model = model.to(self.device).eval()
        self.query_chunk_size = query_chunk_size

    @torch.no_grad()
    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`arfm.tracking.base.PointTracker.track`."""
        video, queries = check_track_inputs(video, queries)
        frames = torch.from_numpy(video).float().to(self.device)[None] / 127.5 - 1.0  # (1, T, H, W, 3) in [-1, 1]
        tyx = torch.from_numpy(queries[:, [0, 2, 1]].astype(np.float32))[None].to(self.device)
        out = self.model(frames, tyx, query_chunk_size=self.query_chunk_size)
        tracks = out["tracks"][0].float().cpu().numpy()  # (N, T, 2) x, y
        # TAPIR's visibility: not occluded and confident about the position.
        visible = (1 - torch.sigmoid(out["occlusion"])) * (1 - torch.sigmoid(out["expected_dist"])) > 0.5
        return tracks.astype(np.float32), visible[0].cpu().numpy().astype(bool)
