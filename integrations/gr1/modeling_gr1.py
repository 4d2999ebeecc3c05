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

``config.compat`` builds the official ARFM robotics or bytedance GR-1 instead (token order,
absolute positions, action chunks, shared decoder, ...: see
:mod:`integrations.gr1.configuration_gr1`); :mod:`integrations.gr1.convert` loads their
checkpoints. The public interface (``encode_*``, ``forward``, checkpoints) is the same.
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
from integrations.gr1.layers_gr1 import Block, SharedVideoDecoder, VideoDecoder, normalize_patches, patchify, sincos_2d
from track_encoder import TrackEncoder

GRIPPER_OBS_INDEX = 14
"""``robot_obs[14]`` is CALVIN's gripper action state (+1 open, -1 closed)."""
OFFICIAL_EPS = 1e-6
"""Epsilon of the official language L2 norm and image std (``x / (||x|| + eps)``, ``(x - m) / (s + eps)``)."""

__all__ = ["GR1Output", "GR1Policy", "gr1_loss", "normalize_patches", "patchify", "sincos_2d", "video_targets", "Block", "VideoDecoder"]


@dataclass
class GR1Output:
    """Per-timestep predictions: ``arm (B, T, 6)``, ``gripper_logit (B, T)``, video patches
    ``(B, T, P, patch^2 * 3)`` per camera (``None`` when ``predict_video`` is off), and the whole
    action chunk ``arm_chunk (B, T, C, 6)`` / ``gripper_chunk (B, T, C)`` (``arm`` is its first action)."""

    arm: torch.Tensor
    gripper_logit: torch.Tensor
    video_static: torch.Tensor | None
    video_gripper: torch.Tensor | None
    arm_chunk: torch.Tensor | None = None
    gripper_chunk: torch.Tensor | None = None


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
        self.resampler = PerceiverResampler(
            vit_dim, c.resampler_depth, c.resampler_latents, c.resampler_heads, c.resampler_dim_head, media_pos_emb=c.official
        )
        self.embed_patch = nn.Linear(vit_dim, h)
        self.embed_img = nn.Linear(vit_dim, h)
        if c.official:  # the official GR-1 projects the gripper camera with its own layers
            self.embed_hand_patch = nn.Linear(vit_dim, h)
            self.embed_hand_img = nn.Linear(vit_dim, h)
        self.embed_timestep = nn.Embedding(c.window, h)
        self.action_query = nn.Parameter(torch.zeros(1, h))
        if c.action_chunk > 1:
            self.action_chunk_queries = nn.Parameter(torch.zeros(c.action_chunk, h))
        self.obs_queries = nn.Parameter(torch.zeros(c.video_queries, h))
        self.obs_hand_queries = nn.Parameter(torch.zeros(c.video_queries, h))
        if c.use_tracks:
            self.track_encoder = TrackEncoder(c.track_encoder)
            self.embed_track = nn.Linear(c.track_encoder.dim, h)
            if not c.official:
                self.no_tracks = nn.Parameter(torch.zeros(h))
        self.embed_ln = nn.LayerNorm(h)
        if c.compat == "arfm_robotics":  # HF GPT-2 wpe over the flattened token index
            self.wpe = nn.Parameter(torch.zeros(c.max_positions, h))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(h, c.heads, c.inner, c.dropout, c.gpt_activation) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(h)
        if c.official:  # the official action MLP has no activation between or after its layers
            self.pred_act = nn.Sequential(nn.Linear(h, h // 2), nn.Linear(h // 2, h // 2))
        else:
            self.pred_act = nn.Sequential(nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, h // 2), nn.ReLU())
        self.pred_arm = nn.Linear(h // 2, c.arm_dim)
        self.pred_gripper = nn.Linear(h // 2, 1)
        if c.predict_video and c.official:
            self.decoder = SharedVideoDecoder(c)
        elif c.predict_video:
            self.decoder_static = VideoDecoder(c)
            self.decoder_gripper = VideoDecoder(c)
        is_query = torch.zeros(c.tokens_per_step, dtype=torch.bool)
        is_query[c.obs_tokens_per_step :] = True
        self.register_buffer("step_is_query", is_query, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """GPT-2 init (normal 0.02) for the trainable GR-1 parts; frozen backbones and the
        track encoder keep their own initialisation."""
        own = [self.embed_lang, self.embed_arm_state, self.embed_gripper_state, self.embed_state, self.embed_patch,
               self.embed_img, self.blocks, self.pred_act, self.pred_arm, self.pred_gripper]
        own += [self.embed_track] if self.config.use_tracks else []
        own += [self.embed_hand_patch, self.embed_hand_img] if self.config.official else []
        if self.config.predict_video:
            own += [self.decoder] if self.config.official else [self.decoder_static, self.decoder_gripper]
        for part in own:
            for module in part.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
        for name in ("action_query", "action_chunk_queries", "obs_queries", "obs_hand_queries", "no_tracks", "wpe"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)
        nn.init.normal_(self.embed_timestep.weight, std=0.02)

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
        std = self.img_std + OFFICIAL_EPS if self.config.official else self.img_std
        x = ((x - self.img_mean) / std).reshape(-1, *x.shape[-3:])
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
            return self.no_tracks_token().expand(*batch_shape, -1)
        if tracks.ndim != 5 or tracks.shape[-1] != 2 or tracks.shape[-2] != self.config.track_len:
            raise ValueError(f"tracks must be (B, T, N, {self.config.track_len}, 2) pixels, got {tuple(tracks.shape)}")
        b, t, n = tracks.shape[:3]
        point_mask = torch.ones(b, t, n, dtype=torch.bool, device=tracks.device) if point_mask is None else point_mask.bool()
        rows = point_mask.any(-1) if has_tracks is None else has_tracks.bool() & point_mask.any(-1)  # (B, T)
        out = self.no_tracks_token().expand(b, t, -1).clone()
        if rows.any():
            norm = pixels_to_normalized(tracks[rows].float(), self.config.track_frame_size)  # (R, N, L, 2)
            out[rows] = self.embed_track(self.track_encoder(norm, point_mask[rows])).to(out.dtype)
        return out

    def no_tracks_token(self) -> torch.Tensor:
        """``(hidden,)`` token of a step without tracks: ours is learned; the official model has
        none, so it encodes one all-zero track (pixel (0, 0) at every step, the official empty slot)."""
        if not self.config.official:
            return self.no_tracks
        zero = torch.zeros(1, 1, self.config.track_len, 2, device=self.embed_track.weight.device)
        return self.embed_track(self.track_encoder(pixels_to_normalized(zero, self.config.track_frame_size)))[0]

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
        text_emb = text_emb.float()
        if c.official:  # CLIP embedding / (||.|| + 1e-6), as the official forward does
            text_emb = text_emb / (text_emb.norm(dim=-1, keepdim=True) + OFFICIAL_EPS)
        lang = self.embed_lang(text_emb)[:, None].expand(-1, t, -1)

        def image_tokens(feats: torch.Tensor, embed_patch: nn.Module, embed_img: nn.Module) -> torch.Tensor:
            # (B, T, 1 + P, Dv) -> (B, T, L + 1, h): resampled patch latents, then the CLS token
            latents = self.resampler(feats[:, :, 1:].flatten(0, 1))  # (B * T, L, Dv)
            return torch.cat([embed_patch(latents).view(b, t, -1, c.hidden), embed_img(feats[:, :, :1])], dim=2)

        static = image_tokens(static_feats.float(), self.embed_patch, self.embed_img)
        hand = image_tokens(gripper_feats.float(), *((self.embed_hand_patch, self.embed_hand_img) if c.official else (self.embed_patch, self.embed_img)))
        parts = [lang[:, :, None], state[:, :, None]]
        track = [track_tokens[:, :, None]] if c.use_tracks else []
        parts += ([static, hand] + track) if c.official else (track + [static, hand])  # official: track last
        steps = self.embed_timestep.weight[:t][None, :, None]  # (1, T, 1, h)
        obs_tokens = torch.cat(parts, dim=2) + steps  # (B, T, K_obs, h)
        queries = self.action_query if c.action_chunk == 1 else self.action_chunk_queries + self.action_query  # (A, h)
        if c.video_query_tokens:
            queries = torch.cat([queries, self.obs_queries, self.obs_hand_queries])  # (A + 2Q, h)
        queries = queries.expand(b, t, -1, -1)
        if not c.official:  # ours gives the queries the step embedding too; the official code does not
            queries = queries + steps
        x = torch.cat([obs_tokens, queries], dim=2)  # (B, T, K, h)
        k = x.shape[2]
        x = self.embed_ln(x.reshape(b, t * k, c.hidden))
        if c.compat == "arfm_robotics":
            x = x + self.wpe[: t * k]
        x = self.drop(x)
        mask = self.attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_f(x).view(b, t, k, c.hidden)

        q0 = c.obs_tokens_per_step  # first action query within a step
        act = self.pred_act(x[:, :, q0 : q0 + c.action_chunk])  # (B, T, A, h / 2)
        arm, grip = self.pred_arm(act), self.pred_gripper(act).squeeze(-1)
        video_static = video_gripper = None
        if c.predict_video:
            v0, nq = q0 + c.action_chunk, c.video_queries
            obs, obs_hand = x[:, :, v0 : v0 + nq].flatten(0, 1), x[:, :, v0 + nq : v0 + 2 * nq].flatten(0, 1)
            dec_static, dec_hand = (self.decoder, self.decoder) if c.official else (self.decoder_static, self.decoder_gripper)
            video_static = dec_static(obs).view(b, t, c.num_patches, -1)
            video_gripper = dec_hand(obs_hand).view(b, t, c.num_patches, -1)
        return GR1Output(arm[:, :, 0], grip[:, :, 0], video_static, video_gripper, arm, grip)

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

    ``MSE(static video) + MSE(gripper video) + arm_loss_weight * SmoothL1(arm) + gripper_loss_weight * BCE(gripper)``,
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
    loss = c.arm_loss_weight * arm + c.gripper_loss_weight * grip
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
