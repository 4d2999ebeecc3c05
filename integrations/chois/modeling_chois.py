"""The CHOIS denoiser with an ARFM track branch (CHOIS, Li et al. 2024; ARFM paper §3.5 and §4.3).

Per frame the network reads ``[noisy motion (220), object BPS feature (256), masked clean
conditions (220)]``, mixes them with a 1x1 convolution to ``d_model`` and prepends a leading token
``timestep embedding + text feature (+ track feature)``; a transformer predicts the clean motion x0.
The track feature enters through a zero-initialised linear layer, so at initialisation (or when
loading a CHOIS checkpoint without the branch) the output is exactly that of plain CHOIS.
Diffusion: cosine schedule, x0 prediction, ancestral DDPM sampling with guidance on the predicted
x0 in the last steps (hand-object contact, object above the floor, feet on the floor).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
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


class ChoisDenoiser(nn.Module):
    """x0-predicting transformer (see module docstring)."""

    def __init__(self, config: ChoisConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.bps_mlp = nn.Sequential(nn.Linear(3 * config.bps_points, config.bps_hidden), nn.ReLU(), nn.Linear(config.bps_hidden, config.bps_feature_dim))
        self.input_proj = nn.Conv1d(2 * MOTION_DIM + config.bps_feature_dim, d, kernel_size=1)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text = HashedTextEncoder(config.hashed_vocab, config.text_dim) if config.text_encoder == "hashed" else ClipTextEncoder(config.clip_model, config.clip_checkpoint)
        self.text_proj = nn.Linear(config.text_dim, d)
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

    def encode_context(self, captions: list[str], tracks: torch.Tensor | None = None, track_keep: torch.Tensor | None = None) -> torch.Tensor:
        """The step-independent part of the leading token: text feature (+ track feature), ``(B, D)``.

        Args:
            captions: ``B`` strings.
            tracks: ``(B, N, H + 1, 2)`` pixel tracks or ``None`` (no track conditioning).
            track_keep: ``(B,)`` bool, False drops that sample's tracks (training dropout).
        """
        context = self.text_proj(self.text(captions))
        if tracks is not None:
            if not self.config.use_tracks:
                raise ValueError("tracks were given but this CHOIS model was built with use_tracks=False")
            feat = self.track_proj(self.track_encoder(pixels_to_normalized(tracks, self.config.image_size)))
            context = context + (feat if track_keep is None else feat * track_keep[:, None].to(feat))
        return context

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, bps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predict the (normalised) clean motion.

        Args:
            x_t: ``(B, W, 220)`` noisy motion; t: ``(B,)`` long steps; cond: ``(B, W, 220)`` masked
            clean conditions; bps: ``(B, 3 * bps_points)``; context: :meth:`encode_context` output.
        """
        b, w, _ = x_t.shape
        obj = self.bps_mlp(bps)[:, None].expand(-1, w, -1)  # (B, W, bps_feature_dim)
        h = self.input_proj(torch.cat([x_t, obj, cond], dim=-1).transpose(1, 2)).transpose(1, 2)  # (B, W, D)
        lead = self.time_mlp(sinusoidal(t, self.config.d_model)) + context  # (B, D)
        seq = torch.cat([lead[:, None], h], dim=1)  # (B, 1 + W, D)
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

    def _inputs(self, motion: torch.Tensor) -> torch.Tensor:
        if motion.shape[1:] != (self.config.window, MOTION_DIM):
            raise ValueError(f"motion must be (B, {self.config.window}, {MOTION_DIM}), got {tuple(motion.shape)}")
        return self.normalize(motion) * self.cond_mask

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
    def sample(self, batch: dict, tracks: torch.Tensor | None = None, generator: torch.Generator | None = None, guidance: bool = True) -> torch.Tensor:
        """Generate motions ``(B, W, 220)`` (metres) for the conditions in ``batch`` (``motion`` supplies the masked conditions only).

        Args:
            batch: ``motion``, ``bps``, ``caption``, ``object_points`` as from the dataset.
            tracks: ``(B, N, H + 1, 2)`` pixel tracks or ``None``.
            generator: for reproducible noise.
            guidance: apply the guidance energy on the last ``guidance_last_steps`` steps.
        """
        cond = self._inputs(batch["motion"])
        b, w, dim = cond.shape
        x = torch.randn(b, w, dim, device=cond.device, generator=generator)
        context = self.denoiser.encode_context(batch["caption"], tracks)
        for step in reversed(range(self.config.diffusion_steps)):
            t = torch.full((b,), step, device=cond.device, dtype=torch.long)
            x0 = self.denoiser(x, t, cond, batch["bps"], context)
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
            x = mean + var.sqrt() * torch.randn(x.shape, device=x.device, generator=generator)
        return self.denormalize(x)
