"""Configs for the ARFM model and its training (paper App. B), with a ``tiny`` preset.

Defaults reproduce the paper and the published model's layout: SAM 2.1 hiera-tiny local
features, CLIP ViT-B/32 image and text features, a ViT-Base sized fusion transformer (12
layers alternating causal-temporal / spatial, i.e. 6 + 6, 768 wide, 12 heads), a flow head of
4 layers, 16 Euler steps, horizon updates of 4 steps from t = 0.8, 100 points x 50 future
steps, AdamW 5e-5, batch 16, EMA 0.9999 updated every 100 steps.

``ModelConfig.variant`` picks the architecture flavour: ``"arfm"`` (ours: LayerNorm, GELU
MLPs, previous-shift input, scaled flow time) or ``"official"`` (exactly the published
release, so its converted weights reproduce its outputs: RMSNorm, SwiGLU of explicit width,
unscaled flow time, SAM 2 ``conv_s0``/``conv_s1`` reductions, text mask tokens, camera-motion
embedding, and the release's quirks as the named switches of :class:`OfficialQuirks`);
:func:`official_model_config` is the published configuration.

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
Variant = Literal["arfm", "official"]
TimeGrid = Literal["exact", "official"]


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
        tiny_text_dim: width of the tiny text embedding (0 = ``tiny_global_dim``).
        sam2_image_size: side SAM 2 sees (frames are resized to it); ``None`` = the frame size.
            The published model runs SAM 2 at 512.
        clip_tokens: ``"projected"`` (ours: open_clip's patch tokens after ``ln_post``,
            projected EOT text vector) or ``"hidden"`` (published: the vision transformer's
            patch tokens before the post-layernorm, and the text EOT state after ``ln_final``,
            both unprojected, as HF ``last_hidden_state`` / ``pooler_output``).
        clip_arch: optional open_clip architecture dict ``{"embed_dim", "vision_cfg",
            "text_cfg"}`` used instead of ``clip_model`` (reduced CLIPs of converted fixtures).
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
    tiny_text_dim: int = 0
    sam2_image_size: int | None = None
    clip_tokens: Literal["projected", "hidden"] = "projected"
    clip_arch: dict | None = None

    def __post_init__(self) -> None:
        self.tiny_channels = tuple(self.tiny_channels)  # JSON gives lists back
        _require(self.kind in ("sam2-clip", "tiny"), "kind", f"must be 'sam2-clip' or 'tiny', got {self.kind!r}")
        _require(self.text_len >= 1, "text_len", "must be >= 1")
        _require(len(self.tiny_channels) == 3, "tiny_channels", "needs three levels")
        _require(self.tiny_text_dim >= 0, "tiny_text_dim", "must be >= 0")
        _require(self.sam2_image_size is None or self.sam2_image_size >= 32, "sam2_image_size", "must be None or >= 32")
        _require(self.clip_tokens in ("projected", "hidden"), "clip_tokens", f"must be 'projected' or 'hidden', got {self.clip_tokens!r}")


@dataclass
class OfficialQuirks:
    """Behaviours of the published release that change its outputs (``variant="official"`` only).

    Defaults reproduce the release; set a switch to False for the behaviour its code intended.
    File references are to Johnathan-Xie/arfm-motion-prediction @ d5dd410 (see
    ``../shared/fixtures/official/README.md``).

    Attributes:
        visibility_by_point: the visibility embedding is indexed by the POINT index
            (``n < F``) instead of the step (``s < F``).
        frame_by_point: point ``n`` reads local features of frame ``min(n, F - 1)`` at every
            step instead of the step's own frame (no effect with one conditioning frame, as in
            the release's evaluation). Our KV-cached rollout keeps only the last frame for
            future steps, so with ``F > 1`` it follows the release on observed steps only;
            :mod:`arfm.official_reference` follows it everywhere.
        global_embed_both: unobserved steps repeat the last frame's global tokens with BOTH
            the "visible" and the "not visible" embedding added (instead of only the latter).
        mask_spatial_attention: False = the release's spatial masks are no-ops, so padded
            points are attended by every point in the fusion and head spatial layers.
        camera_drop_prob: the camera-motion class is replaced by the null class with this
            probability at every evaluation, also at inference (release: 0.1).
        num_camera_classes: static, moving, unknown (the null class is the last).
    """

    visibility_by_point: bool = True
    frame_by_point: bool = True
    global_embed_both: bool = True
    mask_spatial_attention: bool = False
    camera_drop_prob: float = 0.1
    num_camera_classes: int = 3

    def __post_init__(self) -> None:
        _require(0.0 <= self.camera_drop_prob <= 1.0, "camera_drop_prob", "must lie in [0, 1]")
        _require(self.num_camera_classes >= 1, "num_camera_classes", "must be >= 1")


@dataclass
class ModelConfig:
    """The track predictor: feature fusion transformer + flow-matching head (paper §3.2).

    Attributes:
        backbone: feature extractors.
        variant: ``"arfm"`` (ours) or ``"official"`` (the published architecture, module docstring).
        dim: width of fusion module and flow head (ViT-B: 768).
        depth: fusion layers, alternating causal temporal (even index) and spatial (odd
            index), as the published model (12 = 6 temporal + 6 spatial).
        heads: attention heads (ViT-B: 12).
        flow_depth: flow head layers (published: 4).
        mlp_ratio: MLP hidden width / dim (used when ``mlp_hidden`` is 0).
        mlp_hidden: explicit MLP hidden width (published SwiGLU: 2046); 0 = ``dim * mlp_ratio``.
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
        time_grid: ``"exact"`` (ours: Euler steps land on t = 1) or ``"official"`` (the
            release's grid ``linspace(t_start, 1, K + 1)[:-1]``: K - 1 steps, stopping one step
            short of t = 1), for every denoise (sampling and horizon updates).
        quirks: the release's output-changing behaviours (``variant="official"`` only).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    variant: Variant = "arfm"
    dim: int = 768
    depth: int = 12
    heads: int = 12
    flow_depth: int = 4
    mlp_ratio: float = 4.0
    mlp_hidden: int = 0
    max_points: int = 100
    horizon: int = 50
    sample_steps: int = 16
    update_steps: int = 4
    update_start_time: float = 0.8
    shift_scale: float = 1.0
    objective: Objective = "flow"
    cache_window: int = 64
    time_grid: TimeGrid = "exact"
    quirks: OfficialQuirks = field(default_factory=OfficialQuirks)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.quirks, dict):
            self.quirks = OfficialQuirks(**self.quirks)
        _require(self.variant in ("arfm", "official"), "variant", f"must be 'arfm' or 'official', got {self.variant!r}")
        _require(self.time_grid in ("exact", "official"), "time_grid", f"must be 'exact' or 'official', got {self.time_grid!r}")
        _require(self.mlp_hidden >= 0, "mlp_hidden", "must be >= 0")
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
        batch_size: windows per optimiser step across all processes (paper 16); each of
            ``n`` processes loads ``batch_size / n`` (:func:`arfm.run_layout.per_process_batch`).
        steps: optimiser steps (paper 500k).
        warmup_steps: linear learning-rate warm-up (:func:`arfm.schedules.lr_factor`).
        lr_schedule: after the warm-up, ``"constant"`` (paper) or ``"cosine"`` decay to 0 at ``steps``.
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
    lr_schedule: Literal["constant", "cosine"] = "constant"
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
        _require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        _require(self.lr_schedule in ("constant", "cosine"), "lr_schedule", f"must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        _require(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay", "must lie in [0, 1)")
        _require(self.ema_update_every >= 1, "ema_update_every", "must be >= 1")
        _require(self.max_cond_frames >= 1, "max_cond_frames", "must be >= 1")
        _require(self.log_every >= 1, "log_every", "must be >= 1")
        _require(self.save_every >= 1, "save_every", "must be >= 1")
        _require(self.num_workers >= 0, "num_workers", "must be >= 0")
        _require(self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision", "must be 'no', 'fp16' or 'bf16'")


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """CPU preset: a few hundred thousand parameters, trains in minutes on two cores."""
    cfg = ModelConfig(
        backbone=BackboneConfig(kind="tiny", text_len=8, freeze=False),
        dim=96,
        depth=6,
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


def official_model_config(**overrides: Any) -> ModelConfig:
    """The published zero-shot motion predictor (``jxie/autorf-zero_shot-motion_predictor``).

    SAM 2.1 hiera-tiny at 512 px, HF-style CLIP ViT-B/32 tokens (before the post-layernorm),
    32 text tokens, 12 alternating RMSNorm/SwiGLU(2046) layers 768 wide with 12 heads, a
    4-layer flow head, 50 steps, 16 Euler steps; our exact time grid unless
    ``time_grid="official"``.
    """
    cfg = ModelConfig(
        backbone=BackboneConfig(clip_model="ViT-B-32-quickgelu", text_len=32, sam2_image_size=512, clip_tokens="hidden"),
        variant="official",
        mlp_hidden=2046,
        cache_window=0,
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
    from arfm.errors import check_field_types  # a wrong type names its field, not a crash deep in the model

    check_field_types(cls, data, what)
    return cls(**data)


def model_config_from_dict(data: dict) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` saved with a checkpoint; unknown keys are an error.

    Configs saved before the ``variant`` field existed counted ``depth`` in (temporal + spatial)
    pairs; the same modules, with the same parameter names, are now ``2 * depth`` alternating
    layers, so such a config is migrated here and its checkpoint loads unchanged.
    """
    if "variant" not in data and isinstance(data.get("depth"), int):
        data = {**data, "depth": 2 * data["depth"]}
    return config_from_dict(ModelConfig, data, "model")
