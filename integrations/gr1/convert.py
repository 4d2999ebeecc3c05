"""Convert official GR-1 checkpoints into :class:`GR1Policy` checkpoints (issue 12).

Two official families load exactly (``GR1Config.compat``):

- **ARFM robotics GR-1** (``compat="arfm_robotics"``): GR1-Training's GR-1 with HF GPT-2 and the
  future-track token, e.g. ``jxie/calvin-abc_d-robotics_model`` or
  ``jxie/calvin-abcd_d-10_percent-robotics_model``. ``robotics/Main.py`` saves these without
  ``model_mae.*`` and ``model_clip.*``, so the MAE ViT comes from its own checkpoint
  (``--mae``, ``jxie/calvin-mae_pretrain_vit_base``).
- **bytedance GR-1** (``compat="bytedance"``): ``snapshot_ABC.pt`` / ``snapshot_ABCD.pt``, with the
  MAE from ``mae_pretrain_vit_base.pth`` when the snapshot lacks ``model_mae.*``.

Every official key is mapped by :data:`RULES` or dropped with the reason listed there; an
unknown key, or a weight of ours that nothing fills, is an error naming it. The CLIP text
tower is not in these checkpoints: pass the OpenAI CLIP ViT-B/32 weights as an open_clip
``ViT-B-32-quickgelu`` weights file (``--clip``, e.g. ``open_clip_pytorch_model.bin`` of the hub
repo ``timm/vit_base_patch32_clip_224.openai``); they are stored in the output, which then needs
no other file. Sizes not recorded by the
weights (head counts, camera frame size) are :class:`OfficialSizes`, defaulting to the released
models.

Usage::

    python -m integrations.gr1.convert --official calvin-abc_d-robotics_model/ \\
        --mae calvin-mae_pretrain_vit_base/ --clip open_clip_vit_b32.bin --out runs/gr1_official
    python integrations/gr1/evaluate.py --checkpoint runs/gr1_official --tracks arfm:<ckpt> --num-chains 1000

Pickled ``.pt`` / ``.pth`` files are read with ``torch.load(weights_only=True)``; a file that also
pickles other objects (an argparse namespace, say) is refused unless ``--allow-pickle`` says the
file is trusted.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from arfm.atomic import write_text_atomic
from integrations.gr1.configuration_gr1 import GR1Config
from integrations.gr1.modeling_gr1 import GR1Policy
from track_encoder.convert import config_from_official_shapes, official_key_to_ours

DROP = None
T = "transpose"  # GPT-2 Conv1D stores (in, out); nn.Linear stores (out, in)

RULES: tuple[tuple[str, str | None, str], ...] = (
    (r"^model_mae\.(.+)$", r"vision.\1", "MAE ViT (same names as timm's ViT)"),
    (r"^model_clip\.", DROP, "frozen OpenAI CLIP: the text tower is built from --clip"),
    (r"^transformer\.wte\.weight$", DROP, "GPT-2 token table: GR-1 feeds inputs_embeds, never token ids"),
    (r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)$", DROP, "causal-mask buffers (bytedance), rebuilt from the config"),
    (r"^transformer\.wpe\.weight$", "wpe", "absolute position table"),
    (r"^transformer\.h\.(\d+)\.(ln_1|ln_2)\.(weight|bias)$", r"blocks.\1.\2.\3", "block norms"),
    (r"^transformer\.h\.(\d+)\.attn\.(c_attn|c_proj)\.weight$", r"blocks.\1.\2.weight", T),
    (r"^transformer\.h\.(\d+)\.attn\.(c_attn|c_proj)\.bias$", r"blocks.\1.\2.bias", "attention biases"),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.weight$", r"blocks.\1.mlp.0.weight", T),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.bias$", r"blocks.\1.mlp.0.bias", "MLP in bias"),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.weight$", r"blocks.\1.mlp.2.weight", T),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.bias$", r"blocks.\1.mlp.2.bias", "MLP out bias"),
    (r"^transformer\.ln_f\.(weight|bias)$", r"ln_f.\1", "final norm"),
    (r"^perceiver_resampler\.(.+)$", r"resampler.\1", "perceiver resampler (same layout)"),
    (r"^(embed_\w+)\.(weight|bias)$", r"\1.\2", "observation embeddings (same names)"),
    (r"^action_queries\.weight$", "action_query", "action query"),
    (r"^action_chunk_queries\.weight$", "action_chunk_queries", "action-chunk queries"),
    (r"^(obs_queries|obs_hand_queries)\.weight$", r"\1", "video queries"),
    (r"^pred_act_mlps\.(\d+)\.(weight|bias)$", r"pred_act.\1.\2", "action MLP"),
    (r"^pred_arm_act\.(weight|bias)$", r"pred_arm.\1", "arm head"),
    (r"^pred_gripper_act\.(weight|bias)$", r"pred_gripper.\1", "gripper head"),
    (r"^mask_token$", "decoder.mask_token", "decoder mask token (1, 1, 1, D) -> (1, 1, D)"),
    (r"^decoder_pos_embed$", "decoder.pos_embed", "decoder sin-cos table (stored)"),
    (r"^decoder_(embed|norm|pred)\.(weight|bias)$", r"decoder.\1.\2", "video decoder"),
    (r"^decoder_blocks\.(.+)$", r"decoder.blocks.\1", "video decoder blocks (timm names)"),
    (r"^track_encoder_output_to_features\.(weight|bias)$", r"embed_track.\1", "track token projection"),
)
"""``(official key pattern, our key or DROP, reason)``; ``T`` as reason marks a Conv1D transpose."""

MAE_DROPS: tuple[tuple[str, str], ...] = (
    (r"^(decoder_\w+|decoder_blocks)\.|^(mask_token|decoder_pos_embed)$", "MAE's pre-training decoder, unused by GR-1"),
    (r"^(head|fc_norm)\.", "classification head / pooled norm, unused by GR-1 (num_classes=0, CLS token)"),
)
"""Keys of a stand-alone MAE checkpoint that GR-1's ``strict=False`` load ignores."""

RESHAPE_OK = {"decoder.mask_token"}


@dataclass
class OfficialSizes:
    """What official weights do not record (defaults: the released models).

    Attributes:
        heads: GPT-2 heads (12). resampler_heads: perceiver heads (4; dim_head follows).
        track_heads: track-encoder heads (12). vit_heads: MAE ViT heads (``None``: width / 64).
        decoder_heads: video-decoder heads (16, hard-coded officially).
        patch_size: ViT / video patch (16). track_frame_size: pixels of the static camera that
            tracks are given in at run time (CALVIN: 200). dropout: GPT-2 dropout (0.1; eval ignores it).
        text_encoder, clip_model, clip_checkpoint: instruction encoder of the output policy (GR-1
            uses OpenAI CLIP ViT-B/32, i.e. open_clip ``ViT-B-32-quickgelu`` with its ``openai`` weights).
    """

    heads: int = 12
    resampler_heads: int = 4
    track_heads: int = 12
    vit_heads: int | None = None
    decoder_heads: int = 16
    patch_size: int = 16
    track_frame_size: int = 200
    dropout: float = 0.1
    text_encoder: str = "clip"
    clip_model: str = "ViT-B-32-quickgelu"
    clip_checkpoint: str | None = None


def map_key(key: str) -> tuple[str | None, str]:
    """Our key (``None`` = dropped) and the reason for one official GR-1 key.

    Raises:
        KeyError: no rule covers ``key``.
    """
    if key.startswith("track_encoder."):
        return "track_encoder." + official_key_to_ours(key.removeprefix("track_encoder.")), "track encoder"
    for pattern, target, reason in RULES:
        if re.search(pattern, key):
            return (None if target is DROP else re.sub(pattern, target, key)), reason
    raise KeyError(f"unknown official GR-1 key {key!r}")


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    found = [int(m.group(1)) for k in shapes if (m := re.match(pattern, k))]
    return 1 + max(found) if found else 0


def _need(shapes: Mapping[str, tuple[int, ...]], key: str) -> tuple[int, ...]:
    if key not in shapes:
        hint = " (checkpoints saved by robotics/Main.py exclude the MAE ViT: pass its checkpoint with --mae)" if key.startswith("model_mae.") else ""
        raise KeyError(f"official GR-1 checkpoint lacks {key!r}{hint}")
    return shapes[key]


def config_from_official(shapes: Mapping[str, tuple[int, ...]], sizes: OfficialSizes = OfficialSizes()) -> GR1Config:
    """The :class:`GR1Config` of an official checkpoint from its key -> shape (``model_mae.*`` included)."""
    compat = "arfm_robotics" if "transformer.wpe.weight" in shapes else "bytedance"
    hidden = _need(shapes, "embed_ln.weight")[0]
    vit_dim = _need(shapes, "model_mae.cls_token")[-1]
    patch = _need(shapes, "model_mae.patch_embed.proj.weight")[-1]
    grid = math.isqrt(_need(shapes, "model_mae.pos_embed")[1] - 1)
    resampler_inner = _need(shapes, "perceiver_resampler.layers.0.0.to_q.weight")[0]
    use_tracks = any(k.startswith("track_encoder.") for k in shapes)
    track_cfg = None
    if use_tracks:
        track_cfg = config_from_official_shapes({k.removeprefix("track_encoder."): s for k, s in shapes.items() if k.startswith("track_encoder.")}, sizes.track_heads)
    text_dim = _need(shapes, "embed_lang.weight")[1]
    extra: dict[str, Any] = {"track_encoder": track_cfg, "track_len": track_cfg.num_steps} if track_cfg else {}
    return GR1Config(
        window=_need(shapes, "embed_timestep.weight")[0],
        hidden=hidden,
        layers=_count(shapes, r"transformer\.h\.(\d+)\."),
        heads=sizes.heads,
        inner=_need(shapes, "transformer.h.0.mlp.c_fc.weight")[1],
        dropout=sizes.dropout,
        vit_overrides={
            "embed_dim": vit_dim,
            "depth": _count(shapes, r"model_mae\.blocks\.(\d+)\."),
            "num_heads": sizes.vit_heads or vit_dim // 64,
            "mlp_ratio": _need(shapes, "model_mae.blocks.0.mlp.fc1.weight")[0] / vit_dim,
            "qkv_bias": "model_mae.blocks.0.attn.qkv.bias" in shapes,
        },
        image_size=grid * patch,
        patch_size=patch,
        resampler_depth=_count(shapes, r"perceiver_resampler\.layers\.(\d+)\."),
        resampler_latents=_need(shapes, "perceiver_resampler.latents")[0],
        resampler_heads=sizes.resampler_heads,
        resampler_dim_head=resampler_inner // sizes.resampler_heads,
        text_encoder=sizes.text_encoder,
        clip_model=sizes.clip_model,
        clip_checkpoint=sizes.clip_checkpoint,
        text_dim=text_dim,
        state_dim=_need(shapes, "embed_arm_state.weight")[1],
        arm_dim=_need(shapes, "pred_arm_act.weight")[0],
        predict_video="decoder_pred.weight" in shapes,
        video_queries=_need(shapes, "obs_queries.weight")[0],
        decoder_depth=_count(shapes, r"decoder_blocks\.(\d+)\."),
        decoder_heads=sizes.decoder_heads,
        use_tracks=use_tracks,
        track_frame_size=sizes.track_frame_size,
        compat=compat,
        action_chunk=shapes["action_chunk_queries.weight"][0] if "action_chunk_queries.weight" in shapes else 1,
        max_positions=shapes.get("transformer.wpe.weight", (1024,))[0],
        gpt_activation="relu",
        **extra,
    )


def merge_mae(state: dict[str, torch.Tensor], mae_state: Mapping[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Add a stand-alone MAE checkpoint as ``model_mae.*`` where the policy checkpoint lacks it.

    The policy checkpoint's own ``model_mae.*`` win (bytedance's evaluation loads the snapshot
    after the MAE). Returns the merged state and the dropped MAE keys with reasons.
    """
    merged, notes = dict(state), []
    if mae_state is None:
        return merged, notes
    has_mae = any(k.startswith("model_mae.") for k in state)
    for key, value in mae_state.items():
        key = key.removeprefix("model_mae.")
        reason = next((why for pattern, why in MAE_DROPS if re.search(pattern, key)), None)
        if reason is not None:
            notes.append(f"mae:{key}: dropped ({reason})")
        elif has_mae:
            notes.append(f"mae:{key}: dropped (the policy checkpoint has its own model_mae.*)")
        else:
            merged[f"model_mae.{key}"] = value
    return merged, notes


def _check_mask_buffer(key: str, value: torch.Tensor) -> None:
    """A dropped causal-mask buffer must hold what the rebuilt mask uses (lower triangle, -1e4)."""
    if value.device.type == "meta" or not re.search(r"\.attn\.(bias|masked_bias)$", key):
        return
    if key.endswith("masked_bias"):
        ok = value.numel() == 1 and float(value) == -1e4
    else:
        n = value.shape[-1]
        ok = torch.equal(value.reshape(n, n).bool(), torch.ones(n, n, dtype=torch.bool).tril())
    if not ok:
        raise ValueError(f"official GR-1 buffer {key!r} is not the standard causal mask; this converter cannot reproduce it")


def convert_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an official state dict (``model_mae.*`` merged in) onto ``expected`` (our state dict).

    Our text-encoder weights (``text.*``) are the only ones the official checkpoint need not fill.

    Raises:
        KeyError: an official key is unknown or has no counterpart; one of ours is left unfilled.
        ValueError: a shape differs.
    """
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    for key, value in state.items():
        ours, reason = map_key(key)
        if ours is None:
            _check_mask_buffer(key, value)
            notes.append(f"{key}: dropped ({reason})")
            continue
        if ours not in expected:
            raise KeyError(f"official GR-1 key {key!r} maps to {ours!r}, which this GR1Policy lacks (config mismatch?)")
        if reason == T:
            value = value.t()
        if tuple(value.shape) != tuple(expected[ours].shape):
            if ours in RESHAPE_OK and value.numel() == expected[ours].numel():
                value = value.reshape(expected[ours].shape)
            else:
                raise ValueError(f"official GR-1 key {key!r}: shape {tuple(value.shape)} != ours {tuple(expected[ours].shape)} ({ours})")
        out[ours] = value.contiguous()
        notes.append(f"{key} -> {ours}")
    missing = sorted(k for k in expected if k not in out and not k.startswith("text."))
    if missing:
        hint = " (the MAE ViT: pass --mae)" if any(k.startswith("vision.") for k in missing) else ""
        raise KeyError(f"official GR-1 checkpoint gives no value for {missing[:8]}{'...' if len(missing) > 8 else ''}{hint}")
    return out, notes


def convert_official_gr1(
    state: Mapping[str, torch.Tensor], mae_state: Mapping[str, torch.Tensor] | None = None, sizes: OfficialSizes = OfficialSizes()
) -> tuple[GR1Policy, list[str]]:
    """Build a :class:`GR1Policy` holding an official checkpoint's weights; returns it and the key report."""
    merged, notes = merge_mae(dict(state), mae_state)
    config = config_from_official({k: tuple(v.shape) for k, v in merged.items()}, sizes)
    policy = GR1Policy(config).eval()
    converted, key_notes = convert_state_dict(merged, policy.state_dict())
    policy.load_state_dict(converted, strict=False)
    return policy, key_notes + notes


def load_checkpoint(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint file or hub folder.

    Accepts ``.safetensors`` and pickled ``.pt`` / ``.pth`` / ``.bin`` files (read with
    ``weights_only=True`` unless ``allow_pickle``), or a folder holding exactly one of them.
    Unwraps ``state_dict`` / ``model`` / ``module`` entries and strips the ``module.`` (DDP) and
    ``_orig_mod.`` (``torch.compile``) prefixes.

    Raises:
        FileNotFoundError: nothing to read at ``path``.
        ValueError: the pickle holds more than tensors (and ``allow_pickle`` is off), or no state dict.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt"))
        if len(files) != 1:
            raise FileNotFoundError(f"checkpoint folder {path} must hold exactly one weights file, found {[p.name for p in files]}")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(path)
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path} pickles objects other than tensors; if you trust the file, rerun with --allow-pickle ({err})") from err
    for key in ("state_dict", "model", "module", "model_state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path} holds no state dict")
    state = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def main(argv: list[str] | None = None) -> Path:
    """Command line: convert an official checkpoint into ``--out`` (config.json + model.safetensors + conversion.json)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="ARFM robotics or bytedance GR-1 checkpoint (file or hub folder)")
    parser.add_argument("--mae", help="MAE ViT checkpoint (needed when the policy checkpoint has no model_mae.*)")
    parser.add_argument("--clip", help="OpenAI CLIP ViT-B/32 weights, open_clip ViT-B-32-quickgelu format (instructions are random without it)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--track-frame-size", type=int, default=200, help="pixels of the static camera the tracks are given in")
    parser.add_argument("--heads", type=int, default=12, help="GPT-2 heads (not stored in the weights)")
    parser.add_argument("--resampler-heads", type=int, default=4, help="perceiver-resampler heads")
    parser.add_argument("--track-heads", type=int, default=12, help="track-encoder heads")
    parser.add_argument("--vit-heads", type=int, default=None, help="MAE ViT heads (default: width / 64)")
    parser.add_argument("--text-encoder", choices=("clip", "hashed"), default="clip", help="'hashed' only for tests without CLIP")
    parser.add_argument("--allow-pickle", action="store_true", help="read trusted pickles that hold more than tensors")
    args = parser.parse_args(argv)
    if args.clip is None and args.text_encoder == "clip":
        print("warning: no --clip given: the converted policy's instruction encoder is random (fine for tests only)")
    sizes = OfficialSizes(
        heads=args.heads, resampler_heads=args.resampler_heads, track_heads=args.track_heads, vit_heads=args.vit_heads,
        track_frame_size=args.track_frame_size, text_encoder=args.text_encoder, clip_checkpoint=args.clip,
    )
    state = load_checkpoint(args.official, args.allow_pickle)
    mae = load_checkpoint(args.mae, args.allow_pickle) if args.mae else None
    policy, notes = convert_official_gr1(state, mae, sizes)
    out = Path(args.out)
    policy.save_pretrained(out)
    report = {"official": str(args.official), "mae": args.mae, "clip": args.clip, "compat": policy.config.compat, "keys": notes}
    write_text_atomic(out / "conversion.json", json.dumps(report, indent=2))
    print(f"wrote {out} ({policy.config.compat}, {sum(n.count('->') for n in notes)} tensors mapped)")
    return out


if __name__ == "__main__":
    main()
