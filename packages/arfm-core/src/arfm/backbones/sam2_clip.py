"""The paper's backbones (App. B): SAM 2.1 hiera-tiny for local features, CLIP ViT-B/32 for
global image tokens and text.

- SAM 2.1: only the image encoder (Hiera trunk + FPN neck) is built, from the ``sam2``
  package's own hydra config; its three FPN levels (strides 4, 8, 16 after SAM 2's ``scalp``
  drops the coarsest) are the local features. Frames enter at the model's 256 x 256.
- CLIP: ``open_clip``'s ViT-B/32; the 7 x 7 = 49 patch tokens (width 768, before the
  projection) of a 224 x 224 resize are the global tokens; the text transformer's per-token
  outputs (width 512) are the text tokens and its projected EOT token is the pooled vector.

``BackboneConfig.clip_tokens="hidden"`` gives what the published release reads from HF CLIP
instead: the vision transformer's patch tokens before ``ln_post`` (``last_hidden_state[:, 1:]``)
and the text EOT state after ``ln_final`` without projection (``pooler_output``), plus the
text key mask and which captions are empty; ``sam2_image_size`` resizes frames for SAM 2
(the release runs it at 512). ``clip_arch`` builds a CLIP of other sizes (reduced fixtures).

Both are frozen by default. Weights come from local files only: a missing file raises
:class:`FileNotFoundError` naming it and where to get it. Without paths the networks keep
their random initialisation (useful for tests and benchmarks, useless for predictions).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from arfm.backbones.base import FeatureBackbone, FrameFeatures, TextFeatures, check_frames
from arfm.config import BackboneConfig

SAM2_HELP = (
    "download sam2.1_hiera_tiny.pt from the SAM 2 release (facebookresearch/sam2, 'SAM 2.1 checkpoints') "
    "and pass its path as backbone.sam2_checkpoint"
)
CLIP_HELP = (
    "download the open_clip ViT-B-32 weights (e.g. the 'openai' or 'laion2b_s34b_b79k' tag, "
    "open_clip_pytorch_model.bin) and pass the file path as backbone.clip_checkpoint"
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def require_file(path: str, what: str, help_: str) -> Path:
    """Return ``Path(path)`` or raise a FileNotFoundError that says what is missing and how to get it."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found at '{p}': {help_}")
    return p


def build_sam2_image_encoder(config_name: str, checkpoint: str | None) -> torch.nn.Module:
    """Instantiate SAM 2's image encoder from the package's hydra config (+ optional weights)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    cfg = compose(config_name=config_name)
    encoder = instantiate(cfg.model.image_encoder, _recursive_=True)
    if checkpoint is not None:
        path = require_file(checkpoint, "SAM 2.1 checkpoint", SAM2_HELP)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        prefix = "image_encoder."
        encoder_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not encoder_state:
            raise ValueError(f"SAM 2.1 checkpoint '{path}' has no 'image_encoder.*' weights: is it a SAM 2 checkpoint?")
        encoder.load_state_dict(encoder_state, strict=True)
    return encoder


def build_clip(model_name: str, checkpoint: str | None, arch: dict | None = None) -> torch.nn.Module:
    """open_clip model, random or from a local weights file (never downloaded).

    ``arch`` (``{"embed_dim", "vision_cfg", "text_cfg", ...}``) builds ``open_clip.model.CLIP``
    of those sizes instead of the named architecture.
    """
    import open_clip

    if arch is not None:
        from open_clip.model import CLIP

        model = CLIP(**arch)
        if checkpoint is not None:
            path = require_file(checkpoint, "CLIP checkpoint", CLIP_HELP)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return model
    pretrained = None
    if checkpoint is not None:
        pretrained = str(require_file(checkpoint, "CLIP checkpoint", CLIP_HELP))
    return open_clip.create_model(model_name, pretrained=pretrained)


class Sam2ClipBackbone(FeatureBackbone):
    """SAM 2.1 image encoder (local) + CLIP ViT-B/32 (global image tokens, text)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        import open_clip

        self.sam2 = build_sam2_image_encoder(config.sam2_config, config.sam2_checkpoint)
        self.clip = build_clip(config.clip_model, config.clip_checkpoint, config.clip_arch)
        self.clip.visual.output_tokens = True  # patch tokens are the global image tokens
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32" if config.clip_arch is not None else config.clip_model)
        self.hidden_tokens = config.clip_tokens == "hidden"
        self.sam2_image_size = config.sam2_image_size
        self.freeze = config.freeze
        if config.freeze:
            for p in self.parameters():
                p.requires_grad_(False)
            self.eval()
        d_model = self.sam2.neck.d_model
        self.local_channels = (d_model, d_model, d_model)
        visual = self.clip.visual
        grid = visual.grid_size
        self.num_global_tokens = grid[0] * grid[1]
        self.global_channels = visual.conv1.out_channels
        self.text_channels = self.clip.transformer.width
        self.text_len = min(config.text_len, self.clip.context_length)
        self._clip_size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
        self.register_buffer("sam_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("sam_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "Sam2ClipBackbone":
        # Frozen foundation models stay in eval mode (no dropout / norm statistics drift).
        return super().train(False if self.freeze else mode)

    def encode_frames(self, frames: torch.Tensor) -> FrameFeatures:
        check_frames(frames)
        b, f = frames.shape[:2]
        x = frames.flatten(0, 1)
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            sam_in = x
            if self.sam2_image_size is not None and tuple(x.shape[-2:]) != (self.sam2_image_size,) * 2:
                sam_in = F.interpolate(x, size=(self.sam2_image_size,) * 2, mode="bilinear", align_corners=False)
            levels = self.sam2((sam_in - self.sam_mean) / self.sam_std)["backbone_fpn"]  # finest first
            clip_in = F.interpolate(x, size=self._clip_size, mode="bilinear", align_corners=False)
            clip_in = (clip_in - self.clip_mean) / self.clip_std
            if self.hidden_tokens:
                visual = self.clip.visual
                tokens = visual.transformer(visual._embeds(clip_in))[:, 1:]  # before ln_post, no CLS
            else:
                _, tokens = self.clip.visual(clip_in)  # (B*F, G, 768)
        local = [level.view(b, f, *level.shape[1:]) for level in levels]
        return FrameFeatures(local=local, global_tokens=tokens.reshape(b, f, *tokens.shape[1:]))

    def encode_text(self, captions: list[str]) -> TextFeatures:
        from open_clip.transformer import text_global_pool

        device = self.clip.token_embedding.weight.device
        ids = self.tokenizer(captions).to(device)  # (B, 77)
        clip = self.clip
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            x = clip.token_embedding(ids) + clip.positional_embedding
            x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))  # (B, 77, 512)
            pooled = text_global_pool(x, ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
            if not self.hidden_tokens:
                pooled = pooled @ clip.text_projection if not isinstance(clip.text_projection, torch.nn.Linear) else clip.text_projection(pooled)
        # Real tokens run up to and including the end-of-text token (the highest id).
        last = ids.argmax(dim=1, keepdim=True)
        mask = torch.arange(ids.shape[1], device=device)[None] <= last
        present = torch.tensor([bool(c.strip()) for c in captions], device=device)
        return TextFeatures(tokens=x[:, : self.text_len], pooled=pooled, mask=mask[:, : self.text_len], present=present)
