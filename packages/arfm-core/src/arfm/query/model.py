"""Query-information predictor (paper §3.3, App. B).

Training up-weights moving tracks (§3.1), so a model trained that way expects query points
drawn from that distribution. When a user gives no query points we reproduce it: a light MLP
on the local image features (the same backbone as the track predictor, sampled at the
candidate points) regresses each point's expected future movement and visible ratio; queries
are then drawn by the same movement-weighted softmax used in training.

Targets: movement is the §3.1 quantity (mean squared per-step displacement over visible
steps, squared pixels per step), regressed as ``log1p(movement)`` with a squared error
because it is heavy-tailed; visible ratio is the fraction of future steps where the point is
visible, regressed with a squared error too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from arfm.backbones import build_backbone
from arfm.config import BackboneConfig
from arfm.data.subsample import DEFAULT_TEMPERATURE
from arfm.local_features import sample_local_features


@dataclass
class QueryPredictorConfig:
    """Attributes:
        backbone: feature extractor (paper: SAM 2.1 hiera-tiny local features).
        hidden: MLP width.
        layers: hidden layers of the MLP.
        horizon: future steps over which movement / visibility are measured (paper: 50).
        points_per_frame: candidate points per training frame.
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    hidden: int = 256
    layers: int = 2
    horizon: int = 50
    points_per_frame: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if self.hidden < 1 or self.layers < 1:
            raise ValueError("invalid config field 'hidden'/'layers': must be >= 1")
        if self.horizon < 1:
            raise ValueError("invalid config field 'horizon': must be >= 1")


def tiny_query_config(**overrides: Any) -> QueryPredictorConfig:
    """CPU preset (tiny trainable backbone)."""
    cfg = QueryPredictorConfig(backbone=BackboneConfig(kind="tiny", text_len=1, freeze=False), hidden=64, horizon=16, points_per_frame=128)
    return dataclasses.replace(cfg, **overrides)


@dataclass
class QueryBatch:
    """``frames (B, 3, H, W)`` in [0, 1]; ``points (B, M, 2)`` pixels; targets ``movement (B, M)``
    (squared px/step) and ``visible_ratio (B, M)``."""

    frames: torch.Tensor
    points: torch.Tensor
    movement: torch.Tensor
    visible_ratio: torch.Tensor


def collate_queries(items: list[QueryBatch]) -> QueryBatch:
    """Stack single-frame items (``frames (3, H, W)``, ``points (M, 2)``, ...) into a batch."""
    return QueryBatch(*(torch.stack([getattr(it, f.name) for it in items]) for f in dataclasses.fields(QueryBatch)))


class QueryInfoPredictor(nn.Module):
    """Per-point expected future movement and visible ratio from one frame."""

    def __init__(self, config: QueryPredictorConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        layers: list[nn.Module] = []
        width = sum(self.backbone.local_channels)
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            width = config.hidden
        layers.append(nn.Linear(width, 2))  # log1p(movement), visible ratio
        self.mlp = nn.Sequential(*layers)

    def _outputs(self, frames: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"expected frames (B, 3, H, W) and points (B, M, 2), got {tuple(frames.shape)} and {tuple(points.shape)}")
        feats = self.backbone.encode_frames(frames[:, None])
        b = frames.shape[0]
        index = torch.zeros(b, 1, dtype=torch.long, device=frames.device)
        local = sample_local_features(feats.local, points[:, None], index, (frames.shape[-1], frames.shape[-2]))[:, 0]
        return self.mlp(local)  # (B, M, 2)

    def forward(self, batch: QueryBatch) -> torch.Tensor:
        """Squared-error loss on ``log1p(movement)`` and the visible ratio."""
        out = self._outputs(batch.frames, batch.points)
        target = torch.stack([torch.log1p(batch.movement), batch.visible_ratio], dim=-1)
        return ((out - target) ** 2).mean()

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(movement (B, M) in squared px/step, visible_ratio (B, M) in [0, 1])``."""
        out = self._outputs(frames, points)
        return torch.expm1(out[..., 0]).clamp(min=0.0), out[..., 1].clamp(0.0, 1.0)

    @torch.no_grad()
    def sample_queries(
        self,
        frame: torch.Tensor,
        num_queries: int = 100,
        num_candidates: int = 1000,
        temperature: float = DEFAULT_TEMPERATURE,
        min_visible_ratio: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw query points for one frame as training drew tracks (§3.1).

        Candidates are uniform over the frame; those predicted visible in at most half of the
        future are dropped (like the training filter) unless too few remain; then
        ``num_queries`` are drawn without replacement with probability
        ``softmax(movement / temperature)`` (Gumbel-top-k).

        Args:
            frame: ``(3, H, W)`` in [0, 1].

        Returns:
            ``(num_queries, 2)`` pixels.
        """
        if num_queries < 1 or num_candidates < num_queries:
            raise ValueError(f"need 1 <= num_queries <= num_candidates, got {num_queries}, {num_candidates}")
        h, w = frame.shape[-2:]
        unit = torch.rand(num_candidates, 2, generator=generator, device=frame.device)
        candidates = unit * torch.tensor([w, h], dtype=unit.dtype, device=frame.device)
        movement, ratio = self.predict(frame[None], candidates[None])
        movement, ratio = movement[0], ratio[0]
        keep = ratio > min_visible_ratio
        if int(keep.sum()) < num_queries:
            keep = torch.zeros_like(keep)
            keep[ratio.argsort(descending=True)[:num_queries]] = True
        idx = keep.nonzero().squeeze(1)
        gumbel = -torch.log(-torch.log(torch.rand(len(idx), generator=generator, device=frame.device).clamp_min(1e-12)))
        chosen = idx[(movement[idx] / temperature + gumbel).argsort(descending=True)[:num_queries]]
        return candidates[chosen]
