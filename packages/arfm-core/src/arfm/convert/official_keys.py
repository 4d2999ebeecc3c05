"""Key table of the published ARFM checkpoint -> our ``variant="official"`` model.

Every key of the release's ``MotionPredictorForRectifiedFlow`` state dict matches exactly one
rule of :data:`RULES` (first match wins); a rule either maps the key to one of ours (``q``,
``k``, ``v`` projections are concatenated into one ``qkv`` / ``in_proj`` tensor, in that
order) or drops it, with the reason. A key no rule matches is an error naming it.

The state dict holds two copies of the model: ``ema_model.ema_model.*`` (the EMA weights the
release samples with, because ``rectified_flow_use_consistency`` defaults to true) and
``motion_predictor.*`` (the online training copy). One is converted, the other dropped.

Works on key names (and shapes) alone, so coverage can be checked against the key list of the
full-size model without its weights (``fixtures/official/arfm_motion_predictor.full_keys.txt``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

COPIES = {"ema": "ema_model.ema_model.", "online": "motion_predictor."}

_SAM2 = r"video_encoder\.image_model\.image_model\."
_CLIP_V = r"global_video_encoder\.image_model\.image_model\."
_CLIP_T = r"text_encoder\.text_encoder\."
_HEAD = r"track_predictor_head\."


def _fusion_layer(match: re.Match) -> str:
    """Release layer ``2k`` is our ``temporal.k``, layer ``2k + 1`` our ``spatial.k``."""
    layer = int(match.group(1))
    kind = "temporal" if layer % 2 == 0 else "spatial"
    return f"fusion.{kind}.{layer // 2}.{_BLOCK_PARTS[match.group(2)]}"


def _head_layer(match: re.Match) -> str:
    return f"head.blocks.{match.group(1)}.{_BLOCK_PARTS[match.group(2)]}"


def _clip_layer(prefix: str) -> Callable[[re.Match], str]:
    def target(match: re.Match) -> str:
        return f"{prefix}transformer.resblocks.{match.group(1)}.{_CLIP_PARTS[match.group(2)]}"

    return target


# Sub-module names inside one transformer layer: release (HF Llama style) -> ours.
_BLOCK_PARTS = {
    "self_attn.q_proj.weight": "attn.qkv.weight", "self_attn.k_proj.weight": "attn.qkv.weight", "self_attn.v_proj.weight": "attn.qkv.weight",
    "self_attn.q_proj.bias": "attn.qkv.bias", "self_attn.k_proj.bias": "attn.qkv.bias", "self_attn.v_proj.bias": "attn.qkv.bias",
    "self_attn.o_proj.weight": "attn.proj.weight", "self_attn.o_proj.bias": "attn.proj.bias",
    "mlp.gate_proj.weight": "mlp.gate.weight", "mlp.gate_proj.bias": "mlp.gate.bias",
    "mlp.up_proj.weight": "mlp.up.weight", "mlp.up_proj.bias": "mlp.up.bias",
    "mlp.down_proj.weight": "mlp.down.weight", "mlp.down_proj.bias": "mlp.down.bias",
    "input_layernorm.weight": "norm1.weight", "post_attention_layernorm.weight": "norm2.weight",
    "adaln_modulation.1.weight": "adaLN_modulation.1.weight", "adaln_modulation.1.bias": "adaLN_modulation.1.bias",
}  # fmt: skip
# HF CLIP encoder layer -> open_clip residual block.
_CLIP_PARTS = {
    "self_attn.q_proj.weight": "attn.in_proj_weight", "self_attn.k_proj.weight": "attn.in_proj_weight", "self_attn.v_proj.weight": "attn.in_proj_weight",
    "self_attn.q_proj.bias": "attn.in_proj_bias", "self_attn.k_proj.bias": "attn.in_proj_bias", "self_attn.v_proj.bias": "attn.in_proj_bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
    "layer_norm1.weight": "ln_1.weight", "layer_norm1.bias": "ln_1.bias", "layer_norm2.weight": "ln_2.weight", "layer_norm2.bias": "ln_2.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight", "mlp.fc1.bias": "mlp.c_fc.bias", "mlp.fc2.weight": "mlp.c_proj.weight", "mlp.fc2.bias": "mlp.c_proj.bias",
}  # fmt: skip
_QKV_PART = re.compile(r"(?:^|\.)(q|k|v)_proj\.")


@dataclass(frozen=True)
class Rule:
    """``pattern`` (full match, after the copy prefix) -> ``target`` (template or callable), or None = dropped.

    Attributes:
        role: which backbone/part the key belongs to (``"backbone"`` keys may be absent as a whole).
    """

    pattern: str
    target: str | Callable[[re.Match], str] | None
    reason: str
    role: str = "model"


_LAYER_KEY = "(" + "|".join(re.escape(k) for k in _BLOCK_PARTS) + ")"
_CLIP_KEY = "(" + "|".join(re.escape(k) for k in _CLIP_PARTS) + ")"

RULES: list[Rule] = [
    # --- SAM 2.1 (frozen): the image encoder and the two channel reductions are used, the rest never runs.
    Rule(_SAM2 + r"sam_mask_decoder\.(conv_s[01])\.(weight|bias)", r"official.\1.\2", "SAM 2 conv_s0 / conv_s1, applied to FPN levels 0 / 1"),
    Rule(_SAM2 + r"image_encoder\.(.+)", r"backbone.sam2.\1", "SAM 2.1 hiera-tiny image encoder (trunk + FPN neck)", "backbone"),
    Rule(_SAM2 + r".+", None, "SAM 2 memory / prompt / mask-decoder parts: the model only runs the image encoder"),
    # --- CLIP ViT-B/32 vision tower (frozen), HF names -> open_clip names.
    Rule(_CLIP_V + r"embeddings\.class_embedding", "backbone.clip.visual.class_embedding", "CLIP vision CLS embedding", "backbone"),
    Rule(_CLIP_V + r"embeddings\.patch_embedding\.weight", "backbone.clip.visual.conv1.weight", "CLIP vision patch embedding", "backbone"),
    Rule(_CLIP_V + r"embeddings\.position_embedding\.weight", "backbone.clip.visual.positional_embedding", "CLIP vision positions", "backbone"),
    Rule(_CLIP_V + r"pre_layrnorm\.(weight|bias)", r"backbone.clip.visual.ln_pre.\1", "CLIP vision pre-layernorm", "backbone"),
    Rule(_CLIP_V + r"post_layernorm\.(weight|bias)", r"backbone.clip.visual.ln_post.\1", "CLIP vision post-layernorm (kept; the release reads tokens before it)", "backbone"),
    Rule(_CLIP_V + r"encoder\.layers\.(\d+)\." + _CLIP_KEY, _clip_layer("backbone.clip.visual."), "CLIP vision transformer layer", "backbone"),
    # --- CLIP text tower (frozen).
    Rule(_CLIP_T + r"embeddings\.token_embedding\.weight", "backbone.clip.token_embedding.weight", "CLIP token embedding", "backbone"),
    Rule(_CLIP_T + r"embeddings\.position_embedding\.weight", "backbone.clip.positional_embedding", "CLIP text positions", "backbone"),
    Rule(_CLIP_T + r"final_layer_norm\.(weight|bias)", r"backbone.clip.ln_final.\1", "CLIP text final layernorm", "backbone"),
    Rule(_CLIP_T + r"encoder\.layers\.(\d+)\." + _CLIP_KEY, _clip_layer("backbone.clip."), "CLIP text transformer layer", "backbone"),
    Rule(_CLIP_T + r"embeddings\.position_ids", None, "HF index buffer (0 .. 76), recomputed by open_clip", "backbone"),
    # --- Inputs of the fusion grid (trained).
    Rule(r"text_encoder\.projection\.(weight|bias)", r"official.text_proj.\1", "text token projection"),
    Rule(r"text_encoder\.pooled_projection\.(weight|bias)", r"official.text_pooled_proj.\1", "pooled text projection"),
    Rule(r"text_encoder\.embedding_mask_tokens", "official.text_mask_tokens", "text tokens of a caption-less row"),
    Rule(r"text_encoder\.pooled_mask_token", "official.pooled_mask_token", "pooled text of a caption-less row"),
    Rule(r"camera_motion_embedder\.embedding_table\.weight", "official.camera.weight", "camera-motion class embedding"),
    Rule(r"feature_to_predictor_projection\.(weight|bias)", r"official.local_proj.\1", "352-d local feature projection"),
    Rule(r"global_feature_to_predictor_projection\.(weight|bias)", r"official.global_proj.\1", "CLIP token projection"),
    Rule(r"visibility_indicator_embeddings\.weight", "official.visibility.weight", "local visibility embedding"),
    Rule(r"global_visibility_indicator_embeddings\.weight", "official.global_visibility.weight", "global visibility embedding"),
    # --- Fusion transformer (trained): alternating layers, final RMSNorm.
    Rule(r"track_predictor\.layers\.(\d+)\." + _LAYER_KEY, _fusion_layer, "fusion layer (even: temporal, odd: spatial)"),
    Rule(r"track_predictor\.norm\.weight", "fusion.norm.weight", "fusion final RMSNorm"),
    # --- Flow head (trained).
    Rule(_HEAD + r"fourier_embeddings\.(height|width)_embeddings", None, "fixed Fourier tables of absolute positions, unused (use_absolute_positional_embeddings=false)"),
    Rule(_HEAD + r"time_embedder\.mlp\.([02])\.(weight|bias)", r"head.time_embed.mlp.\1.\2", "flow-time embedding MLP"),
    Rule(_HEAD + r"feature_projection\.(weight|bias)", r"head.input_proj.\1", "head input projection of cat(x_t, features)"),
    Rule(_HEAD + r"layers\.(\d+)\." + _LAYER_KEY, _head_layer, "flow-head layer"),
    Rule(_HEAD + r"predictor\.linear\.(weight|bias)", r"head.final.linear.\1", "head output linear"),
    Rule(_HEAD + r"predictor\.adaln_modulation\.1\.(weight|bias)", r"head.final.adaLN_modulation.1.\1", "head output modulation"),
]


@dataclass
class ConversionPlan:
    """Result of :func:`plan_conversion`.

    Attributes:
        targets: our key -> the release keys that form it, in concatenation order.
        dropped: release key -> why it is not converted.
        roles: our key -> the rule role (``"model"`` or ``"backbone"``).
    """

    targets: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)


def plan_conversion(keys: Iterable[str], weights: str = "ema") -> ConversionPlan:
    """Account for every release key: map it to ours or drop it with a reason.

    Args:
        keys: the release state dict's keys.
        weights: ``"ema"`` (sampling weights, the default) or ``"online"``.

    Raises:
        ValueError: naming the first key that no rule covers.
    """
    if weights not in COPIES:
        raise ValueError(f"weights must be one of {sorted(COPIES)}, got {weights!r}")
    prefix = COPIES[weights]
    other = [p for name, p in COPIES.items() if name != weights]
    plan = ConversionPlan()
    parts: dict[str, dict[int, str]] = {}
    split: set[str] = set()  # targets concatenated from separate q, k, v projections
    for key in keys:
        if key in ("ema_model.initted", "ema_model.step"):
            plan.dropped[key] = "EMA bookkeeping (ema-pytorch), not a weight"
            continue
        if any(key.startswith(p) for p in other):
            plan.dropped[key] = f"the other weight copy (converting the {weights} copy {prefix}*)"
            continue
        if not key.startswith(prefix):
            raise ValueError(f"official checkpoint key {key!r} is neither in {sorted(COPIES.values())} nor EMA bookkeeping")
        name = key[len(prefix) :]
        for rule in RULES:
            match = re.fullmatch(rule.pattern, name)
            if match is None:
                continue
            if rule.target is None:
                plan.dropped[key] = rule.reason
            else:
                target = rule.target(match) if callable(rule.target) else match.expand(rule.target)
                qkv = _QKV_PART.search(name)
                index = "qkv".index(qkv.group(1)) if qkv else 0
                if qkv:
                    split.add(target)
                slot = parts.setdefault(target, {})
                if index in slot:
                    raise ValueError(f"official keys {slot[index]!r} and {key!r} both map to {target!r}")
                slot[index] = key
                plan.roles[target] = rule.role
            break
        else:
            raise ValueError(f"unknown official checkpoint key {key!r}: no conversion rule covers it")
    for target, slot in parts.items():
        expected = [0, 1, 2] if target in split else [0]
        if sorted(slot) != expected:
            missing = [f"{'qkv'[i]}_proj" for i in expected if i not in slot]
            raise ValueError(f"official checkpoint misses {missing} for {target!r} (have {sorted(slot.values())})")
        plan.targets[target] = [slot[i] for i in expected]
    return plan
