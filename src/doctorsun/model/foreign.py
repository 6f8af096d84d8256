"""Reading the parts of a foreign checkpoint: its JSON, the LLM's config and tokenizer, the vision
tower's config (offline too, for the towers the released checkpoints name) and the image preprocessing
it was trained with."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError

log = logging.getLogger(__name__)

LLAVA_ONLY_KEYS = {
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter",
    "use_mm_proj",
    "unfreeze_mm_vision_tower",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "architectures",
    "model_type",
    "_name_or_path",
    "transformers_version",
    "mm_projector_lr",
    "mm_vision_tower_lr",
}
# Towers the released checkpoints name, for when they are not in the local HF cache (offline use);
# values from their config.json on the Hugging Face hub.
KNOWN_TOWERS: dict[str, dict[str, Any]] = {
    name: dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=size,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    for name, size in (("openai/clip-vit-large-patch14-336", 336), ("openai/clip-vit-large-patch14", 224))
}


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DoctorSunError(f"missing {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DoctorSunError(f"{path} is not valid JSON: {exc}") from None

def llava_text_config(raw: dict[str, Any], model_type: str):
    from transformers import AutoConfig

    kept = {k: v for k, v in raw.items() if not k.startswith("mm_") and k not in LLAVA_ONLY_KEYS}
    return AutoConfig.for_model(model_type, **kept)


def auto_config(name: str | Path, trust: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise DoctorSunError(f"cannot load the config of {name}: {exc}") from None


def tower_config(tower: str | Path, need_weights: bool, trust: bool):
    """``(vision_config, local_dir_or_id | None)`` for a tower named by a dir or HF id."""
    from transformers import CLIPVisionConfig

    try:
        config = auto_config(tower, trust)
    except DoctorSunError:
        if str(tower) in KNOWN_TOWERS and not need_weights:
            log.info("vision tower %s not available offline: using its known config", tower)
            return CLIPVisionConfig(**KNOWN_TOWERS[str(tower)]), None
        raise DoctorSunError(
            f"vision tower {tower} is not available (no local dir, not in the HF cache)"
            + (
                "; the checkpoint holds no tower weights, so pass --vision-tower DIR"
                if need_weights
                else "; pass --vision-tower DIR"
            )
        ) from None
    config = getattr(config, "vision_config", config)
    if not config.model_type.startswith(("clip", "siglip")):
        raise DoctorSunError(f"vision tower {tower} is a {config.model_type!r}; supported: CLIP, SigLIP")
    return config, tower

def load_tokenizer(path: str | Path, trust: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise DoctorSunError(f"cannot load the tokenizer from {path}: {exc}") from None


def image_processor(src: Path, tower: str | Path | None, vision_config, aspect: str):
    """LLaVA's preprocessing: the tower's CLIP processor (resize the short side, centre crop), after
    padding to a square with the mean colour when the checkpoint was trained with ``pad``."""
    from transformers import AutoImageProcessor, CLIPImageProcessor, LlavaImageProcessor
    from transformers.utils import logging as hf_logging

    base = None
    for where in (src, tower):
        if where is not None and (Path(str(where)) / "preprocessor_config.json").is_file():
            base = AutoImageProcessor.from_pretrained(where)
            break
    if base is None:
        size = vision_config.image_size
        base = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    if aspect != "pad":
        return base
    keep = (
        "size",
        "crop_size",
        "do_center_crop",
        "image_mean",
        "image_std",
        "resample",
        "do_resize",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "do_convert_rgb",
    )
    settings = {k: getattr(base, k) for k in keep if getattr(base, k, None) is not None}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the PIL fallback without torchvision is fine: no warning
    try:
        return LlavaImageProcessor(do_pad=True, **settings)
    finally:
        hf_logging.set_verbosity(verbosity)
