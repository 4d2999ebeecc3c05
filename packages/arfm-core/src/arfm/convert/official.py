"""``arfm convert --official``: the published ARFM motion predictor -> our checkpoint.

Input: the release's HF-style folder (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``; hub repo ``jxie/autorf-zero_shot-motion_predictor``). Output: our
checkpoint directory (``model.safetensors`` + ``config.json``, written atomically), which
``arfm predict / eval / stream`` load unchanged. The model is ``ModelConfig(variant="official")``
at the sizes read from the release's config and tensor shapes.

Every key is mapped or dropped on purpose (:mod:`arfm.convert.official_keys`); an unknown
key, a missing one, or a shape that disagrees is an error naming it. The frozen SAM 2.1 /
CLIP weights map to our backbone modules; a checkpoint without them (such as the reduced
test fixture) gets a randomly initialised backbone of the matching widths, which runs but
predicts nothing useful. ``--weights online`` converts the training copy instead of the EMA
copy the release samples with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from arfm.config import BackboneConfig, ModelConfig, OfficialQuirks, official_model_config
from arfm.convert.official_keys import COPIES, plan_conversion

# ViT-B/32 widths: a checkpoint with these is converted onto the real sam2-clip backbone.
CLIP_VISION_WIDTH, CLIP_TEXT_WIDTH, SAM2_FPN_CHANNELS = 768, 512, 256
# Ours-side keys that have no release counterpart because the official variant never reads them.
UNUSED_OURS = {
    "backbone.clip.visual.proj": "CLIP visual projection (the release reads unprojected tokens)",
    "backbone.clip.text_projection": "CLIP text projection (the release reads the unprojected EOT state)",
    "backbone.clip.logit_scale": "CLIP contrastive temperature",
}
# Release config values whose other settings this converter does not implement.
REQUIRED_SETTINGS = {
    "late_noise_conditioning": True,
    "use_camera_motion_conditioning": True,
    "use_track_rate_conditioning": False,
    "use_absolute_positional_embeddings": False,
    "track_predictor_head_type": "denoising_predictor",
    "track_predictor_has_spatial_condition": True,
    "rectified_flow_relative_prediction": True,
}


def read_official_state(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config.json dict, state dict)`` of a release folder (safetensors preferred)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"official checkpoint folder '{folder}' does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"official checkpoint folder '{folder}' has no config.json")
    config = json.loads(config_path.read_text())
    candidates = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if len(candidates) != 1:
        raise FileNotFoundError(f"official checkpoint folder '{folder}' needs exactly one *.safetensors or pytorch_model.bin, found {[c.name for c in candidates]}")
    path = candidates[0]
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    return config, state


def model_config_from_official(config: dict, shapes: dict[str, tuple[int, ...]], weights: str = "ema", backbone: str = "auto") -> ModelConfig:
    """Our :class:`ModelConfig` for a release config and its tensor shapes.

    Args:
        config: the release's ``config.json``.
        shapes: release key -> shape (sizes the config does not spell out are read from them).
        weights: which copy (``"ema"`` / ``"online"``), to read the shapes of.
        backbone: ``"sam2-clip"``, ``"tiny"`` (random stand-in of the same widths), or
            ``"auto"``: sam2-clip when the widths are SAM 2 / CLIP ViT-B/32's.
    """
    for name, value in REQUIRED_SETTINGS.items():
        if name in config and config[name] != value:
            raise ValueError(f"official config field '{name}' is {config[name]!r}; only {value!r} is supported")
    prefix = COPIES[weights]

    def shape(key: str) -> tuple[int, ...]:
        if prefix + key not in shapes:
            raise ValueError(f"official checkpoint is missing {prefix + key!r}")
        return tuple(shapes[prefix + key])

    fusion = config.get("track_predictor_config") or {}
    head = config.get("denoising_predictor_config") or {}
    dim, hidden = shape("track_predictor.norm.weight")[0], shape("track_predictor.layers.0.mlp.gate_proj.weight")[0]
    if shape("track_predictor_head.feature_projection.weight")[0] != dim or shape("track_predictor_head.layers.0.mlp.gate_proj.weight")[0] != hidden:
        raise ValueError("official flow head width / MLP width differ from the fusion module's; our variant shares them")
    heads = int(fusion.get("num_attention_heads", 12))
    if int(head.get("num_attention_heads", heads)) != heads or int(fusion.get("num_key_value_heads", heads)) != heads:
        raise ValueError("official head / key-value head counts differ from the fusion module's; not supported")
    def count(layers: str) -> int:
        indices = [int(k[len(prefix + layers) :].split(".")[0]) for k in shapes if k.startswith(prefix + layers)]
        if not indices:
            raise ValueError(f"official checkpoint has no {prefix + layers}* keys")
        return 1 + max(indices)

    depth, flow_depth = count("track_predictor.layers."), count("track_predictor_head.layers.")
    text_len, _ = shape("text_encoder.embedding_mask_tokens")
    global_dim, text_dim = shape("global_feature_to_predictor_projection.weight")[1], shape("text_encoder.projection.weight")[1]
    fpn = shape("video_encoder.image_model.image_model.sam_mask_decoder.conv_s0.weight")[1]
    camera_classes = shape("camera_motion_embedder.embedding_table.weight")[0]
    if backbone == "auto":
        real = (global_dim, text_dim, fpn) == (CLIP_VISION_WIDTH, CLIP_TEXT_WIDTH, SAM2_FPN_CHANNELS)
        backbone = "sam2-clip" if real else "tiny"
    base = official_model_config().backbone
    if backbone == "sam2-clip":
        bb = BackboneConfig(
            clip_model=base.clip_model, text_len=text_len, sam2_image_size=int(config.get("sam2_image_size", 512)), clip_tokens="hidden"
        )
    elif backbone == "tiny":
        bb = BackboneConfig(kind="tiny", text_len=text_len, tiny_channels=(fpn, fpn, fpn), tiny_global_dim=global_dim, tiny_text_dim=text_dim)
    else:
        raise ValueError(f"backbone must be 'auto', 'sam2-clip' or 'tiny', got {backbone!r}")
    horizon = int(config.get("max_track_length", 50))
    return official_model_config(
        backbone=bb,
        dim=dim,
        depth=depth,
        heads=heads,
        flow_depth=flow_depth,
        mlp_hidden=hidden,
        max_points=int(config.get("track_subsample_count", 100)),
        horizon=horizon,
        quirks=OfficialQuirks(num_camera_classes=camera_classes),
    )


def convert_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, weights: str = "ema") -> dict[str, torch.Tensor]:
    """Our state dict for ``model`` from the release's ``state``.

    Backbone keys must be all present or all absent (then the model's own random backbone
    weights are kept). Raises ``ValueError`` naming any unknown, missing or mis-shaped key.
    """
    plan = plan_conversion(state.keys(), weights)
    ours = model.state_dict()
    has_backbone = any(role == "backbone" for role in plan.roles.values())
    out: dict[str, torch.Tensor] = {}
    for target, sources in plan.targets.items():
        if target not in ours:
            raise ValueError(f"official key {sources[0]!r} maps to {target!r}, which the converted model does not have (backbone kind?)")
        tensor = torch.cat([state[s] for s in sources], dim=0) if len(sources) > 1 else state[sources[0]]
        if target == "backbone.clip.visual.class_embedding" or target.endswith("positional_embedding"):
            tensor = tensor.reshape(ours[target].shape)
        if tuple(tensor.shape) != tuple(ours[target].shape):
            raise ValueError(f"official {sources} has shape {tuple(tensor.shape)}, our {target!r} needs {tuple(ours[target].shape)}")
        out[target] = tensor.to(ours[target].dtype).contiguous()
    missing = []
    for key, value in ours.items():
        if key in out:
            continue
        random_backbone = key.startswith("backbone.") and not has_backbone
        if random_backbone or key in UNUSED_OURS:
            out[key] = value  # keep the model's own (random) values
        else:
            missing.append(key)
    if missing:
        raise ValueError(f"official checkpoint has no weights for {len(missing)} of our keys, e.g. {missing[:5]}")
    return out


def convert_official(folder: str | Path, out: str | Path, weights: str = "ema", backbone: str = "auto") -> Path:
    """Convert a release folder into our checkpoint directory ``out`` (atomic); returns ``out``."""
    from arfm.checkpoint import save_checkpoint
    from arfm.model import TrackShiftFlowPredictor

    config, state = read_official_state(folder)
    cfg = model_config_from_official(config, {k: tuple(v.shape) for k, v in state.items()}, weights, backbone)
    model = TrackShiftFlowPredictor(cfg)
    model.load_state_dict(convert_state_dict(state, model, weights), strict=True)
    return save_checkpoint(out, model)


@dataclass
class ConvertCommand:
    """Convert a published checkpoint into an arfm checkpoint.

    Attributes:
        official: folder of the published ARFM motion predictor (config.json + weights).
        out: our checkpoint directory to write (replaced atomically).
        weights: "ema" (the copy the release samples with) or "online" (the training copy).
        backbone: "auto", "sam2-clip" or "tiny" (a random stand-in of the checkpoint's widths,
            for checkpoints without SAM 2 / CLIP weights of the real sizes).
    """

    official: Path
    out: Path
    weights: Literal["ema", "online"] = "ema"
    backbone: Literal["auto", "sam2-clip", "tiny"] = "auto"


def main(argv: list[str] | None = None) -> None:
    import tyro

    cmd = tyro.cli(ConvertCommand, args=argv, prog="arfm convert")
    path = convert_official(cmd.official, cmd.out, cmd.weights, cmd.backbone)
    print(f"wrote {path} (ARFM official variant, {cmd.weights} weights)")


if __name__ == "__main__":
    main()
