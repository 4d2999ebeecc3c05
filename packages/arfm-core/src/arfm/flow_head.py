"""Flow-matching predictor (paper §3.2, Fig. 3).

A spatial-attention-only transformer that denoises the shifts of ONE timestep: it sees the
noised shift ``x_t``, the previous shift ``T_C`` and the fused feature of each point at that
timestep, attends across the points (so rigidly linked points move jointly), and is
conditioned on the flow time (and the pooled text) through adaLN-Zero, as in DiT. It never
sees other timesteps, which is what makes sampling cheap: the fusion module runs once per
timestep, only this head runs ``K`` times.

The published release's head differs in three ways, all chosen by arguments: a SwiGLU MLP of
explicit width, no previous-shift input (``use_prev_shift=False``: its input is
``cat(x_t, features)``), and the flow time fed to the time embedding unscaled (``time_scale=1``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from arfm.layers import MultiHeadAttention, TimestepEmbedder, make_mlp, modulate


class FlowHeadBlock(nn.Module):
    """Spatial self-attention + MLP, both modulated by the conditioning vector (adaLN-Zero)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, mlp: str = "gelu", mlp_hidden: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = make_mlp(mlp, dim, mlp_ratio, mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (M, N, D) points of one timestep; c: (M, D); mask: (M, 1, 1, N) or None
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        q, k, v = self.attn.project(modulate(self.norm1(x), shift_a, scale_a))
        x = x + gate_a.unsqueeze(1) * self.attn.attend(q, k, v, mask)
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN-modulated norm then a linear map to the 2-D velocity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class FlowMatchingHead(nn.Module):
    """Velocity of the shifts of one timestep: ``v(x_t, t | T_C, fused features, text)``.

    Args:
        feature_dim, dim, depth, heads, mlp_ratio: sizes.
        mlp, mlp_hidden: MLP flavour (``"gelu"`` ours, ``"swiglu"`` release) and explicit width.
        use_prev_shift: feed ``T_C`` (ours) or not (release).
        time_scale: flow-time multiplier of the time embedding (ours 1000, release 1).
    """

    def __init__(
        self,
        feature_dim: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        mlp: str = "gelu",
        mlp_hidden: int = 0,
        use_prev_shift: bool = True,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.use_prev_shift = use_prev_shift
        self.input_proj = nn.Linear(2 + (2 if use_prev_shift else 0) + feature_dim, dim)
        self.time_embed = TimestepEmbedder(dim, time_scale=time_scale)
        self.blocks = nn.ModuleList(FlowHeadBlock(dim, heads, mlp_ratio, mlp, mlp_hidden) for _ in range(depth))
        self.final = FinalLayer(dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears; adaLN modulations and the output layer start at zero so every
        block is the identity and the first prediction is a zero velocity (DiT's adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        prev_shift: torch.Tensor,
        features: torch.Tensor,
        cond: torch.Tensor,
        point_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Predict the velocity.

        Args:
            x_t: ``(M, N, 2)`` noised shifts (model units).
            t: ``(M,)`` flow times.
            prev_shift: ``(M, N, 2)`` the previous step's shift ``T_C`` (model units); ignored
                without ``use_prev_shift``.
            features: ``(M, N, F)`` fused per-point features of this timestep.
            cond: ``(M, D)`` extra conditioning (pooled text), added to the time embedding.
            point_mask: ``(M, N)`` bool, True for real points, or None.

        Returns:
            ``(M, N, 2)`` velocity.
        """
        inputs = [x_t, prev_shift, features] if self.use_prev_shift else [x_t, features]
        x = self.input_proj(torch.cat(inputs, dim=-1))  # (M, N, D)
        c = self.time_embed(t) + cond  # (M, D)
        mask = None if point_mask is None else point_mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, c, mask)
        return self.final(x, c)
