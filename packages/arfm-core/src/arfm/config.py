"""Configs for the ARFM model and its training (paper App. B), with a ``tiny`` preset.

Defaults reproduce the paper: SAM 2.1 hiera-tiny local features, CLIP ViT-B/32 image and
text features, a ViT-Base sized fusion transformer (12 layers, 768 wide, 12 heads), a flow
head of half the depth, 16 Euler steps, horizon updates of 4 steps from t = 0.8, 100 points
x 50 future steps, AdamW 5e-5, batch 16, EMA 0.9999 updated every 100 steps.

The ``tiny`` preset swaps the backbones for a small trainable conv net and a hashed-word
text embedding so that training and sampling run in seconds on a CPU.

Configs are saved beside every checkpoint as JSON and loaded back with :func:`config_from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

BackboneKind = Literal["sam2-clip", "tiny"]
Objective = Literal["flow", "regression"]


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid config field '{field_name}': {message}")


@dataclass
class BackboneConfig:
    """Which frozen (or, for ``tiny``, trainable) feature extractors feed the fusion module.

    Attributes:
        kind: ``"sam2-clip"`` (paper) or ``"tiny"`` (CPU preset).
        sam2_config: SAM 2.1 model config inside the ``sam2`` package (hiera-tiny in the paper).
        sam2_checkpoint: local path of ``sam2.1_hiera_tiny.pt``; ``None`` = random weights.
        clip_model: open_clip architecture name.
        clip_checkpoint: local path of CLIP weights (open_clip format); ``None`` = random weights.
        text_len: number of text tokens prepended on the time axis.
        freeze: keep backbone weights fixed (paper: frozen foundation models).
        tiny_channels: conv widths of the three local levels (strides 4, 8, 16) of the tiny backbone.
        tiny_global_dim: width of the tiny backbone's global tokens (stride 32) and text embedding.
        tiny_vocab_size: hash buckets of the tiny text embedding.
    """

    kind: BackboneKind = "sam2-clip"
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_checkpoint: str | None = None
    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    text_len: int = 77
    freeze: bool = True
    tiny_channels: tuple[int, int, int] = (16, 32, 64)
    tiny_global_dim: int = 64
    tiny_vocab_size: int = 4096

    def __post_init__(self) -> None:
        self.tiny_channels = tuple(self.tiny_channels)  # JSON gives lists back
        _require(self.kind in ("sam2-clip", "tiny"), "kind", f"must be 'sam2-clip' or 'tiny', got {self.kind!r}")
        _require(self.text_len >= 1, "text_len", "must be >= 1")
        _require(len(self.tiny_channels) == 3, "tiny_channels", "needs three levels")


@dataclass
class ModelConfig:
    """The track predictor: feature fusion transformer + flow-matching head (paper §3.2).

    Attributes:
        backbone: feature extractors.
        dim: width of fusion module and flow head (ViT-B: 768).
        depth: fusion layers; each layer is one causal temporal + one spatial block (ViT-B: 12).
        heads: attention heads (ViT-B: 12).
        flow_depth: flow head layers (paper: half the fusion depth).
        mlp_ratio: MLP hidden width / dim.
        max_points: most tracks per sample (paper: 100).
        horizon: future steps predicted (paper: 50).
        sample_steps: Euler steps per timestep when sampling (paper: 16).
        update_steps: Euler steps of a horizon update (paper: 4).
        update_start_time: flow time a horizon update restarts from (paper: 0.8).
        shift_scale: model-space shift = pixel shift / shift_scale. 1.0 keeps pixels of the
            256 x 256 frame, as the paper states its targets.
        objective: ``"flow"`` (Eq. 1) or ``"regression"`` (the Table 5 ablation: the same network
            regresses the shift directly with a squared error).
        cache_window: most timesteps kept in a streaming KV cache besides the text prefix
            (sliding window; ``0`` = unbounded).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    dim: int = 768
    depth: int = 12
    heads: int = 12
    flow_depth: int = 6
    mlp_ratio: float = 4.0
    max_points: int = 100
    horizon: int = 50
    sample_steps: int = 16
    update_steps: int = 4
    update_start_time: float = 0.8
    shift_scale: float = 1.0
    objective: Objective = "flow"
    cache_window: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        _require(self.dim % self.heads == 0, "dim", f"{self.dim} is not divisible by heads={self.heads}")
        _require((self.dim // self.heads) % 2 == 0, "heads", "head width must be even for rotary embeddings")
        _require(self.depth >= 1 and self.flow_depth >= 1, "depth", "fusion and flow depths must be >= 1")
        _require(self.max_points >= 1, "max_points", "must be >= 1")
        _require(self.horizon >= 1, "horizon", "must be >= 1")
        _require(self.sample_steps >= 1 and self.update_steps >= 1, "sample_steps", "must be >= 1")
        _require(0.0 <= self.update_start_time <= 1.0, "update_start_time", "must lie in [0, 1]")
        _require(self.shift_scale > 0, "shift_scale", "must be > 0")
        _require(self.objective in ("flow", "regression"), "objective", f"must be 'flow' or 'regression', got {self.objective!r}")
        _require(self.cache_window >= 0, "cache_window", "must be >= 0")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of ``arfm train`` (paper App. B defaults).

    Attributes:
        lr: AdamW learning rate (paper 5e-5).
        weight_decay: AdamW weight decay.
        batch_size: windows per optimiser step across all processes (paper 16).
        steps: optimiser steps (paper 500k).
        warmup_steps: linear learning-rate warm-up.
        grad_clip: gradient-norm clip (0 = off).
        ema_decay: EMA beta (paper 0.9999).
        ema_update_every: steps between EMA updates (paper 100).
        max_cond_frames: conditioning frames drawn uniformly in ``[1, max_cond_frames]``
            (paper: 1 .. L-1; here capped so windows stay short).
        log_every / save_every: steps between tensorboard scalars / checkpoints.
        num_workers: DataLoader workers.
        seed: global seed.
        mixed_precision: accelerate's ``"no" | "fp16" | "bf16"``.
    """

    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 16
    steps: int = 500_000
    warmup_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_update_every: int = 100
    max_cond_frames: int = 8
    log_every: int = 50
    save_every: int = 5000
    num_workers: int = 4
    seed: int = 0
    mixed_precision: str = "no"

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", "must be > 0")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(self.steps >= 1, "steps", "must be >= 1")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay", "must lie in [0, 1)")
        _require(self.ema_update_every >= 1, "ema_update_every", "must be >= 1")
        _require(self.max_cond_frames >= 1, "max_cond_frames", "must be >= 1")
        _require(self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision", "must be 'no', 'fp16' or 'bf16'")


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """CPU preset: a few hundred thousand parameters, trains in minutes on two cores."""
    cfg = ModelConfig(
        backbone=BackboneConfig(kind="tiny", text_len=8, freeze=False),
        dim=96,
        depth=3,
        heads=4,
        flow_depth=2,
        max_points=64,
        horizon=16,
        cache_window=32,
    )
    return dataclasses.replace(cfg, **overrides)


def tiny_train_config(**overrides: Any) -> TrainConfig:
    """CPU preset for :class:`TrainConfig`."""
    cfg = TrainConfig(
        lr=1e-3,
        batch_size=8,
        steps=300,
        warmup_steps=20,
        ema_decay=0.99,
        ema_update_every=1,
        max_cond_frames=4,
        log_every=10,
        save_every=100,
        num_workers=0,
    )
    return dataclasses.replace(cfg, **overrides)


MODEL_PRESETS = {"base": ModelConfig, "tiny": tiny_model_config}
TRAIN_PRESETS = {"base": TrainConfig, "tiny": tiny_train_config}


def config_to_dict(cfg: Any) -> dict:
    """Dataclass -> JSON-able dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, data: dict, what: str = "model") -> Any:
    """Rebuild a config dataclass saved beside a checkpoint; unknown keys are an error."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{what} config has unknown fields {sorted(unknown)}: saved by a newer version?")
    return cls(**data)


def model_config_from_dict(data: dict) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` saved with a checkpoint; unknown keys are an error."""
    return config_from_dict(ModelConfig, data, "model")
