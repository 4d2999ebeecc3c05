"""Convert the released CHOIS checkpoint into our CHOIS checkpoint format (§4.3; issue 12).

    python -m integrations.chois.convert --official chois_release/.../model-10.pt --out runs/chois_official \
        [--num-heads 4] [--clip-checkpoint open_clip_vit_b32.bin]

The released file (lijiaman/chois_release, ``trainer_chois.py``) is a dict ``{step, model, ema, scaler}``;
sampling uses the EMA copy, so the converter reads ``ema`` and its ``ema_model.*`` keys. Every key
is mapped onto :class:`~integrations.chois.modeling_chois.ChoisModel` built with
``variant="official"`` or dropped for a stated reason (:data:`DROPPED`); an unknown or missing key
is an error naming it. The output folder (``model.safetensors`` + ``config.json``, written
atomically) loads with :func:`~integrations.chois.checkpointing.load_checkpoint`, so
``integrations/chois/eval.py --checkpoint <out>`` runs on it unchanged.

The official data pipeline min-max normalises positions to [-1, 1] before the model; the
converted checkpoint's normaliser is the identity (mean 0, std 1), i.e. motions go in and come out
in that normalised space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import tyro

from integrations.chois.checkpointing import save_weights
from integrations.chois.configuration_chois import ChoisConfig, official_chois_config
from integrations.chois.modeling_chois import ChoisModel, cosine_alphas_cumprod
from integrations.chois.representation import MOTION_DIM, condition_mask

EMA_PREFIX = "ema_model."

_SCHEDULE_DERIVED = (
    "betas", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)  # fmt: skip

DROPPED: dict[str, str] = {
    **{name: "derived from alphas_cumprod; our sampler recomputes it (alphas_cumprod is checked against the cosine schedule)" for name in _SCHEDULE_DERIVED},
    "p2_loss_weight": "training-loss weight only (all ones for the released gamma 0)",
}
"""Official tensors (inside ``ema_model.``) that are not copied, with the reason."""

DROPPED_ENTRIES: dict[str, str] = {
    "model": "the online (non-EMA) weights; released sampling uses the EMA copy (trainer_chois.py: self.ema.ema_model)",
    "step": "training step counter",
    "scaler": "AMP GradScaler state (training only)",
}
"""Top-level entries of the released ``.pt`` other than ``ema``, with the reason."""

DROPPED_EMA_PREFIXES: dict[str, str] = {
    "online_model.": "ema-pytorch's reference to the online model (same as the 'model' entry)",
    "initted": "ema-pytorch bookkeeping",
    "step": "ema-pytorch bookkeeping",
}
"""Keys of the ``ema`` entry outside ``ema_model.``, with the reason."""

_RULES: list[tuple[str, str]] = [
    (r"bps_encoder\.(0|2)\.(weight|bias)", r"denoiser.bps_mlp.\1.\2"),
    (r"clip_encoder\.0\.(weight|bias)", r"denoiser.text_proj.\1"),
    (r"denoise_fn\.motion_transformer\.start_conv\.(weight|bias)", r"denoiser.input_proj.\1"),
    (r"denoise_fn\.motion_transformer\.position_vec\.weight", r"denoiser.position_table"),
    (r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.self_attn\.(w_q|w_k|w_v|fc)\.(weight|bias)", r"denoiser.blocks.\1.\2.\3"),
    (r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.self_attn\.layer_norm\.(weight|bias)", r"denoiser.blocks.\1.attn_norm.\2"),
    (r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.pos_ffn\.w_1\.(weight|bias)", r"denoiser.blocks.\1.ffn.0.\2"),
    (r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.pos_ffn\.w_2\.(weight|bias)", r"denoiser.blocks.\1.ffn.2.\2"),
    (r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.pos_ffn\.layer_norm\.(weight|bias)", r"denoiser.blocks.\1.ffn_norm.\2"),
    (r"denoise_fn\.linear_out\.(weight|bias)", r"denoiser.out.\1"),
    (r"denoise_fn\.time_mlp\.1\.(weight|bias)", r"denoiser.time_mlp.0.\1"),
    (r"denoise_fn\.time_mlp\.3\.(weight|bias)", r"denoiser.time_mlp.2.\1"),
    (r"(alphas_cumprod|alphas_cumprod_prev)", r"\1"),
]
"""Official key (regex, full match) -> our key."""

NOT_FROM_CHECKPOINT: dict[str, str] = {
    "motion_mean": "identity: the official min-max normalisation happens in its data pipeline",
    "motion_std": "identity: the official min-max normalisation happens in its data pipeline",
    "cond_mask": "rebuilt from the config (waypoint layout); official masks are passed per batch",
}
"""Our tensors that the released checkpoint has no counterpart for, with the reason."""


def map_key(key: str) -> str | None:
    """Our key for an official ``ema_model.``-less key; ``None`` if it is dropped on purpose.

    Raises:
        KeyError: the key is neither mapped nor dropped (naming it).
    """
    if key in DROPPED:
        return None
    for pattern, target in _RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    raise KeyError(f"official CHOIS key {key!r} is not known to the converter (neither mapped nor dropped)")


def _layer_count(state: dict[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"denoise_fn\.motion_transformer\.layer_stack\.(\d+)\.", k))}
    return max(layers) + 1 if layers else 0


def _require_key(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise KeyError(f"official CHOIS checkpoint is missing key {key!r}")
    return state[key]


def infer_config(state: dict[str, torch.Tensor], num_heads: int = 4, **overrides) -> ChoisConfig:
    """Sizes of the official denoiser read off its tensor shapes (heads are not recoverable from shapes)."""
    d_model, in_dim, _ = _require_key(state, "denoise_fn.motion_transformer.start_conv.weight").shape
    bps_hidden, bps_in = _require_key(state, "bps_encoder.0.weight").shape
    bps_feature_dim = _require_key(state, "bps_encoder.2.weight").shape[0]
    if in_dim != 2 * MOTION_DIM + bps_feature_dim:
        raise ValueError(f"start_conv reads {in_dim} channels; expected 2 x {MOTION_DIM} motion + {bps_feature_dim} BPS")
    qk = _require_key(state, "denoise_fn.motion_transformer.layer_stack.0.self_attn.w_q.weight").shape[0]
    vv = _require_key(state, "denoise_fn.motion_transformer.layer_stack.0.self_attn.w_v.weight").shape[0]
    if qk % num_heads or vv % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the attention widths {qk} (q/k) and {vv} (v)")
    return official_chois_config(
        window=_require_key(state, "denoise_fn.motion_transformer.position_vec.weight").shape[0] - 2,
        bps_points=bps_in // 3, bps_hidden=bps_hidden, bps_feature_dim=bps_feature_dim,
        d_model=d_model, num_layers=_layer_count(state), num_heads=num_heads, d_k=qk // num_heads, d_v=vv // num_heads,
        ffn_dim=_require_key(state, "denoise_fn.motion_transformer.layer_stack.0.pos_ffn.w_1.weight").shape[0],
        text_dim=_require_key(state, "clip_encoder.0.weight").shape[1],
        diffusion_steps=_require_key(state, "alphas_cumprod").shape[0],
        **overrides,
    )  # fmt: skip


def convert_state_dict(state: dict[str, torch.Tensor], config: ChoisConfig) -> dict[str, torch.Tensor]:
    """Official EMA tensors (without the ``ema_model.`` prefix) -> our state dict (text tower excluded).

    Raises:
        KeyError: an official key that is neither mapped nor dropped, or one of ours left unfilled.
        ValueError: a shape mismatch or a diffusion schedule that is not the cosine one.
    """
    with torch.device("meta"):  # shapes only: no memory, no CLIP build cost beyond the module graph
        ours = {k: v for k, v in ChoisModel(replace(config, text_encoder="hashed")).state_dict().items() if not k.startswith("denoiser.text.")}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = map_key(key)
        if target is None:
            continue
        if target not in ours:
            raise KeyError(f"official key {key!r} maps to {target!r}, which the configured model does not have")
        if key.endswith(("w_1.weight", "w_2.weight")) and value.dim() == 3:
            value = value.squeeze(-1)  # kernel-1 Conv1d (out, in, 1) == Linear (out, in)
        if tuple(value.shape) != tuple(ours[target].shape):
            raise ValueError(f"official key {key!r} has shape {tuple(value.shape)}; {target!r} needs {tuple(ours[target].shape)}")
        out[target] = value.detach().to(torch.float32).contiguous()
    expected = cosine_alphas_cumprod(config.diffusion_steps).float()
    if not torch.allclose(out["alphas_cumprod"], expected, atol=1e-6):
        raise ValueError("official key 'alphas_cumprod' is not the cosine schedule our sampler implements")
    out["motion_mean"] = torch.zeros(MOTION_DIM)
    out["motion_std"] = torch.ones(MOTION_DIM)
    out["cond_mask"] = condition_mask(config.window, config.waypoint_every)
    missing = sorted(set(ours) - set(out))
    if missing:
        raise KeyError(f"official CHOIS checkpoint is missing tensors for {missing}")
    return out


def ema_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The ``ema_model.*`` tensors of a released checkpoint dict, prefix removed; other entries checked against the drop lists."""
    if "ema" not in checkpoint:
        raise KeyError(f"official CHOIS checkpoint has no 'ema' entry (entries: {sorted(checkpoint)})")
    unknown = sorted(set(checkpoint) - {"ema"} - set(DROPPED_ENTRIES))
    if unknown:
        raise KeyError(f"official CHOIS checkpoint has unknown entries {unknown}")
    state = {}
    for key, value in checkpoint["ema"].items():
        if key.startswith(EMA_PREFIX):
            state[key[len(EMA_PREFIX) :]] = value
        elif not any(key == p or (p.endswith(".") and key.startswith(p)) for p in DROPPED_EMA_PREFIXES):
            raise KeyError(f"official CHOIS 'ema' entry has unknown key {key!r}")
    if not state:
        raise KeyError(f"official CHOIS 'ema' entry has no '{EMA_PREFIX}*' keys")
    return state


def load_official(path: str | Path) -> dict:
    """``torch.load`` a released ``.pt`` with ``weights_only=True`` (no code from the file is run)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official CHOIS checkpoint not found: {path} (lijiaman/chois_release, e.g. model-10.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error names the offending global; pass it on with the file
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True): {exc}") from exc


def convert(official: str | Path, out: str | Path, num_heads: int = 4, clip_checkpoint: str | None = None) -> Path:
    """Convert a released CHOIS ``.pt`` into a checkpoint folder at ``out``; returns ``out``."""
    state = ema_state(load_official(official))
    config = infer_config(state, num_heads=num_heads, clip_checkpoint=clip_checkpoint)
    weights = convert_state_dict(state, config)
    return save_weights(out, config, weights)


@dataclass
class ConvertArgs:
    """Command-line options.

    Attributes:
        official: the released CHOIS checkpoint (``.pt`` with an ``ema`` entry).
        out: output checkpoint folder (``model.safetensors`` + ``config.json``).
        num_heads: attention heads of the released model (4; not recoverable from tensor shapes).
        clip_checkpoint: local open_clip ViT-B-32 (OpenAI) weights recorded in the config for the text tower.
    """

    official: Path
    out: Path
    num_heads: int = 4
    clip_checkpoint: str | None = None


def main(argv: list[str] | None = None) -> Path:
    """CLI entry point."""
    args = tyro.cli(ConvertArgs, args=argv)
    out = convert(args.official, args.out, args.num_heads, args.clip_checkpoint)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
