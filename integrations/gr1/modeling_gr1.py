"""The GR-1 policy (Wu et al. 2023) with one track token per timestep (ARFM paper §3.5, §4.4).

A GPT-2-style causal transformer reads a window of ``T`` timesteps. Each timestep contributes,
in this order (``K = config.tokens_per_step`` tokens)::

    [lang, state, track, 9 static latents, static CLS, 9 hand latents, hand CLS, ACT, 10 OBS, 10 OBS_HAND]

The only position information is a learned per-timestep embedding added to every token of the
step (no per-token position embedding, as in GR-1). Attention is causal over the flattened
sequence, and the query tokens (ACT, OBS, OBS_HAND) are never attended to by any token, so
what a query outputs cannot leak into other tokens. The ACT output feeds the arm (6 relative
deltas) and gripper (1 logit) heads; the OBS outputs feed a small transformer decoder that
predicts the frame ``video_offset`` steps ahead as per-patch-normalised pixels.

The track token (ARFM) is the track encoder's [CLS] output over the future tracks starting at
the step's frame, projected to the GR-1 width; ``tracks=None`` gives a learned "no tracks"
embedding instead, so one checkpoint runs with and without a track predictor.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model

from arfm.backbones.text import ClipTextEncoder, HashedTextEncoder
from arfm.coords import pixels_to_normalized
from integrations.gr1.configuration_gr1 import GR1Config
from integrations.gr1.encoders_gr1 import IMAGENET_MEAN, IMAGENET_STD, PerceiverResampler, build_vision_encoder
from track_encoder import TrackEncoder

GRIPPER_OBS_INDEX = 14
"""``robot_obs[14]`` is CALVIN's gripper action state (+1 open, -1 closed)."""


class Block(nn.Module):
    """GPT-2 block: pre-norm self-attention (optionally masked) + GELU MLP."""

    def __init__(self, dim: int, heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, dim), nn.Dropout(dropout))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, S, D); mask: (B, 1, S, S) bool, True = may attend
        b, s, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.resid_drop(self.c_proj(attn.transpose(1, 2).reshape(b, s, d)))
        return x + self.mlp(self.ln_2(x))


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(grid * grid, dim)`` (MAE decoder style)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    parts = [f(c.reshape(-1, 1) * omega) for c in (xs, ys) for f in (torch.sin, torch.cos)]
    emb = torch.cat(parts, dim=1)  # (P, 4 * quarter)
    return F.pad(emb, (0, dim - emb.shape[1]))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(M, 3, H, W)`` -> ``(M, P, patch * patch * 3)``, patches in row-major order."""
    m, c, h, w = images.shape
    x = images.view(m, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(m, (h // patch) * (w // patch), patch * patch * c)


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch zero mean, unit variance (MAE ``norm_pix_loss`` target)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


class VideoDecoder(nn.Module):
    """OBS query outputs ``(M, Q, D)`` -> predicted patches ``(M, P, patch^2 * 3)``."""

    def __init__(self, config: GR1Config) -> None:
        super().__init__()
        d = config.hidden
        self.embed = nn.Linear(d, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos", sincos_2d(config.image_size // config.patch_size, d)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(d, config.decoder_heads, 4 * d, 0.0) for _ in range(config.decoder_depth))
        self.norm = nn.LayerNorm(d)
        self.pred = nn.Linear(d, config.patch_size**2 * 3)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        m, q, _ = queries.shape
        x = torch.cat([self.embed(queries), self.mask_token.expand(m, self.pos.shape[1], -1) + self.pos], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x[:, q:]))


@dataclass
class GR1Output:
    """Per-timestep predictions: ``arm (B, T, 6)``, ``gripper_logit (B, T)``, video patches
    ``(B, T, P, patch^2 * 3)`` per camera (``None`` when ``predict_video`` is off)."""

    arm: torch.Tensor
    gripper_logit: torch.Tensor
    video_static: torch.Tensor | None
    video_gripper: torch.Tensor | None


class GR1Policy(nn.Module):
    """GR-1 with an optional track token; see the module docstring for the token layout."""

    def __init__(self, config: GR1Config) -> None:
        super().__init__()
        self.config = c = config
        self.vision = build_vision_encoder(c.vit_model, c.image_size, c.patch_size, c.vit_checkpoint, dict(c.vit_overrides))
        if c.freeze_vision:
            self.vision.requires_grad_(False)
        vit_dim = int(self.vision.embed_dim)
        if c.text_encoder == "clip":
            self.text = ClipTextEncoder(c.clip_model, c.clip_checkpoint)
            text_dim = self.text.embed_dim
        else:
            self.text = HashedTextEncoder(c.text_vocab_size, c.text_dim)
            text_dim = c.text_dim
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        h = c.hidden
        self.embed_lang = nn.Linear(text_dim, h)
        self.embed_arm_state = nn.Linear(c.state_dim, h)
        self.embed_gripper_state = nn.Linear(2, h)
        self.embed_state = nn.Linear(2 * h, h)
        self.resampler = PerceiverResampler(vit_dim, c.resampler_depth, c.resampler_latents, c.resampler_heads, c.resampler_dim_head)
        self.embed_patch = nn.Linear(vit_dim, h)
        self.embed_img = nn.Linear(vit_dim, h)
        self.embed_timestep = nn.Embedding(c.window, h)
        self.action_query = nn.Parameter(torch.zeros(1, h))
        self.obs_queries = nn.Parameter(torch.zeros(c.video_queries, h))
        self.obs_hand_queries = nn.Parameter(torch.zeros(c.video_queries, h))
        if c.use_tracks:
            self.track_encoder = TrackEncoder(c.track_encoder)
            self.embed_track = nn.Linear(c.track_encoder.dim, h)
            self.no_tracks = nn.Parameter(torch.zeros(h))
        self.embed_ln = nn.LayerNorm(h)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(h, c.heads, c.inner, c.dropout) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(h)
        self.pred_act = nn.Sequential(nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, h // 2), nn.ReLU())
        self.pred_arm = nn.Linear(h // 2, c.arm_dim)
        self.pred_gripper = nn.Linear(h // 2, 1)
        if c.predict_video:
            self.decoder_static = VideoDecoder(c)
            self.decoder_gripper = VideoDecoder(c)
        is_query = torch.zeros(c.tokens_per_step, dtype=torch.bool)
        is_query[-(1 + 2 * c.video_queries) :] = True
        self.register_buffer("step_is_query", is_query, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """GPT-2 init (normal 0.02) for the trainable GR-1 parts; frozen backbones and the
        track encoder keep their own initialisation."""
        own = [self.embed_lang, self.embed_arm_state, self.embed_gripper_state, self.embed_state, self.embed_patch,
               self.embed_img, self.blocks, self.pred_act, self.pred_arm, self.pred_gripper]
        own += [self.embed_track] if self.config.use_tracks else []
        own += [self.decoder_static, self.decoder_gripper] if self.config.predict_video else []
        for part in own:
            for module in part.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
        for p in [self.action_query, self.obs_queries, self.obs_hand_queries, self.embed_timestep.weight]:
            nn.init.normal_(p, std=0.02)
        if self.config.use_tracks:
            nn.init.normal_(self.no_tracks, std=0.02)

    def train(self, mode: bool = True) -> "GR1Policy":
        super().train(mode)
        if self.config.freeze_vision:
            self.vision.eval()  # frozen MAE: no dropout / stochastic depth
        return self

    # ----- observation encoders (frozen parts are cacheable per frame) -----

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(..., 3, H, W)`` uint8 or float in [0, 1] -> float in [0, 1] at ``image_size``."""
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).to(self.img_mean.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            x = F.interpolate(x, size=(self.config.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0, 1).reshape(*lead, 3, self.config.image_size, self.config.image_size)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """ViT features ``(..., 1 + P, D_vit)`` (CLS first) of images ``(..., 3, H, W)``."""
        x = self.prepare_images(images)
        lead = x.shape[:-3]
        x = ((x - self.img_mean) / self.img_std).reshape(-1, *x.shape[-3:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            feats = self.vision.forward_features(x)  # (M, 1 + P, D_vit)
        return feats.reshape(*lead, *feats.shape[1:])

    def encode_text(self, instructions: list[str]) -> torch.Tensor:
        """Instruction embeddings ``(B, text_dim)``."""
        return self.text(list(instructions))

    def encode_tracks(
        self, tracks: torch.Tensor | None, point_mask: torch.Tensor | None = None, has_tracks: torch.Tensor | None = None,
        batch_shape: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Track tokens ``(B, T, hidden)``.

        Args:
            tracks: ``(B, T, N, track_len, 2)`` pixel positions in the static camera
                (``track_frame_size`` square), or ``None`` for "no tracks" everywhere.
            point_mask: ``(B, T, N)`` bool, True for real points (padding ignored).
            has_tracks: ``(B, T)`` bool; False steps get the "no tracks" embedding.
            batch_shape: ``(B, T)``, required when ``tracks`` is None.
        """
        if not self.config.use_tracks:
            raise ValueError("this GR1Policy was built with use_tracks=False: it has no track token")
        if tracks is None:
            if batch_shape is None:
                raise ValueError("encode_tracks(None) needs batch_shape=(B, T)")
            return self.no_tracks.expand(*batch_shape, -1)
        if tracks.ndim != 5 or tracks.shape[-1] != 2 or tracks.shape[-2] != self.config.track_len:
            raise ValueError(f"tracks must be (B, T, N, {self.config.track_len}, 2) pixels, got {tuple(tracks.shape)}")
        b, t, n = tracks.shape[:3]
        point_mask = torch.ones(b, t, n, dtype=torch.bool, device=tracks.device) if point_mask is None else point_mask.bool()
        rows = point_mask.any(-1) if has_tracks is None else has_tracks.bool() & point_mask.any(-1)  # (B, T)
        out = self.no_tracks.expand(b, t, -1).clone()
        if rows.any():
            norm = pixels_to_normalized(tracks[rows].float(), self.config.track_frame_size)  # (R, N, L, 2)
            out[rows] = self.embed_track(self.track_encoder(norm, point_mask[rows])).to(out.dtype)
        return out

    # ----- the transformer -----

    def attention_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` bool: causal, query tokens never attended, padded steps never attended."""
        b, t = valid.shape
        k = self.config.tokens_per_step
        s = t * k
        causal = torch.ones(s, s, dtype=torch.bool, device=valid.device).tril()
        key_ok = (~self.step_is_query).repeat(t)[None] & valid.repeat_interleave(k, dim=1)  # (B, S)
        return (causal[None] & key_ok[:, None, :])[:, None]

    def forward(
        self,
        static_feats: torch.Tensor,
        gripper_feats: torch.Tensor,
        text_emb: torch.Tensor,
        robot_obs: torch.Tensor,
        track_tokens: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> GR1Output:
        """Run the policy on precomputed observation features.

        Args:
            static_feats, gripper_feats: ``(B, T, 1 + P, D_vit)`` from :meth:`encode_images`.
            text_emb: ``(B, text_dim)`` from :meth:`encode_text`.
            robot_obs: ``(B, T, >= 15)`` CALVIN robot observations.
            track_tokens: ``(B, T, hidden)`` from :meth:`encode_tracks` (required iff ``use_tracks``).
            valid: ``(B, T)`` bool, False on padded steps (padding only at the end; step 0 valid).
        """
        c = self.config
        b, t = robot_obs.shape[:2]
        if t > c.window:
            raise ValueError(f"sequence of {t} steps exceeds the policy window of {c.window}")
        if robot_obs.shape[-1] <= GRIPPER_OBS_INDEX:
            raise ValueError(f"robot_obs must have CALVIN's 15 entries, got {robot_obs.shape[-1]}")
        valid = torch.ones(b, t, dtype=torch.bool, device=robot_obs.device) if valid is None else valid.bool()
        if not valid[:, 0].all():
            raise ValueError("valid[:, 0] must be True: pad windows at the end")
        if c.use_tracks and track_tokens is None:
            raise ValueError("this policy uses tracks: pass track_tokens (encode_tracks(None, ...) for none)")
        robot_obs = robot_obs.float()
        gripper_state = F.one_hot((robot_obs[..., GRIPPER_OBS_INDEX] > 0).long(), 2).float()
        state = self.embed_state(torch.cat([self.embed_arm_state(robot_obs[..., : c.state_dim]), self.embed_gripper_state(gripper_state)], -1))
        lang = self.embed_lang(text_emb.float())[:, None].expand(-1, t, -1)

        def image_tokens(feats: torch.Tensor) -> torch.Tensor:  # (B, T, 1 + P, Dv) -> (B, T, L + 1, h)
            latents = self.resampler(feats[:, :, 1:].flatten(0, 1))  # (B * T, L, Dv)
            return torch.cat([self.embed_patch(latents).view(b, t, -1, c.hidden), self.embed_img(feats[:, :, :1])], dim=2)

        parts = [lang[:, :, None], state[:, :, None]]
        if c.use_tracks:
            parts.append(track_tokens[:, :, None])
        parts += [image_tokens(static_feats.float()), image_tokens(gripper_feats.float())]
        queries = torch.cat([self.action_query, self.obs_queries, self.obs_hand_queries])  # (1 + 2Q, h)
        parts.append(queries.expand(b, t, -1, -1))
        x = torch.cat(parts, dim=2) + self.embed_timestep.weight[:t][None, :, None]  # (B, T, K, h)
        k = x.shape[2]
        x = self.drop(self.embed_ln(x.reshape(b, t * k, c.hidden)))
        mask = self.attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_f(x).view(b, t, k, c.hidden)

        q0 = k - 1 - 2 * c.video_queries  # index of ACT within a step
        act = self.pred_act(x[:, :, q0])
        video_static = video_gripper = None
        if c.predict_video:
            obs = x[:, :, q0 + 1 : q0 + 1 + c.video_queries].flatten(0, 1)
            obs_hand = x[:, :, q0 + 1 + c.video_queries :].flatten(0, 1)
            video_static = self.decoder_static(obs).view(b, t, c.num_patches, -1)
            video_gripper = self.decoder_gripper(obs_hand).view(b, t, c.num_patches, -1)
        return GR1Output(self.pred_arm(act), self.pred_gripper(act).squeeze(-1), video_static, video_gripper)

    # ----- checkpoints -----

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (each atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(fd)
        save_safetensors_model(self, tmp)
        os.replace(tmp, directory / "model.safetensors")
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.config.to_dict(), f, indent=2)
        os.replace(tmp, directory / "config.json")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "GR1Policy":
        """Load a policy written by :meth:`save_pretrained` (no external weight files needed)."""
        directory = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"GR-1 checkpoint file missing: {directory / name}")
        config = GR1Config.from_dict(json.loads((directory / "config.json").read_text()))
        # Backbone weights live in model.safetensors; the original weight files are not needed.
        build = GR1Config.from_dict({**config.to_dict(), "vit_checkpoint": None, "clip_checkpoint": None})
        model = cls(build)
        load_safetensors_model(model, directory / "model.safetensors", device=str(device))
        model.config = config
        return model.to(device)


def video_targets(model: GR1Policy, frames: torch.Tensor) -> torch.Tensor:
    """Per-patch-normalised pixel targets ``(B, T, P, patch^2 * 3)`` of future frames ``(B, T, 3, H, W)``."""
    x = model.prepare_images(frames)
    b, t = x.shape[:2]
    return normalize_patches(patchify(x.flatten(0, 1), model.config.patch_size)).view(b, t, model.config.num_patches, -1)


def gr1_loss(model: GR1Policy, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """GR-1 loss on a batch from :class:`integrations.gr1.data.CalvinWindowDataset`.

    ``MSE(static video) + MSE(gripper video) + arm_loss_weight * SmoothL1(arm) + BCE(gripper)``,
    averaged over valid steps (video terms over steps whose future frame exists). During training,
    each sample's tracks are replaced by the "no tracks" embedding with probability
    ``track_dropout``.

    Returns:
        The scalar loss and its parts as floats.
    """
    c = model.config
    valid = batch["valid"].bool()
    b, t = valid.shape
    static = model.encode_images(batch["rgb_static"])
    gripper = model.encode_images(batch["rgb_gripper"])
    text = model.encode_text(batch["instruction"])
    tokens = None
    if c.use_tracks:
        has = batch.get("has_tracks")
        has = torch.ones(b, dtype=torch.bool, device=valid.device) if has is None else has.bool().to(valid.device)
        if model.training and c.track_dropout > 0:
            keep = torch.rand(b, generator=generator, device="cpu").to(valid.device) >= c.track_dropout
            has = has & keep
        tracks = batch.get("tracks")
        if tracks is None:
            tokens = model.encode_tracks(None, batch_shape=(b, t))
        else:
            tokens = model.encode_tracks(tracks, batch.get("track_mask"), has[:, None].expand(b, t))
    out = model(static, gripper, text, batch["robot_obs"], tokens, valid)
    actions = batch["actions"].float()
    w = valid.float()
    denom = w.sum().clamp(min=1)
    arm = (F.smooth_l1_loss(out.arm, actions[..., : c.arm_dim], reduction="none").mean(-1) * w).sum() / denom
    grip_target = (actions[..., c.arm_dim] > 0).float()
    grip = (F.binary_cross_entropy_with_logits(out.gripper_logit, grip_target, reduction="none") * w).sum() / denom
    loss = c.arm_loss_weight * arm + grip
    parts = {"arm": arm.item(), "gripper": grip.item()}
    if c.predict_video:
        fv = (valid & batch["future_valid"].bool()).float()
        fden = fv.sum().clamp(min=1)
        for name, pred, key in (("video_static", out.video_static, "future_static"), ("video_gripper", out.video_gripper, "future_gripper")):
            target = video_targets(model, batch[key])
            term = (((pred - target) ** 2).mean((-1, -2)) * fv).sum() / fden
            loss = loss + c.video_loss_weight * term
            parts[name] = term.item()
    parts["loss"] = loss.item()
    return loss, parts
