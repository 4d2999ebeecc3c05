"""The CHOIS denoiser with an ARFM track branch (CHOIS, Li et al. 2024; ARFM paper §3.5 and §4.3).

Per frame the network reads ``[noisy motion (220), object BPS feature (256), masked clean
conditions (220)]``, mixes them with a 1x1 convolution to ``d_model`` and prepends a leading token
``timestep embedding + text feature (+ track feature)``; a transformer predicts the clean motion x0.
The track feature enters through a zero-initialised linear layer, so at initialisation (or when
loading a CHOIS checkpoint without the branch) the output is exactly that of plain CHOIS. With
``config.context_to_frames`` the same vector is also added to every frame token (not CHOIS's
layout; see :class:`~integrations.chois.configuration_chois.ChoisConfig`).
Diffusion: cosine schedule, x0 prediction, ancestral DDPM sampling with guidance on the predicted
x0 in the last steps (hand-object contact, object above the floor, feet on the floor).

``config.variant == "official"`` swaps the transformer for the released CHOIS layout
(:class:`OfficialBlock`: post-LN, per-head d_k / d_v, padding zeroes outputs but not keys), the
stored sinusoid position table and the 64-wide integer-step time embedding, so a converted
release checkpoint (``convert.py``) reproduces the official denoiser and DDPM sampler.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from track_encoder import TrackEncoder

from arfm.backbones.text import ClipTextEncoder, HashedTextEncoder
from arfm.coords import pixels_to_normalized
from integrations.chois.configuration_chois import ChoisConfig
from integrations.chois.representation import CONTACTS, MOTION_DIM, condition_mask, unpack_motion
from integrations.chois.skeleton import FOOT_JOINTS, HAND_JOINTS, forward_kinematics


def cosine_alphas_cumprod(steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal cosine schedule: ``alpha_bar_t`` for ``t = 1..steps`` (betas clipped at 0.999)."""
    x = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
    f = torch.cos(((x / steps) + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``(...,)`` -> ``(..., dim)`` sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


OFFICIAL_TIME_DIM = 64
"""Width of the official sinusoidal step embedding (hard-coded in CHOIS)."""
OFFICIAL_TIME_HIDDEN = 256
"""Hidden width of the official time MLP (64 -> 256 -> GELU -> d_model)."""


def official_step_embedding(t: torch.Tensor, dim: int = OFFICIAL_TIME_DIM) -> torch.Tensor:
    """CHOIS's step embedding: ``[sin, cos]`` of the integer step with frequencies ``exp(-ln(1e4) i / (half - 1))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half, device=t.device, dtype=torch.float32))
    angles = t.float()[:, None] * freqs  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def sinusoid_table(rows: int, dim: int) -> torch.Tensor:
    """Transformer position table ``(rows, dim)``: sin on even, cos on odd dims, row 0 (padding) zero."""
    pos = np.arange(rows, dtype=np.float64)[:, None]
    angles = pos / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None]  # (rows, dim)
    table = np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles))
    table[0] = 0.0
    return torch.from_numpy(table).float()


class OfficialBlock(nn.Module):
    """One post-LN CHOIS decoder layer: ``LN(x + attn(x))`` then ``LN(x + W2 relu(W1 x))``.

    Heads have their own query/key width ``d_k`` and value width ``d_v``; the temperature is
    ``sqrt(d_k)``. Attention is full: padded frames still act as keys, only this block's outputs
    at padded positions are zeroed (as the official code does).
    """

    def __init__(self, d_model: int, num_heads: int, d_k: int, d_v: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.d_k, self.d_v = num_heads, d_k, d_v
        self.w_q = nn.Linear(d_model, num_heads * d_k)
        self.w_k = nn.Linear(d_model, num_heads * d_k)
        self.w_v = nn.Linear(d_model, num_heads * d_v)
        self.fc = nn.Linear(num_heads * d_v, d_model)
        self.attn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_model))
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x: (B, L, D)``, ``keep: (B, L, 1)`` float (0 at padded positions) -> ``(B, L, D)``."""
        b, n, _ = x.shape
        q = self.w_q(x).view(b, n, self.num_heads, self.d_k).transpose(1, 2)  # (B, H, L, d_k)
        k = self.w_k(x).view(b, n, self.num_heads, self.d_k).transpose(1, 2)
        v = self.w_v(x).view(b, n, self.num_heads, self.d_v).transpose(1, 2)  # (B, H, L, d_v)
        p = self.dropout.p if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # scale 1/sqrt(d_k)
        attn = attn.transpose(1, 2).reshape(b, n, self.num_heads * self.d_v)
        x = self.attn_norm(x + self.dropout(self.fc(attn))) * keep
        return self.ffn_norm(x + self.dropout(self.ffn(x))) * keep


class ChoisDenoiser(nn.Module):
    """x0-predicting transformer (see module docstring)."""

    def __init__(self, config: ChoisConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.bps_mlp = nn.Sequential(nn.Linear(3 * config.bps_points, config.bps_hidden), nn.ReLU(), nn.Linear(config.bps_hidden, config.bps_feature_dim))
        self.input_proj = nn.Conv1d(2 * MOTION_DIM + config.bps_feature_dim, d, kernel_size=1)
        self.text = HashedTextEncoder(config.hashed_vocab, config.text_dim) if config.text_encoder == "hashed" else ClipTextEncoder(config.clip_model, config.clip_checkpoint)
        self.text_proj = nn.Linear(config.text_dim, d)
        if config.variant == "official":
            self.time_mlp = nn.Sequential(nn.Linear(OFFICIAL_TIME_DIM, OFFICIAL_TIME_HIDDEN), nn.GELU(), nn.Linear(OFFICIAL_TIME_HIDDEN, d))
            d_k, d_v = config.head_dims
            self.blocks = nn.ModuleList(OfficialBlock(d, config.num_heads, d_k, d_v, config.ffn_dim, config.dropout) for _ in range(config.num_layers))
            # stored (not recomputed) so a checkpoint's table is used as is; rows 1..W+1 are read
            self.register_buffer("position_table", sinusoid_table(config.window + 2, d))
        else:
            self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
            layer = nn.TransformerEncoderLayer(d, config.num_heads, config.ffn_dim, config.dropout, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, MOTION_DIM)
        if config.use_tracks:
            self.track_encoder = TrackEncoder(config.track_encoder)
            self.track_proj = nn.Linear(config.track_encoder.dim, d)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Zero the track projection: adding the branch leaves the network's output unchanged."""
        if self.config.use_tracks:
            nn.init.zeros_(self.track_proj.weight)
            nn.init.zeros_(self.track_proj.bias)

    def encode_context(
        self, captions: list[str] | None, tracks: torch.Tensor | None = None, track_keep: torch.Tensor | None = None, text_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The step-independent part of the leading token: text feature (+ track feature), ``(B, D)``.

        Args:
            captions: ``B`` strings (ignored when ``text_features`` is given).
            tracks: ``(B, N, H + 1, 2)`` pixel tracks or ``None`` (no track conditioning).
            track_keep: ``(B,)`` bool, False drops that sample's tracks (training dropout).
            text_features: ``(B, text_dim)`` precomputed text-encoder outputs (e.g. CLIP
                ``encode_text`` features, as the official CHOIS pipeline caches them).
        """
        if text_features is None:
            if captions is None:
                raise ValueError("encode_context needs captions or text_features")
            text_features = self.text(captions)
        elif text_features.shape[-1] != self.config.text_dim:
            raise ValueError(f"text_features must be (B, {self.config.text_dim}), got {tuple(text_features.shape)}")
        context = self.text_proj(text_features)
        if tracks is not None:
            if not self.config.use_tracks:
                raise ValueError("tracks were given but this CHOIS model was built with use_tracks=False")
            feat = self.track_proj(self.track_encoder(pixels_to_normalized(tracks, self.config.image_size)))
            context = context + (feat if track_keep is None else feat * track_keep[:, None].to(feat))
        return context

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """``(B,)`` integer steps -> ``(B, D)`` step part of the leading token."""
        if self.config.variant == "official":
            return self.time_mlp(official_step_embedding(t))
        return self.time_mlp(sinusoidal(t, self.config.d_model))

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, bps: torch.Tensor, context: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the (normalised) clean motion.

        Args:
            x_t: ``(B, W, 220)`` noisy motion; t: ``(B,)`` long steps; cond: ``(B, W, 220)`` masked
            clean conditions; bps: ``(B, 3 * bps_points)``; context: :meth:`encode_context` output.
            padding_mask: ``(B, W)`` bool, True on real frames (official variant only); ``None``
                = all frames real.
        """
        b, w, _ = x_t.shape
        obj = self.bps_mlp(bps)[:, None].expand(-1, w, -1)  # (B, W, bps_feature_dim)
        h = self.input_proj(torch.cat([x_t, obj, cond], dim=-1).transpose(1, 2)).transpose(1, 2)  # (B, W, D)
        if self.config.context_to_frames:
            h = h + context[:, None]
        lead = self.time_embedding(t) + context  # (B, D)
        seq = torch.cat([lead[:, None], h], dim=1)  # (B, 1 + W, D)
        if self.config.variant == "official":
            if w + 2 > self.position_table.shape[0]:
                raise ValueError(f"x_t has {w} frames; the official position table covers at most {self.position_table.shape[0] - 2}")
            keep = torch.ones(b, w + 1, 1, device=seq.device, dtype=seq.dtype)
            if padding_mask is not None:
                if padding_mask.shape != (b, w):
                    raise ValueError(f"padding_mask must be (B, W) = {(b, w)}, got {tuple(padding_mask.shape)}")
                keep[:, 1:, 0] = padding_mask.to(seq.dtype)  # the leading token is never padding
            seq = seq + self.position_table[1 : w + 2]  # positions 1..W+1 (row 0 is the padding row)
            for block in self.blocks:
                seq = block(seq, keep)
            return self.out(seq[:, 1:])  # (B, W, 220)
        if padding_mask is not None:
            raise ValueError("padding_mask is supported by the official variant only (config.variant='official')")
        seq = seq + sinusoidal(torch.arange(w + 1, device=seq.device), self.config.d_model)
        return self.out(self.norm(self.transformer(seq)[:, 1:]))  # (B, W, 220)


class ChoisModel(nn.Module):
    """Denoiser + diffusion + losses + guided sampling; motion statistics live in buffers."""

    def __init__(self, config: ChoisConfig) -> None:
        super().__init__()
        self.config = config
        self.denoiser = ChoisDenoiser(config)
        ab = cosine_alphas_cumprod(config.diffusion_steps)
        self.register_buffer("alphas_cumprod", ab.float())
        self.register_buffer("alphas_cumprod_prev", torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]]).float())
        self.register_buffer("motion_mean", torch.zeros(MOTION_DIM))
        self.register_buffer("motion_std", torch.ones(MOTION_DIM))
        self.register_buffer("cond_mask", condition_mask(config.window, config.waypoint_every))

    def set_normalizer(self, motions: torch.Tensor) -> None:
        """Per-dimension mean/std from training motions ``(..., 220)`` (std floored at 1e-2; contacts kept in [0, 1])."""
        flat = motions.reshape(-1, MOTION_DIM).float()
        self.motion_mean.copy_(flat.mean(0))
        self.motion_std.copy_(flat.std(0).clamp(min=1e-2))
        self.motion_mean[CONTACTS] = 0.0
        self.motion_std[CONTACTS] = 1.0

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.motion_std + self.motion_mean

    def _inputs(self, motion: torch.Tensor, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Masked clean conditions; ``cond_mask`` (``(B, W, 220)``, 1 = given) overrides the config's mask."""
        if cond_mask is None:
            if motion.shape[1:] != (self.config.window, MOTION_DIM):
                raise ValueError(f"motion must be (B, {self.config.window}, {MOTION_DIM}), got {tuple(motion.shape)}")
            cond_mask = self.cond_mask
        elif cond_mask.shape != motion.shape:
            raise ValueError(f"cond_mask must have the motion's shape {tuple(motion.shape)}, got {tuple(cond_mask.shape)}")
        return self.normalize(motion) * cond_mask

    def geometry_losses(self, x0: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """FK (hands, feet), object-keypoint and contact losses of a predicted motion (metres)."""
        pred, gt = unpack_motion(x0), unpack_motion(batch["motion"])
        fk = forward_kinematics(pred["joints"][..., 0, :], pred["global_rot"], batch["rest_offsets"][:, None])
        ends = list(HAND_JOINTS + FOOT_JOINTS)
        loss_fk = (fk[..., ends, :] - gt["joints"][..., ends, :]).abs().mean()
        pts = batch["object_points"][:, None]  # (B, 1, P, 3)
        pred_pts = pts @ pred["obj_rot"].transpose(-1, -2) + pred["obj_com"][..., None, :]
        gt_pts = pts @ gt["obj_rot"].transpose(-1, -2) + gt["obj_com"][..., None, :]
        loss_obj = (pred_pts - gt_pts).abs().mean()
        hand_dist = torch.cdist(fk[..., list(HAND_JOINTS), :], pred_pts).min(dim=-1).values  # (B, W, 2)
        in_contact = gt["contacts"][..., :2]
        loss_contact = (hand_dist * in_contact).sum() / in_contact.sum().clamp(min=1)
        return {"fk": loss_fk, "obj_pts": loss_obj, "contact": loss_contact}

    def loss(self, batch: dict, tracks: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses on a batch from :class:`~integrations.chois.data.fbm_dataset.FbmWindowDataset`; ``total`` is optimised."""
        motion = batch["motion"]
        b = motion.shape[0]
        dev = motion.device
        x0 = self.normalize(motion)
        t = torch.randint(0, self.config.diffusion_steps, (b,), device=dev, generator=generator)
        ab = self.alphas_cumprod[t][:, None, None]
        noise = torch.randn(x0.shape, device=dev, generator=generator)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        keep = None
        if tracks is not None and self.config.track_dropout > 0:
            keep = torch.rand(b, device=dev, generator=generator) >= self.config.track_dropout
        context = self.denoiser.encode_context(batch["caption"], tracks, keep)
        pred = self.denoiser(x_t, t, self._inputs(motion), batch["bps"], context)
        losses = {"l1": (pred - x0).abs().mean()}
        losses.update(self.geometry_losses(self.denormalize(pred), batch))
        cfg = self.config
        losses["total"] = losses["l1"] + cfg.loss_w_fk * losses["fk"] + cfg.loss_w_obj_pts * losses["obj_pts"] + cfg.loss_w_contact * losses["contact"]
        return losses

    def forward(self, batch: dict, tracks: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss`; going through ``forward`` lets wrappers (DDP via accelerate) sync gradients."""
        return self.loss(batch, tracks, generator)

    def guidance_loss(self, motion: torch.Tensor, batch: dict) -> torch.Tensor:
        """Guidance energy on a (denormalised) motion: contact, object above floor, feet on floor."""
        pred = unpack_motion(motion)
        pts = batch["object_points"][:, None] @ pred["obj_rot"].transpose(-1, -2) + pred["obj_com"][..., None, :]
        hands = pred["joints"][..., list(HAND_JOINTS), :]
        hand_dist = torch.cdist(hands, pts).min(dim=-1).values  # (B, W, 2)
        contact = (pred["contacts"][..., :2] > 0.5).float()
        above = (-pts[..., 2]).clamp(min=0).sum(-1)  # (B, W)
        feet = pred["joints"][..., list(FOOT_JOINTS), 2].min(dim=-1).values  # (B, W)
        return (hand_dist * contact).sum() + above.sum() + feet.abs().sum()

    @torch.no_grad()
    def sample(
        self, batch: dict, tracks: torch.Tensor | None = None, generator: torch.Generator | None = None, guidance: bool = True, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Generate motions ``(B, W, 220)`` (metres) for the conditions in ``batch`` (``motion`` supplies the masked conditions only).

        Args:
            batch: ``motion``, ``bps``, ``caption``, ``object_points`` as from the dataset;
                optional ``cond_mask`` (``(B, W, 220)``, 1 = given; default the config's mask),
                ``padding_mask`` (``(B, W)`` bool, official variant) and ``text_features``
                (``(B, text_dim)``, used instead of encoding ``caption``).
            tracks: ``(B, N, H + 1, 2)`` pixel tracks or ``None``.
            generator: for reproducible noise.
            guidance: apply the guidance energy on the last ``guidance_last_steps`` steps.
            noise: ``(steps + 1, B, W, 220)`` recorded draws instead of fresh ones: draw 0 is x_T,
                draw k the noise of the k-th denoising step (the official sampler's order; the
                last one is unused).
        """
        cond = self._inputs(batch["motion"], batch.get("cond_mask"))
        b, w, dim = cond.shape
        steps = self.config.diffusion_steps
        if noise is not None and noise.shape != (steps + 1, b, w, dim):
            raise ValueError(f"noise must be (steps + 1, B, W, D) = {(steps + 1, b, w, dim)}, got {tuple(noise.shape)}")
        draw = (lambda k: noise[k].to(cond)) if noise is not None else (lambda k: torch.randn(b, w, dim, device=cond.device, generator=generator))
        x = draw(0)
        context = self.denoiser.encode_context(batch.get("caption"), tracks, text_features=batch.get("text_features"))
        padding = batch.get("padding_mask")
        for k, step in enumerate(reversed(range(steps)), start=1):
            t = torch.full((b,), step, device=cond.device, dtype=torch.long)
            x0 = self.denoiser(x, t, cond, batch["bps"], context, padding)
            if self.config.clamp_x0:
                x0 = x0.clamp(-1.0, 1.0)
            if guidance and step < self.config.guidance_last_steps and self.config.guidance_scale > 0:
                with torch.enable_grad():
                    x0_g = x0.detach().requires_grad_(True)
                    grad = torch.autograd.grad(self.guidance_loss(self.denormalize(x0_g), batch), x0_g)[0]
                x0 = x0 - self.config.guidance_scale * grad / grad.flatten(1).norm(dim=1).clamp(min=1e-8)[:, None, None]
            ab, ab_prev = self.alphas_cumprod[step], self.alphas_cumprod_prev[step]
            if step == 0:
                x = x0
                break
            beta = 1 - ab / ab_prev
            mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x
            var = beta * (1 - ab_prev) / (1 - ab)
            x = mean + var.sqrt() * draw(k)
        return self.denormalize(x)
