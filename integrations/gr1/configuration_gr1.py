"""Configuration of the GR-1 policy with track conditioning (ARFM paper §4.4, Table 3).

Defaults reproduce the published GR-1 (Wu et al. 2023, public release) as listed in issue 6:
a GPT-2-style causal transformer (hidden 384, 12 layers, 12 heads, inner 1536) over a window of
10 timesteps; a frozen MAE ViT-B/16 at 224 px (CLS + 196 patch features) whose patches go
through a perceiver resampler (depth 3, 9 latents); frozen CLIP ViT-B/32 text; a state token
from ``robot_obs[:6]`` and a gripper one-hot; arm (6) and gripper (1 logit) heads; a video head
predicting the frame 3 steps ahead. Loss = MSE(static video) + MSE(gripper video)
+ 100 x SmoothL1(arm) + BCE(gripper).

ARFM adds one track token per timestep (paper §3.5): the [CLS] output of a
:class:`track_encoder.TrackEncoder` (ViT-Base sized by default) over the future tracks of
``track_len`` positions starting at the current frame, projected to the GR-1 width.

The ``tiny`` preset keeps every structural fact (token layout, 9 latents, 10 + 10 video
queries, heads, losses) and shrinks the widths, the image size (32 px) and the backbones
(a 1-block timm ViT, a hashed-word text embedding) so a training step takes well under a
second on a CPU.

**Official compatibility** (``compat``, issue 12): ``"arfm_robotics"`` reproduces the ARFM robotics
GR-1 (GR1-Training's GR-1 with HF GPT-2 and the future-track token) and ``"bytedance"`` the
original GR-1 release, exactly, so their checkpoints load through
:mod:`integrations.gr1.convert`. Both switch on, against our default:

- the official per-step token order ``[lang, state, latents, CLS, hand latents, hand CLS,
  (track), action queries, obs queries, hand obs queries]``, with the step embedding on the
  observation tokens only (queries carry none);
- language ``x / (||x|| + 1e-6)`` of the CLIP text embedding; separate patch / CLS projections
  for the gripper camera; the action head without activations; images normalised with
  ``std + 1e-6``; the resampler's media position embedding;
- one video decoder for both cameras (timm ViT blocks, a stored sin-cos table), with the obs
  queries only when ``predict_video`` (the released bytedance evaluation runs without them).

``"arfm_robotics"`` adds learned absolute position embeddings over the flattened token index
(HF GPT-2 ``wpe``, ``max_positions`` rows, added after ``embed_ln``), ``action_chunk`` action
queries per step (``action_chunk_queries + action_query``), and a track token without a learned
"no tracks" embedding (``tracks=None`` encodes one all-zero track, the official empty-slot
value); use :func:`track_encoder.official_track_encoder_config` for its encoder.
``"bytedance"`` has no position embedding at all, one action query and no track token. Both
released models use ``gpt_activation="relu"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from track_encoder import TrackEncoderConfig, tiny_track_encoder_config

TextEncoderKind = Literal["clip", "hashed"]
CompatMode = Literal["none", "arfm_robotics", "bytedance"]


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid GR1Config field '{field_name}': {message}")


@dataclass
class GR1Config:
    """Sizes and switches of :class:`integrations.gr1.modeling_gr1.GR1Policy`.

    Attributes:
        window: timesteps per sequence (GR-1: 10).
        hidden, layers, heads, inner, dropout: the GPT-2-style transformer.
        vit_model: timm architecture of the frozen image encoder.
        vit_checkpoint: local MAE (``mae_pretrain_vit_base.pth``) or GR-1 checkpoint whose
            ``model_mae.*`` weights are used; ``None`` = random init.
        vit_overrides: extra kwargs for ``timm.create_model`` (the tiny preset shrinks the ViT).
        image_size, patch_size: input side of the ViT and its patch size (both cameras are
            resized to ``image_size``; the video head predicts patches of this size).
        freeze_vision: keep the ViT fixed (GR-1: frozen MAE).
        resampler_depth, resampler_latents, resampler_heads, resampler_dim_head: perceiver
            resampler over the patch features (GR-1: depth 3, 9 latents).
        text_encoder: ``"clip"`` (frozen open_clip text tower) or ``"hashed"`` (bag of hashed
            words, CPU preset).
        clip_model, clip_checkpoint: open_clip architecture and local weights (``None`` = random).
        text_vocab_size, text_dim: hashed-word buckets and width (``text_dim`` is overwritten
            by the CLIP embedding width when ``text_encoder == "clip"``).
        state_dim: arm state entries taken from ``robot_obs`` (tcp position + euler angles).
        arm_dim: relative arm action entries (the 7th action entry is the gripper).
        arm_loss_weight: weight of the SmoothL1 arm loss (GR-1: 100).
        gripper_loss_weight: weight of the gripper BCE (GR-1: 1).
        predict_video, video_offset: future-frame prediction and how far ahead (GR-1: 3).
        video_queries: OBS query tokens per camera (GR-1: 9 latents + 1 CLS = 10).
        decoder_depth, decoder_heads: the video decoder (not listed in issue 6; chosen small).
        video_loss_weight: weight of each camera's video MSE.
        use_tracks: add the per-timestep track token (ARFM §3.5).
        track_len: positions per conditioning track, the first being the current frame
            (future tracks of frame ``t`` are ``tracks[:, t : t + track_len]``).
        track_frame_size: side of the camera image the tracks are measured in (CALVIN static: 200).
        track_dropout: probability of replacing a sample's tracks by the learned "no tracks"
            embedding during training, so one checkpoint also runs with ``tracks=None``.
        track_encoder: sizes of the track encoder (``num_steps`` must equal ``track_len``).
        compat: ``"none"`` (ours), ``"arfm_robotics"`` or ``"bytedance"``: the exact official
            architecture (module docstring).
        action_chunk: action queries per step, each predicting one action of a chunk
            (``compat="arfm_robotics"`` only; released: 10). The executed action is the first.
        max_positions: rows of the absolute position table (``compat="arfm_robotics"``; HF
            ``n_positions``, released: 1024).
        gpt_activation: MLP activation of the transformer, ``"gelu_tanh"`` or ``"relu"``.
    """

    window: int = 10
    hidden: int = 384
    layers: int = 12
    heads: int = 12
    inner: int = 1536
    dropout: float = 0.1
    vit_model: str = "vit_base_patch16_224"
    vit_checkpoint: str | None = None
    vit_overrides: dict[str, Any] = field(default_factory=dict)
    image_size: int = 224
    patch_size: int = 16
    freeze_vision: bool = True
    resampler_depth: int = 3
    resampler_latents: int = 9
    resampler_heads: int = 4
    resampler_dim_head: int = 128
    text_encoder: TextEncoderKind = "clip"
    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    text_vocab_size: int = 4096
    text_dim: int = 512
    state_dim: int = 6
    arm_dim: int = 6
    arm_loss_weight: float = 100.0
    gripper_loss_weight: float = 1.0
    predict_video: bool = True
    video_offset: int = 3
    video_queries: int = 10
    decoder_depth: int = 2
    decoder_heads: int = 16
    video_loss_weight: float = 1.0
    use_tracks: bool = True
    track_len: int = 16
    track_frame_size: int = 200
    track_dropout: float = 0.1
    track_encoder: TrackEncoderConfig = field(default_factory=TrackEncoderConfig)
    compat: CompatMode = "none"
    action_chunk: int = 1
    max_positions: int = 1024
    gpt_activation: Literal["gelu_tanh", "relu"] = "gelu_tanh"

    def __post_init__(self) -> None:
        if isinstance(self.track_encoder, dict):  # loaded back from JSON
            self.track_encoder = TrackEncoderConfig(**self.track_encoder)
        _require(self.window >= 1, "window", f"must be >= 1, got {self.window}")
        _require(self.hidden % self.heads == 0, "hidden", f"{self.hidden} is not divisible by heads={self.heads}")
        _require(self.layers >= 1, "layers", "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.image_size % self.patch_size == 0, "image_size", f"{self.image_size} is not a multiple of patch_size={self.patch_size}")
        _require(self.resampler_latents >= 1, "resampler_latents", "must be >= 1")
        _require(self.text_encoder in ("clip", "hashed"), "text_encoder", f"must be 'clip' or 'hashed', got {self.text_encoder!r}")
        _require(self.state_dim >= 1 and self.arm_dim >= 1, "state_dim", "state_dim and arm_dim must be >= 1")
        _require(self.video_offset >= 1, "video_offset", f"must be >= 1, got {self.video_offset}")
        _require(self.video_queries >= 1, "video_queries", "must be >= 1")
        _require(self.hidden % self.decoder_heads == 0, "decoder_heads", f"hidden={self.hidden} is not divisible by {self.decoder_heads}")
        _require(self.track_len >= 2, "track_len", "a track needs at least 2 positions")
        _require(self.track_frame_size >= 1, "track_frame_size", "must be >= 1")
        _require(0.0 <= self.track_dropout <= 1.0, "track_dropout", f"must be in [0, 1], got {self.track_dropout}")
        _require(
            self.track_encoder.num_steps == self.track_len,
            "track_encoder",
            f"num_steps={self.track_encoder.num_steps} must equal track_len={self.track_len}",
        )
        _require(self.compat in ("none", "arfm_robotics", "bytedance"), "compat", f"must be 'none', 'arfm_robotics' or 'bytedance', got {self.compat!r}")
        _require(self.gpt_activation in ("gelu_tanh", "relu"), "gpt_activation", f"must be 'gelu_tanh' or 'relu', got {self.gpt_activation!r}")
        _require(self.action_chunk >= 1, "action_chunk", f"must be >= 1, got {self.action_chunk}")
        _require(self.action_chunk == 1 or self.compat == "arfm_robotics", "action_chunk", "action chunks exist only with compat='arfm_robotics'")
        _require(not (self.compat == "bytedance" and self.use_tracks), "use_tracks", "bytedance GR-1 has no track token")
        if self.compat == "arfm_robotics":
            _require(
                self.max_positions >= self.window * self.tokens_per_step,
                "max_positions",
                f"{self.max_positions} < window * tokens_per_step = {self.window * self.tokens_per_step}",
            )

    @property
    def official(self) -> bool:
        """Whether an official architecture (``compat != "none"``) is built."""
        return self.compat != "none"

    @property
    def obs_tokens_per_step(self) -> int:
        """Non-query tokens per timestep: lang, state, 2 x (latents + CLS) and the track token."""
        return 2 + int(self.use_tracks) + 2 * (self.resampler_latents + 1)

    @property
    def video_query_tokens(self) -> int:
        """OBS + OBS_HAND query tokens per timestep (official modes drop them without ``predict_video``)."""
        return 2 * self.video_queries if (self.predict_video or not self.official) else 0

    @property
    def num_patches(self) -> int:
        """Patches per image of the ViT (196 at 224 px / 16)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens_per_step(self) -> int:
        """Tokens per timestep: lang, state, [track], 2 x (latents + CLS), ACT (x chunk), 2 x video queries."""
        return self.obs_tokens_per_step + self.action_chunk + self.video_query_tokens

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GR1Config":
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GR1Config.from_dict got unknown fields: {', '.join(unknown)}")
        return cls(**data)


def tiny_gr1_config(**overrides: Any) -> GR1Config:
    """CPU preset: same token layout and losses, small widths, 32 px images, hashed-word text."""
    cfg = GR1Config(
        hidden=64,
        layers=2,
        heads=4,
        inner=256,
        dropout=0.0,
        vit_model="vit_tiny_patch16_224",
        vit_overrides={"embed_dim": 48, "depth": 1, "num_heads": 2},
        image_size=32,
        patch_size=8,
        resampler_depth=1,
        resampler_heads=2,
        resampler_dim_head=16,
        text_encoder="hashed",
        text_dim=64,
        decoder_depth=1,
        decoder_heads=4,
        track_encoder=tiny_track_encoder_config(dim=32, depth=1, heads=2, fourier_bands=4),
    )
    if "track_len" in overrides and "track_encoder" not in overrides:  # keep the encoder in step
        overrides["track_encoder"] = dataclasses.replace(cfg.track_encoder, num_steps=overrides["track_len"])
    return dataclasses.replace(cfg, **overrides)


PRESETS = {"default": GR1Config, "tiny": tiny_gr1_config}
"""Named presets for command lines (``--preset tiny``)."""
