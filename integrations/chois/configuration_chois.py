"""Configuration of CHOIS with track conditioning (ARFM paper §4.3, Table 2; CHOIS, Li et al. 2024).

Defaults reproduce the published CHOIS denoiser: 120-frame windows at 30 fps, 220 numbers per
frame, a BPS object feature (1024 basis points in a ball of radius 1, MLP 3072 -> 512 -> 256), a
leading token made of the diffusion-timestep embedding plus a CLIP ViT-B/32 text feature, a
4-layer, 4-head, 512-wide transformer, x0 prediction under a cosine schedule of 1000 steps, L1 +
hand/foot FK + contact + object-keypoint losses, and guidance during the last sampling steps.

The ARFM addition (paper §3.5): future 2-D tracks (50 steps, temporal stride 3) are encoded by
the track encoder (ViT-Base sized) and added to the leading token through a zero-initialised
projection.

Two denoiser layouts are chosen by ``variant``: ``"arfm"`` (ours: a pre-LN ``nn.TransformerEncoder``)
and ``"official"``, the exact layout of the released CHOIS code (post-LN blocks with per-head
``d_k`` / ``d_v``, a stored sinusoid position table, a 64-wide integer-step time embedding, x0
clamped to [-1, 1]) so the released checkpoint loads through ``convert.py`` and reproduces the
official outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from arfm.config import config_from_dict
from track_encoder import TrackEncoderConfig, tiny_track_encoder_config

TextEncoderKind = Literal["clip", "hashed"]
DenoiserVariant = Literal["arfm", "official"]

NUM_JOINTS = 24
"""Joint positions per frame: the 22 SMPL-X body joints plus one point per hand."""
NUM_ROT_JOINTS = 22
"""Joint rotations per frame: the 22 SMPL-X body joints."""
NUM_CONTACTS = 4
"""Contact labels per frame: left hand, right hand, left foot, right foot."""


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid config field '{field_name}': {message}")


@dataclass
class ChoisConfig:
    """CHOIS denoiser, diffusion and track branch.

    Attributes:
        window: frames per window (CHOIS: 120).
        fps: frame rate of the motion (CHOIS: 30).
        bps_points: basis points of the object shape feature (CHOIS: 1024).
        bps_radius: radius of the ball the basis points are drawn in, metres (CHOIS: 1.0).
        bps_hidden: hidden width of the BPS MLP (CHOIS: 512).
        bps_feature_dim: output width of the BPS MLP (CHOIS: 256).
        object_points: surface points of the object used for the keypoint loss and guidance.
        d_model, num_layers, num_heads, ffn_dim: transformer sizes (CHOIS: 512, 4, 4).
        dropout: transformer dropout.
        text_encoder: ``"clip"`` (CLIP ViT-B/32 text tower, CHOIS) or ``"hashed"`` (bag of
            hashed words, tiny preset).
        clip_model: open_clip architecture name.
        clip_checkpoint: local path of open_clip weights; ``None`` leaves CLIP randomly
            initialised (only sensible for smoke tests).
        text_dim: width of the text feature (CLIP ViT-B/32: 512).
        hashed_vocab: hash buckets of the ``hashed`` text encoder.
        diffusion_steps: denoising steps (CHOIS: 1000).
        loss_w_fk: weight of the hand/foot forward-kinematics loss.
        loss_w_contact: weight of the hand-object contact loss.
        loss_w_obj_pts: weight of the object-keypoint loss.
        waypoint_every: frames between object x-y waypoints in the condition mask (CHOIS: 30).
        guidance_last_steps: the final sampling steps on which guidance is applied.
        guidance_scale: step size of the guidance gradient on the predicted x0.
        variant: ``"arfm"`` (our pre-LN transformer) or ``"official"`` (the released CHOIS layout,
            see :func:`official_chois_config`).
        d_k: query/key width per head of the official variant (CHOIS: 256); ``None`` = d_model / heads.
        d_v: value width per head of the official variant (CHOIS: 256); ``None`` = d_model / heads.
        clamp_x0: clamp the predicted (normalised) x0 to [-1, 1] while sampling (official CHOIS,
            whose data are min-max normalised to [-1, 1]).
        use_tracks: build the track branch.
        track_horizon: future track steps fed to the encoder (paper: 50).
        track_stride: frames between track steps (paper footnote: rendered video downsampled by 3).
        track_dropout: probability of training a sample without tracks. Not stated in the paper;
            it keeps ``--tracks none`` in distribution for a track-trained checkpoint.
        image_size: side of the square camera image the tracks live in (pixels).
        track_encoder: track encoder sizes (paper: ViT-Base); ``num_steps`` must equal
            ``track_horizon + 1`` (the query point followed by the horizon).
        context_to_frames: also add the conditioning vector (text + tracks) to every frame
            token, not only to the leading token (CHOIS's layout, the default). Not in either
            paper: on the embedded data a tiny denoiser ignores what the leading token carries
            (experiments/RESULTS.md, Table 2), and this gives the tracks a direct path to each frame.
    """

    window: int = 120
    fps: int = 30
    bps_points: int = 1024
    bps_radius: float = 1.0
    bps_hidden: int = 512
    bps_feature_dim: int = 256
    object_points: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    text_encoder: TextEncoderKind = "clip"
    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    text_dim: int = 512
    hashed_vocab: int = 4096
    diffusion_steps: int = 1000
    loss_w_fk: float = 0.5
    loss_w_contact: float = 1.0
    loss_w_obj_pts: float = 1.0
    waypoint_every: int = 30
    guidance_last_steps: int = 10
    guidance_scale: float = 0.1
    variant: DenoiserVariant = "arfm"
    d_k: int | None = None
    d_v: int | None = None
    clamp_x0: bool = False
    use_tracks: bool = True
    track_horizon: int = 50
    track_stride: int = 3
    track_dropout: float = 0.1
    image_size: int = 256
    track_encoder: TrackEncoderConfig = field(default_factory=lambda: TrackEncoderConfig(num_steps=51))
    context_to_frames: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.track_encoder, dict):
            self.track_encoder = TrackEncoderConfig(**self.track_encoder)
        _require(self.window >= 2, "window", "needs at least 2 frames")
        _require(self.fps >= 1, "fps", "must be >= 1")
        _require(self.bps_points >= 1, "bps_points", "must be >= 1")
        _require(self.bps_radius > 0, "bps_radius", "must be > 0")
        _require(self.object_points >= 4, "object_points", "must be >= 4")
        _require(self.d_model % self.num_heads == 0, "d_model", f"{self.d_model} is not divisible by num_heads={self.num_heads}")
        _require(self.num_layers >= 1, "num_layers", "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "dropout", "must lie in [0, 1)")
        _require(self.text_encoder in ("clip", "hashed"), "text_encoder", f"must be 'clip' or 'hashed', got {self.text_encoder!r}")
        _require(self.diffusion_steps >= 2, "diffusion_steps", "must be >= 2")
        _require(self.waypoint_every >= 1, "waypoint_every", "must be >= 1")
        _require(0 <= self.guidance_last_steps <= self.diffusion_steps, "guidance_last_steps", "must lie in [0, diffusion_steps]")
        _require(self.guidance_scale >= 0, "guidance_scale", "must be >= 0")
        _require(self.variant in ("arfm", "official"), "variant", f"must be 'arfm' or 'official', got {self.variant!r}")
        _require(self.d_k is None or self.d_k >= 1, "d_k", "must be >= 1 or None")
        _require(self.d_v is None or self.d_v >= 1, "d_v", "must be >= 1 or None")
        _require(self.track_horizon >= 1, "track_horizon", "must be >= 1")
        _require(self.track_stride >= 1, "track_stride", "must be >= 1")
        _require(0.0 <= self.track_dropout <= 1.0, "track_dropout", "must lie in [0, 1]")
        _require(
            self.track_encoder.num_steps == self.track_horizon + 1,
            "track_encoder",
            f"num_steps={self.track_encoder.num_steps} must equal track_horizon + 1 = {self.track_horizon + 1}",
        )

    @property
    def head_dims(self) -> tuple[int, int]:
        """``(d_k, d_v)`` per attention head of the official variant."""
        default = self.d_model // self.num_heads
        return (self.d_k or default, self.d_v or default)

    @property
    def motion_dim(self) -> int:
        """Numbers per frame: object centre 3 + object rotation 9 + 24 x 3 positions + 22 x 6 rotations + 4 contacts."""
        return 3 + 9 + 3 * NUM_JOINTS + 6 * NUM_ROT_JOINTS + NUM_CONTACTS


def tiny_chois_config(**overrides: Any) -> ChoisConfig:
    """CPU preset: 40-frame windows, narrow widths, 20 diffusion steps, hashed-word text."""
    cfg = ChoisConfig(
        window=40,
        bps_points=64,
        bps_hidden=64,
        bps_feature_dim=32,
        object_points=64,
        d_model=64,
        num_layers=2,
        num_heads=4,
        ffn_dim=128,
        dropout=0.0,
        text_encoder="hashed",
        text_dim=64,
        hashed_vocab=512,
        diffusion_steps=20,
        waypoint_every=10,
        guidance_last_steps=3,
        track_horizon=13,
        track_dropout=0.2,
        track_encoder=tiny_track_encoder_config(num_steps=14),
    )
    return dataclasses.replace(cfg, **overrides)


def official_chois_config(**overrides: Any) -> ChoisConfig:
    """The released CHOIS denoiser (lijiaman/chois_release, ``trainer_chois.py`` with the released scripts).

    Post-LN transformer, 4 layers, 4 heads of d_k = d_v = 256 over d_model 512, position-wise
    FFN 512 -> 512, window 120, cosine schedule of 1000 steps, x0 clamped to [-1, 1]. No track
    branch (parity with the official outputs; ``load_checkpoint(use_tracks=True)`` adds a
    zero-initialised one) and no guidance (ours acts in metres; the official guidance needs
    object SDFs and is not reproduced).
    """
    cfg = ChoisConfig(variant="official", d_k=256, d_v=256, ffn_dim=512, clamp_x0=True, use_tracks=False, guidance_last_steps=0)
    return dataclasses.replace(cfg, **overrides)


def chois_config_to_dict(cfg: ChoisConfig) -> dict:
    """JSON-able dict of a config."""
    return dataclasses.asdict(cfg)


def chois_config_from_dict(data: dict) -> ChoisConfig:
    """Rebuild a config saved beside a checkpoint; unknown keys are an error."""
    return config_from_dict(ChoisConfig, data, "CHOIS")


PRESETS = {"base": ChoisConfig, "tiny": tiny_chois_config, "official": official_chois_config}
