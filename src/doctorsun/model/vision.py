"""The vision encoder: a pretrained CLIP/SigLIP vision tower, or a small ViT made from scratch."""

from __future__ import annotations

from pathlib import Path

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.model.config import VisionConfig

# OpenAI CLIP's normalisation; the scratch ViT uses it too so that swapping towers changes nothing else.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

VISION_MODEL_TYPES = {"clip", "clip_vision_model", "siglip", "siglip_vision_model"}


def scratch_vision_config(cfg: VisionConfig):
    """A CLIP vision config for a ViT trained from scratch (the mini recipe)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        projection_dim=cfg.hidden_size,
        hidden_act="quick_gelu",
    )


def image_processor_for(size: int):
    """Resize to ``size`` x ``size`` (no crop, so nothing at the edge of a scan is lost) and normalise."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"height": size, "width": size},
        do_center_crop=False,
        crop_size={"height": size, "width": size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def load_vision(cfg: VisionConfig, dtype: torch.dtype = torch.float32):
    """Return ``(vision_model, image_processor)`` for a config."""
    from transformers import CLIPVisionModel

    if cfg.name_or_path is None:
        model = CLIPVisionModel(scratch_vision_config(cfg)).to(dtype)
        return model, image_processor_for(cfg.image_size)

    from transformers import AutoConfig, AutoImageProcessor, SiglipVisionModel

    name = cfg.name_or_path
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not path.exists():
        raise DoctorSunError(f"vision encoder not found: {name!r}")
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise DoctorSunError(f"cannot load vision encoder {name!r}: {exc}") from exc
    if config.model_type not in VISION_MODEL_TYPES:
        raise DoctorSunError(f"vision encoder {name!r} is a {config.model_type!r}; supported: CLIP, SigLIP")
    is_clip = config.model_type.startswith("clip")
    cls = CLIPVisionModel if is_clip else SiglipVisionModel
    model = cls.from_pretrained(name, dtype=dtype, use_safetensors=True)
    try:
        processor = AutoImageProcessor.from_pretrained(name)
    except OSError:
        processor = image_processor_for(model.config.image_size)
    return model, processor
