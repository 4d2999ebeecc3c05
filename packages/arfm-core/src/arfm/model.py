"""ARFM track predictor: backbones -> feature fusion -> flow-matching head (paper §3.2).

Notation (paper §3.1): a window has track positions ``p_0 .. p_L`` per point. Inputs are
``T_I = p_0 .. p_{L-1}``, targets are the shifts ``T_T[s] = p_{s+1} - p_s`` and the extra
conditioning is the previous shift ``T_C[s] = T_T[s-1]`` (zero at ``s = 0``). Row ``s`` of the
fusion grid holds, for each point, the local image feature sampled at ``p_s`` in frame
``min(s, L_c - 1)`` (the last observed frame once frames run out) plus an "observed"
embedding, plus the projected ``T_C[s]``; the global image tokens of the same frame join the
row as extra spatial tokens; text tokens come first on the time axis. Positions themselves
are not fed to the transformer (the paper found that overfits).

With ``ModelConfig.variant="official"`` the same class is the published release's
architecture (:mod:`arfm.official_inputs` builds its tokens: no ``T_C`` input, visibility
and camera embeddings, text mask tokens; RMSNorm / SwiGLU blocks), so converted weights
(:mod:`arfm.convert.official`) reproduce its outputs; :mod:`arfm.official_reference` is the
release's own full-recomputation forward and rollout, used to prove it.

Training (:meth:`TrackShiftFlowPredictor.loss`) runs every row at once (teacher forcing) and
applies Eq. 1 per row. Sampling (:meth:`TrackShiftFlowPredictor.sample`) runs the fusion
module one row at a time from a KV cache and integrates the head from noise at each row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from arfm import flow
from arfm.backbones import FrameFeatures, TextFeatures, build_backbone
from arfm.config import ModelConfig
from arfm.coords import MODEL_FRAME_SIZE
from arfm.data.batch import TrackBatch
from arfm.flow_head import FlowMatchingHead
from arfm.fusion import FeatureFusionTransformer, FusionCache
from arfm.local_features import sample_local_features
from arfm.official_inputs import OfficialEmbedding


@dataclass
class FusedRows:
    """Teacher-forced rows flattened to ``M = B * S`` independent flow problems.

    Attributes:
        features: ``(M, N, D)`` fused per-point features.
        prev_shift: ``(M, N, 2)`` ``T_C`` (model units).
        targets: ``(M, N, 2)`` ``T_T`` (model units).
        valid: ``(M, N)`` bool, target visible at both ends and a real point.
        cond: ``(M, D)`` pooled-text conditioning.
        point_mask: ``(M, N)`` bool.
        num_rows: ``S`` (rows per window; row ``r`` of window ``b`` is ``b * S + r``).
    """

    features: torch.Tensor
    prev_shift: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    cond: torch.Tensor
    point_mask: torch.Tensor
    num_rows: int


@dataclass
class RolloutState:
    """Where an autoregressive rollout stands (one per batch of clips x samples).

    Attributes:
        last_frame: features of the last observed frame (``F == 1``), read by every future row.
        cache: fusion KV cache (text prefix + rows so far).
        text_cache: the cache right after the text prefix (for full recomputation).
        cond: ``(B, D)`` pooled-text conditioning of the flow head.
        positions: ``(B, N, 2)`` pixel position of each point at the next row.
        prev_shift: ``(B, N, 2)`` the shift that led there (model units).
        row: index of the next row.
        observed_rows: rows ``< observed_rows`` had their own observed frame.
        point_mask: ``(B, N)`` bool.
        key_mask: ``(B, N + G)`` bool (points then global tokens), None when unmasked.
        frame_size: ``(width, height)`` of the frames, for pixel -> feature-map indexing.
        history: row tokens so far (only kept when recomputing without cache).
    """

    last_frame: FrameFeatures
    cache: FusionCache
    text_cache: FusionCache
    cond: torch.Tensor
    positions: torch.Tensor
    prev_shift: torch.Tensor
    row: int
    observed_rows: int
    point_mask: torch.Tensor
    key_mask: torch.Tensor | None
    frame_size: tuple[int, int]
    history: torch.Tensor | None = None


class TrackShiftFlowPredictor(nn.Module):
    """Predicts future per-step track shifts with autoregressive flow matching."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        d = config.dim
        bb = self.backbone
        official = config.variant == "official"
        self.official = None
        if official:  # the release's input embedding (module docstring)
            self.official = OfficialEmbedding(d, bb.local_channels, bb.global_channels, bb.text_channels, bb.text_len, config.quirks)
        else:
            self.local_proj = nn.Linear(sum(bb.local_channels), d)
            self.shift_proj = nn.Linear(2, d)
            self.global_proj = nn.Linear(bb.global_channels, d)
            self.global_pos = nn.Parameter(torch.zeros(bb.num_global_tokens, d))
            self.observed_embed = nn.Embedding(2, d)  # 0: frame not observed (features from the last one), 1: observed
            self.text_proj = nn.Linear(bb.text_channels, d)
            self.text_cond = nn.Linear(bb.text_channels, d)
        norm, mlp = ("rmsnorm", "swiglu") if official else ("layernorm", "gelu")
        self.fusion = FeatureFusionTransformer(d, config.depth, config.heads, config.mlp_ratio, norm, mlp, config.mlp_hidden)
        self.head = FlowMatchingHead(
            d, d, config.flow_depth, config.heads, config.mlp_ratio, mlp, config.mlp_hidden, use_prev_shift=not official, time_scale=1.0 if official else 1000.0
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Truncated-normal input projections and embeddings (the head initialises itself, adaLN-Zero)."""
        if self.official is None:
            for module in (self.local_proj, self.shift_proj, self.global_proj, self.text_proj, self.text_cond):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for block in [*self.fusion.temporal, *self.fusion.spatial]:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        if self.official is not None:
            self.official.initialize_weights()
        else:
            nn.init.normal_(self.global_pos, std=0.02)
            nn.init.normal_(self.observed_embed.weight, std=0.02)

    # ------------------------------------------------------------------ inputs
    def _row_tokens(
        self,
        frames: FrameFeatures,
        positions: torch.Tensor,
        prev_shift: torch.Tensor,
        frame_index: torch.Tensor,
        observed: torch.Tensor,
        frame_size: tuple[int, int],
        num_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens of rows: ``(B, S, N + G, D)`` from positions/prev shifts ``(B, S, N, 2)``.

        ``num_frames (B,)`` (conditioning frames) is read by the official variant's quirks only.
        """
        if self.official is not None:
            if num_frames is None:
                num_frames = observed.sum(1)
            points, _ = self.official.point_tokens(frames.local, positions, frame_index, observed, num_frames, frame_size)
            globals_, _ = self.official.global_tokens(frames.global_tokens, frame_index, observed)
            return torch.cat([points, globals_], dim=2)
        obs = self.observed_embed(observed.long())[:, :, None, :]  # (B, S, 1, D)
        local = sample_local_features(frames.local, positions, frame_index, frame_size)
        points = self.local_proj(local) + self.shift_proj(prev_shift) + obs  # (B, S, N, D)
        b, s = frame_index.shape
        g = frames.global_tokens  # (B, F, G, Cg)
        rows_global = g[torch.arange(b, device=g.device)[:, None], frame_index]  # (B, S, G, Cg)
        globals_ = self.global_proj(rows_global) + self.global_pos + obs
        return torch.cat([points, globals_], dim=2)

    def _key_mask(self, point_mask: torch.Tensor) -> torch.Tensor | None:
        if self.official is not None and not self.config.quirks.mask_spatial_attention:
            return None  # the release's spatial masks are no-ops
        g = self.backbone.num_global_tokens
        return torch.cat([point_mask, point_mask.new_ones(point_mask.shape[0], g)], dim=1)

    def _head_mask(self, point_mask: torch.Tensor) -> torch.Tensor | None:
        if self.official is not None and not self.config.quirks.mask_spatial_attention:
            return None
        return point_mask

    def _text(self, text: TextFeatures, camera: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Projected text ``(B, Lt, D)``, its key mask (or None) and the head conditioning ``(B, D)``.

        ``camera (B,)``: camera-motion classes of the official variant (None = unknown).
        """
        if self.official is None:
            # Ours attends to every text token (padding included, as it was trained).
            return self.text_proj(text.tokens), None, self.text_cond(text.pooled)
        tokens, mask, pooled = self.official.text(text)
        return tokens, mask, pooled + self.official.camera_embedding(camera, tokens.shape[0], tokens.device)

    @staticmethod
    def _check_batch(batch: TrackBatch) -> None:
        if batch.tracks.ndim != 4 or batch.tracks.shape[-1] != 2:
            raise ValueError(f"batch.tracks must be (B, N, L+1, 2), got {tuple(batch.tracks.shape)}")
        if batch.tracks.shape[1] == 0:
            raise ValueError("batch.tracks has zero points")
        if batch.tracks.shape[2] < 2:
            raise ValueError("batch.tracks needs at least two steps (one shift to predict)")
        if not torch.isfinite(batch.tracks).all():
            raise ValueError("batch.tracks contains NaN or Inf")
        if batch.visible.shape != batch.tracks.shape[:3] or batch.point_mask.shape != batch.tracks.shape[:2]:
            raise ValueError("batch.visible / batch.point_mask do not match batch.tracks")

    # ------------------------------------------------------------------ training
    def forward(self, batch: TrackBatch) -> torch.Tensor:
        """The training loss (so that distributed wrappers, which call ``forward``, see it)."""
        return self.loss(batch)

    def fuse(self, batch: TrackBatch) -> FusedRows:
        """Teacher-forced pass over every row of a batch: what the flow head conditions on."""
        self._check_batch(batch)
        tracks = batch.tracks
        b, n, steps, _ = tracks.shape
        s = steps - 1
        inputs = tracks[:, :, :-1]  # T_I (B, N, S, 2)
        targets = (tracks[:, :, 1:] - inputs) / self.config.shift_scale  # T_T, model units
        prev = torch.cat([torch.zeros_like(targets[:, :, :1]), targets[:, :, :-1]], dim=2)  # T_C
        valid = batch.visible[:, :, 1:] & batch.visible[:, :, :-1] & batch.point_mask[:, :, None]

        frames = self.backbone.encode_frames(batch.frames)
        text = self.backbone.encode_text(batch.captions)
        rows = torch.arange(s, device=tracks.device)
        ncond = batch.num_cond_frames.to(tracks.device)
        frame_index = torch.minimum(rows[None, :], ncond[:, None] - 1)  # (B, S)
        observed = rows[None, :] < ncond[:, None]
        frame_size = (batch.frames.shape[-1], batch.frames.shape[-2])
        tokens = self._row_tokens(frames, inputs.transpose(1, 2), prev.transpose(1, 2), frame_index, observed, frame_size, ncond)
        text_tokens, text_mask, cond = self._text(text)
        fused = self.fusion(text_tokens, tokens, self._key_mask(batch.point_mask), text_mask)[:, :, :n]  # (B, S, N, D)

        # Rows become independent flow problems: (B, S, ...) -> (M = B * S, ...)
        m = b * s
        return FusedRows(
            features=fused.reshape(m, n, -1),
            prev_shift=prev.transpose(1, 2).reshape(m, n, 2),
            targets=targets.transpose(1, 2).reshape(m, n, 2),
            valid=valid.transpose(1, 2).reshape(m, n),
            cond=cond.repeat_interleave(s, dim=0),
            point_mask=batch.point_mask.repeat_interleave(s, dim=0),
            num_rows=s,
        )

    def velocity(self, rows: FusedRows, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Flow-head output ``(M, N, 2)`` for fused rows at noised shifts ``x_t`` and times ``t (M,)``."""
        return self.head(x_t, t, rows.prev_shift, rows.features, rows.cond, self._head_mask(rows.point_mask))

    def loss(self, batch: TrackBatch) -> torch.Tensor:
        """Eq. 1 (``objective="flow"``) or plain squared error (``"regression"``), masked by visibility.

        A shift target counts where the point is visible at both of its ends. One flow time is
        drawn per (window, row): every row is an independent denoising problem.
        """
        rows = self.fuse(batch)
        x1 = rows.targets
        m = x1.shape[0]
        if self.config.objective == "flow":
            t = torch.rand(m, device=x1.device)
            noise = torch.randn_like(x1)
            pred = self.velocity(rows, flow.interpolate(x1, noise, t), t)
            target = flow.target_velocity(x1, noise)
        else:
            pred = self.velocity(rows, torch.zeros_like(x1), torch.zeros(m, device=x1.device))
            target = x1
        weight = rows.valid.unsqueeze(-1).to(pred.dtype)
        return ((pred - target) ** 2 * weight).sum() / (2 * weight.sum()).clamp(min=1.0)

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def prepare(
        self,
        frames: torch.Tensor,
        observed_tracks: torch.Tensor,
        captions: list[str],
        num_samples: int = 1,
        point_mask: torch.Tensor | None = None,
        use_cache: bool = True,
        cache_window: int = 0,
        camera: torch.Tensor | None = None,
    ) -> RolloutState:
        """Encode the conditioning frames and text, and feed the fully observed rows.

        Args:
            frames: ``(B, F, 3, H, W)`` in ``[0, 1]``.
            observed_tracks: ``(B, N, F, 2)`` pixel positions on those frames.
            captions: ``B`` strings.
            num_samples: independent rollouts per clip (the batch becomes ``B * num_samples``,
                samples of one clip adjacent).
            point_mask: ``(B, N)`` bool or None (all real).
            use_cache: False keeps the row history to recompute the fusion module from scratch
                at every step (reference behaviour for tests and benchmarks).
            cache_window: most past rows the KV cache keeps (0: all, exact). Streaming passes
                ``config.cache_window`` to bound memory; rows then slide out of attention.
            camera: ``(B,)`` camera-motion classes (official variant; None = unknown). The
                release's random drop of this class is applied by :mod:`arfm.official_reference` only.
        """
        if frames.ndim != 5:
            raise ValueError(f"frames must be (B, F, 3, H, W), got {tuple(frames.shape)}")
        from arfm.errors import check_frame_size  # one definition of a valid frame (shared with arfm.online)

        check_frame_size(frames.shape[-2], frames.shape[-1], MODEL_FRAME_SIZE)
        if observed_tracks.ndim != 4 or observed_tracks.shape[-1] != 2:
            raise ValueError(f"observed_tracks must be (B, N, F, 2), got {tuple(observed_tracks.shape)}")
        b, n, f, _ = observed_tracks.shape
        if n == 0:
            raise ValueError("observed_tracks has zero points: nothing to predict")
        if frames.shape[0] != b or frames.shape[1] != f:
            raise ValueError(f"frames {tuple(frames.shape[:2])} and observed_tracks (B={b}, F={f}) disagree")
        if len(captions) != b:
            raise ValueError(f"got {len(captions)} captions for {b} clips")
        if not torch.isfinite(observed_tracks).all():
            raise ValueError("observed_tracks contains NaN or Inf")
        if point_mask is None:
            point_mask = torch.ones(b, n, dtype=torch.bool, device=observed_tracks.device)

        feats = self.backbone.encode_frames(frames)
        text = self.backbone.encode_text(captions)
        rep = lambda x: x.repeat_interleave(num_samples, dim=0)  # noqa: E731
        feats = FrameFeatures([rep(level) for level in feats.local], rep(feats.global_tokens))
        tracks, point_mask = rep(observed_tracks), rep(point_mask)
        key_mask = self._key_mask(point_mask)
        text_tokens, text_mask, cond = self._text(text, camera)
        text_cache = self.fusion.start(rep(text_tokens), window=0, text_mask=None if text_mask is None else rep(text_mask))
        frame_size = (frames.shape[-1], frames.shape[-2])
        shifts = (tracks[:, :, 1:] - tracks[:, :, :-1]) / self.config.shift_scale  # (B', N, F-1, 2)
        prev = torch.cat([torch.zeros_like(tracks[:, :, :1]), shifts], dim=2)  # prev shift of rows 0..F-1

        state = RolloutState(
            last_frame=FrameFeatures([level[:, -1:] for level in feats.local], feats.global_tokens[:, -1:]),
            cache=text_cache.clone(window=cache_window if use_cache else 0),
            text_cache=text_cache,
            cond=rep(cond),
            positions=tracks[:, :, -1],
            prev_shift=prev[:, :, -1],
            row=f - 1,
            observed_rows=f,
            point_mask=point_mask,
            key_mask=key_mask,
            frame_size=frame_size,
        )
        if f > 1:  # rows 0 .. F-2 are fully known: feed them in one chunk
            bb = tracks.shape[0]
            index = torch.arange(f - 1, device=tracks.device).expand(bb, -1)
            tokens = self._row_tokens(
                feats, tracks[:, :, :-1].transpose(1, 2), prev[:, :, :-1].transpose(1, 2), index, torch.ones_like(index, dtype=torch.bool), frame_size,
                torch.full((bb,), f, device=tracks.device),
            )
            if use_cache:
                self.fusion.step(tokens, state.cache, key_mask)
            else:
                state.history = tokens
        return state

    @torch.no_grad()
    def fuse_rows(self, state: RolloutState, positions: torch.Tensor, prev_shift: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """Feed ``S`` rows with known inputs after the state's rows; return their point features.

        Args:
            positions: ``(B, S, N, 2)`` pixel positions of the rows.
            prev_shift: ``(B, S, N, 2)`` the shift that led to each row (model units).
            use_cache: advance the KV cache (True) or recompute the whole history (False).

        Returns:
            ``(B, S, N, D)`` fused features. ``state.row`` advances by ``S``; ``state.positions``
            and ``state.prev_shift`` are left to the caller.
        """
        b, s, n = positions.shape[:3]
        device = positions.device
        rows = state.row + torch.arange(s, device=device)
        index = torch.zeros(b, s, dtype=torch.long, device=device)  # every future row reads the last frame
        observed = (rows < state.observed_rows)[None].expand(b, s)
        num_frames = torch.full((b,), state.observed_rows, device=device)
        tokens = self._row_tokens(state.last_frame, positions, prev_shift, index, observed, state.frame_size, num_frames)
        if use_cache:
            fused = self.fusion.step(tokens, state.cache, state.key_mask)
        else:
            state.history = tokens if state.history is None else torch.cat([state.history, tokens], dim=1)
            fused = self.fusion.step(state.history, state.text_cache.clone(), state.key_mask)[:, -s:]
        state.row += s
        return fused[:, :, :n]

    @torch.no_grad()
    def denoise(
        self,
        state: RolloutState,
        features: torch.Tensor,
        prev_shift: torch.Tensor,
        x_start: torch.Tensor,
        t_start: float,
        num_steps: int,
    ) -> torch.Tensor:
        """Integrate the flow head for ``S`` rows at once, from ``(x_start, t_start)`` to t = 1
        (or one step short of it with ``time_grid="official"``).

        Rows are independent flow problems given their features (the head attends across
        points only), so they share every Euler step's forward pass.

        Args:
            features: ``(B, S, N, D)`` from :meth:`fuse_rows`.
            prev_shift: ``(B, S, N, 2)`` the rows' ``T_C``.
            x_start: ``(B, S, N, 2)`` noised shifts at ``t_start``.

        Returns:
            ``(B, S, N, 2)`` shifts (model units); a regression model ignores ``x_start``.
        """
        b, s, n, _ = x_start.shape
        flat = lambda x: x.reshape(b * s, n, x.shape[-1])  # noqa: E731
        features, prev = flat(features), flat(prev_shift)
        cond, mask = state.cond.repeat_interleave(s, dim=0), self._head_mask(state.point_mask.repeat_interleave(s, dim=0))

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.head(x, t, prev, features, cond, mask)

        x = flat(x_start)
        if self.config.objective == "flow":
            shift = flow.euler_sample(velocity, x, num_steps, t_start=t_start, grid=self.config.time_grid)
        else:
            shift = velocity(torch.zeros_like(x), torch.zeros(b * s, device=x.device))
        return shift.view(b, s, n, 2)

    @torch.no_grad()
    def advance(
        self,
        state: RolloutState,
        x_start: torch.Tensor,
        t_start: float,
        num_steps: int,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Run one row: fuse it, integrate the head from ``(x_start, t_start)`` to t = 1, move the points.

        Returns:
            ``(B, N, 2)`` the new positions (pixels). ``state`` advances by one row.
        """
        prev = state.prev_shift[:, None]
        features = self.fuse_rows(state, state.positions[:, None], prev, use_cache)
        shift = self.denoise(state, features, prev, x_start[:, None], t_start, num_steps)[:, 0]
        state.positions = state.positions + shift * self.config.shift_scale
        state.prev_shift = shift
        return state.positions

    @torch.no_grad()
    def sample(
        self,
        frames: torch.Tensor,
        observed_tracks: torch.Tensor,
        captions: list[str],
        horizon: int,
        num_samples: int = 1,
        point_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        cache_window: int = 0,
    ) -> torch.Tensor:
        """Autoregressively sample future tracks.

        Args:
            frames: ``(B, F, 3, H, W)`` conditioning frames in ``[0, 1]``.
            observed_tracks: ``(B, N, F, 2)`` pixel positions on those frames.
            captions: ``B`` strings.
            horizon: future steps.
            num_samples: draws per clip.
            point_mask: ``(B, N)`` bool or None.
            generator: seeds the noise (the same generator state gives the same tracks).
            use_cache: KV-cached rollout (default) or full recomputation at each step; both
                give the same tracks.
            cache_window: 0 (default) attends to every past row, exactly as in training; a
                positive value is the streaming option of a sliding window of that many rows
                (``config.cache_window``), which bounds memory but changes the rollout past it.

        Returns:
            ``(B, num_samples, N, horizon, 2)`` pixel positions of the steps after the last frame.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if cache_window < 0:
            raise ValueError(f"cache_window must be >= 0, got {cache_window}")
        state = self.prepare(frames, observed_tracks, captions, num_samples, point_mask, use_cache, cache_window=cache_window)
        out = []
        for _ in range(horizon):
            noise = torch.randn(state.positions.shape, generator=generator, device=state.positions.device)
            out.append(self.advance(state, noise, 0.0, self.config.sample_steps, use_cache))
        b, n = observed_tracks.shape[:2]
        return torch.stack(out, dim=2).view(b, num_samples, n, horizon, 2)
