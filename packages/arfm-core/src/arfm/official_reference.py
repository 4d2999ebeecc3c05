"""The published release's own forward and rollout on our modules (``variant="official"``).

Our rollout (:meth:`arfm.model.TrackShiftFlowPredictor.sample`) runs the fusion module from a
KV cache with the text as a shared prefix; the release instead recomputes a full grid at
every step: time axis ``[text tokens, track steps]`` with the text replicated in every
column, spatial axis ``[global tokens, points]``, and a per-column time mask in which a
fully padded point masks every key (it then attends uniformly, and because the release's
spatial masks are no-ops, that garbage reaches the real points). The two agree whenever no
point is fully padded; this module is the release's computation, kept as the reference that
proves converted weights exact (``tests/core/test_official_arfm.py``) and usable for
evaluations that need the release's numbers bit for bit (up to float rounding).

Inputs start at the backbone boundary (:class:`OfficialInputs`: SAM 2 FPN levels and CLIP
states), so the proof does not depend on SAM 2 / CLIP weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arfm import flow
from arfm.backbones.base import TextFeatures
from arfm.coords import MODEL_FRAME_SIZE
from arfm.model import TrackShiftFlowPredictor


@dataclass
class OfficialInputs:
    """One batch at the release's backbone boundary.

    Attributes:
        tracks: ``(B, N, T, 2)`` pixels of the 256 x 256 frame, ``(x, y)``.
        step_mask: ``(B, N, T)`` 1 = real step, 0 = padding (a padded point is all 0).
        fpn: SAM 2's three FPN levels ``(B, F, C, h, w)`` (before ``conv_s0`` / ``conv_s1``).
        clip_hidden: CLIP vision ``last_hidden_state`` per frame ``(B, F, 1 + G, Cg)`` (CLS first).
        text_hidden: CLIP text ``last_hidden_state`` ``(B, Lt, Ct)``.
        text_pooled: CLIP text ``pooler_output`` ``(B, Ct)``.
        text_mask: ``(B, Lt)`` tokenizer mask.
        text_present: ``(B,)`` bool, False for a caption-less row (the release's all ``-1`` ids).
        frame_size: ``(width, height)`` of the track pixels.
    """

    tracks: torch.Tensor
    step_mask: torch.Tensor
    fpn: list[torch.Tensor]
    clip_hidden: torch.Tensor
    text_hidden: torch.Tensor
    text_pooled: torch.Tensor
    text_mask: torch.Tensor
    text_present: torch.Tensor
    frame_size: tuple[int, int] = (MODEL_FRAME_SIZE, MODEL_FRAME_SIZE)

    def __post_init__(self) -> None:
        if self.tracks.ndim != 4 or self.tracks.shape[-1] != 2:
            raise ValueError(f"OfficialInputs.tracks must be (B, N, T, 2), got {tuple(self.tracks.shape)}")
        if self.step_mask.shape[:2] != self.tracks.shape[:2] or self.step_mask.shape[2] < self.tracks.shape[2]:
            raise ValueError(f"OfficialInputs.step_mask {tuple(self.step_mask.shape)} does not cover tracks {tuple(self.tracks.shape)}")
        if len(self.fpn) != 3:
            raise ValueError(f"OfficialInputs.fpn needs three levels, got {len(self.fpn)}")

    def with_tracks(self, tracks: torch.Tensor) -> "OfficialInputs":
        """The same batch with other (e.g. longer) tracks; ``step_mask`` is sliced to their length."""
        fields = {**self.__dict__, "tracks": tracks}
        return OfficialInputs(**fields)


@dataclass
class OfficialForward:
    """What :func:`official_forward` computed (names follow the fixture's ``mid.*`` / ``out.*``)."""

    point_local_features: torch.Tensor  # (B, N, T, 352) before the projection
    point_tokens: torch.Tensor  # (B, N, T, D)
    global_tokens_in: torch.Tensor  # (B, T, G, Cg)
    global_tokens: torch.Tensor  # (B, T, G, D)
    text_embedding: torch.Tensor  # (B, Lt, D)
    text_mask: torch.Tensor  # (B, Lt) after the caption-less substitution
    pooled_text: torch.Tensor  # (B, D)
    camera_embedding: torch.Tensor  # (B, D)
    fusion_inputs: torch.Tensor  # (B, G + N, Lt + T, D)
    fusion_mask: torch.Tensor  # (B, G + N, Lt + T)
    fusion_output: torch.Tensor  # (B, G + N, Lt + T, D)
    fused_point_features: torch.Tensor  # (B, N, T, D)
    time_embedding: torch.Tensor  # (B, D)
    velocity: torch.Tensor  # (B, N, Tn, 2)


@torch.no_grad()
def official_features(model: TrackShiftFlowPredictor, inputs: OfficialInputs, camera: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything up to the fusion output (the part the release caches across ODE evaluations)."""
    emb = model.official
    if emb is None:
        raise ValueError("official_features needs a model built with ModelConfig(variant='official')")
    tracks = inputs.tracks
    b, n, t, _ = tracks.shape
    step_mask = inputs.step_mask[:, :, :t].float()
    num_frames = inputs.fpn[0].shape[1]
    rows = torch.arange(t, device=tracks.device)
    frame_index = rows.clamp(max=num_frames - 1).expand(b, t)
    observed = (rows < num_frames).expand(b, t)
    visible_count = torch.full((b,), min(num_frames, t), device=tracks.device)
    points, local = emb.point_tokens(inputs.fpn, tracks.transpose(1, 2), frame_index, observed, visible_count, inputs.frame_size)
    globals_, globals_in = emb.global_tokens(inputs.clip_hidden[:, :, 1:], frame_index, observed)
    text = TextFeatures(inputs.text_hidden, inputs.text_pooled, inputs.text_mask.bool(), inputs.text_present.bool())
    text_tokens, text_mask, pooled = emb.text(text)
    g, lt, d = globals_.shape[2], text_tokens.shape[1], text_tokens.shape[2]

    # Grid (B, Lt + T, G + N, D): time = [text, steps], space = [globals, points].
    text_columns = text_tokens[:, :, None].expand(b, lt, g + n, d)
    grid = torch.cat([text_columns, torch.cat([globals_, points], dim=2)], dim=1)
    # Time mask (B, G + N, Lt + T): the text mask is zeroed for points with no real step.
    has_steps = step_mask.amax(-1) > 0  # (B, N)
    text_rows = torch.cat([text_mask[:, None].expand(b, g, lt), text_mask[:, None] & has_steps[..., None]], dim=1)
    step_rows = torch.cat([step_mask.new_ones(b, g, t), step_mask], dim=1)
    time_mask = torch.cat([text_rows.float(), step_rows], dim=2)
    spatial = None
    if model.config.quirks.mask_spatial_attention:
        spatial = torch.cat([has_steps.new_ones(b, g), has_steps], dim=1)
    fused = model.fusion.forward_grid(grid, time_mask, spatial)  # (B, Lt + T, G + N, D)
    return {
        "point_local_features": local.transpose(1, 2),
        "point_tokens": points.transpose(1, 2),
        "global_tokens_in": globals_in,
        "global_tokens": globals_,
        "text_embedding": text_tokens,
        "text_mask": text_mask,
        "pooled_text": pooled,
        "camera_embedding": emb.camera_embedding(camera, b, tracks.device),
        "fusion_inputs": grid.transpose(1, 2),
        "fusion_mask": time_mask,
        "fusion_output": fused.transpose(1, 2),
        "fused_point_features": fused[:, lt:, g:].transpose(1, 2),
        "point_mask": has_steps,
    }


@torch.no_grad()
def official_head(
    model: TrackShiftFlowPredictor,
    features: torch.Tensor,
    cond: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    point_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow head on the last ``Tn`` steps.

    Args:
        features: ``(B, N, T, D)`` fused point features.
        cond: ``(B, D)`` pooled text + camera embedding.
        x_t: ``(B, N, Tn, 2)`` noised shifts of the last ``Tn`` steps.
        t: flow time, a scalar / ``(1,)`` (shared) or ``(B,)``.
        point_mask: ``(B, N)`` real points; read only when ``quirks.mask_spatial_attention``
            is switched on (the release's head masks nothing).

    Returns:
        ``(velocity (B, N, Tn, 2), time embedding (B, D))``.
    """
    b, n, tn, _ = x_t.shape
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1).expand(b)
    feats = features[:, :, -tn:].transpose(1, 2).reshape(b * tn, n, -1)
    x = x_t.transpose(1, 2).reshape(b * tn, n, 2)
    mask = None
    if model.config.quirks.mask_spatial_attention and point_mask is not None:
        mask = point_mask.repeat_interleave(tn, dim=0)
    v = model.head(x, t.repeat_interleave(tn), None, feats, cond.repeat_interleave(tn, dim=0), mask)
    return v.view(b, tn, n, 2).transpose(1, 2), model.head.time_embed(t)


@torch.no_grad()
def official_forward(model: TrackShiftFlowPredictor, inputs: OfficialInputs, x_t: torch.Tensor, t: torch.Tensor, camera: torch.Tensor) -> OfficialForward:
    """The release's ``MotionPredictor.forward``: fused features and the head's velocity.

    Args:
        x_t: ``(B, N, Tn, 2)`` noised shifts of the last ``Tn`` steps (1 when sampling, ``T`` in training).
        t: flow time, shared (scalar) or per sample ``(B,)``.
        camera: ``(B,)`` camera classes as used (the release drops them at random; pass the
            drawn classes, or draw them with ``model.official.drop_camera``).
    """
    feats = official_features(model, inputs, camera)
    cond = feats["pooled_text"] + feats["camera_embedding"]
    velocity, time_embedding = official_head(model, feats["fused_point_features"], cond, x_t, t, feats.pop("point_mask"))
    return OfficialForward(**feats, time_embedding=time_embedding, velocity=velocity)


@dataclass
class OfficialRollout:
    """Result of :func:`official_rollout`.

    Attributes:
        tracks: ``(B, N, 1 + horizon, 2)`` the query point then one position per step.
        ode_states: ``(horizon, G, B, N, 2)`` the state at every grid time of every step.
        head_t / head_x_t / head_velocity: every head evaluation in call order.
        camera_used: ``(evaluations, B)`` camera class of every evaluation.
    """

    tracks: torch.Tensor
    ode_states: torch.Tensor
    head_t: torch.Tensor
    head_x_t: torch.Tensor
    head_velocity: torch.Tensor
    camera_used: torch.Tensor


@torch.no_grad()
def official_rollout(
    model: TrackShiftFlowPredictor,
    inputs: OfficialInputs,
    horizon: int,
    camera: torch.Tensor,
    num_steps: int | None = None,
    noise: torch.Tensor | None = None,
    camera_schedule: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    time_grid: str | None = None,
) -> OfficialRollout:
    """The release's ``sample()`` without KV cache: per step, recompute the grid, then Euler.

    Args:
        inputs: the query step ``tracks (B, N, 1, 2)`` (or more observed steps) and a
            ``step_mask`` covering ``T + horizon`` steps.
        horizon: autoregressive steps.
        camera: ``(B,)`` camera classes before the release's random drop.
        num_steps: Euler grid size (default ``config.sample_steps``).
        noise: ``(horizon, B, N, 2)`` initial noise per step (default: drawn from ``generator``).
        camera_schedule: ``(evaluations, B)`` classes to use instead of drawing the drop.
        time_grid: ``"official"`` / ``"exact"`` (default ``config.time_grid``).

    Returns:
        :class:`OfficialRollout`; each step adds the final ODE state (a pixel shift) to the
        previous position.
    """
    num_steps = num_steps or model.config.sample_steps
    grid = time_grid or model.config.time_grid
    tracks = inputs.tracks
    b, n = tracks.shape[:2]
    if inputs.step_mask.shape[2] < tracks.shape[2] + horizon - 1:
        raise ValueError(f"step_mask covers {inputs.step_mask.shape[2]} steps, the rollout needs {tracks.shape[2] + horizon - 1}")
    calls: dict[str, list[torch.Tensor]] = {"t": [], "x": [], "v": [], "camera": []}
    states = []
    for step in range(horizon):
        feats = official_features(model, inputs.with_tracks(tracks), camera)  # fusion once per step
        x0 = noise[step] if noise is not None else torch.randn(b, n, 2, generator=generator, device=tracks.device)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            index = len(calls["t"])
            used = camera_schedule[index] if camera_schedule is not None else model.official.drop_camera(camera, generator)
            cond = feats["pooled_text"] + model.official.camera_embedding(used, b, x.device)
            v, _ = official_head(model, feats["fused_point_features"], cond, x[:, :, None], t[:1], feats["point_mask"])
            calls["t"].append(t[0].reshape(()))
            calls["x"].append(x)
            calls["v"].append(v[:, :, 0])
            calls["camera"].append(used)
            return v[:, :, 0]

        start = len(calls["x"])
        shift = flow.euler_sample(velocity, x0, num_steps, grid=grid)
        states.append(torch.stack([*calls["x"][start:], shift]))
        tracks = torch.cat([tracks, (tracks[:, :, -1] + shift * model.config.shift_scale)[:, :, None]], dim=2)
    return OfficialRollout(
        tracks=tracks,
        ode_states=torch.stack(states),
        head_t=torch.stack(calls["t"]),
        head_x_t=torch.stack(calls["x"]),
        head_velocity=torch.stack(calls["v"]),
        camera_used=torch.stack(calls["camera"]),
    )
