"""What a Doctor Sun checkpoint is: a transformers ``LlavaForConditionalGeneration`` whose config, visual
token count and generation config are made here, and only here, for assembly, import and the dry run
alike; plus its provenance file ``doctorsun.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.files import write_json
from doctorsun.model.chat import ChatFormat

META_FILE = "doctorsun.json"
"""Provenance beside the weights: how the model was built, imported, trained or exported."""
STRATEGIES = ("auto", "default", "full")


def has_cls(vision_config) -> bool:
    """CLIP towers put a CLS token before the patches; SigLIP towers have none."""
    return str(vision_config.model_type).startswith("clip")


def select_strategy(vision_config, requested: str = "auto") -> str:
    """LLaVA's ``vision_feature_select_strategy``: ``default`` drops the CLS token, ``full`` keeps every
    token; ``auto`` is default for CLIP and full for SigLIP (which has no CLS to drop)."""
    if requested not in STRATEGIES:
        raise DoctorSunError(f"projector select_strategy must be one of {', '.join(STRATEGIES)}, not "
                             f"{requested!r}")
    if requested == "auto":
        return "default" if has_cls(vision_config) else "full"
    if requested == "default" and not has_cls(vision_config):
        raise DoctorSunError("this vision encoder has no CLS token: use projector select_strategy 'full'")
    return requested


def visual_tokens(vision_config, strategy: str) -> int:
    """Tokens one image becomes: the patch grid, plus the CLS token when ``full`` keeps it."""
    grid = vision_config.image_size // vision_config.patch_size
    return grid * grid + (1 if strategy == "full" and has_cls(vision_config) else 0)


def llava_config(vision_config, text_config, *, vocab_size: int, image_token_id: int, strategy: str = "auto",
                 feature_layer: int = -2):
    """The ``LlavaConfig`` of a Doctor Sun model. ``vocab_size`` is the tokenizer's length with
    ``<image>`` added; the embedding keeps its own rows when it has more (padded vocabularies)."""
    from transformers import LlavaConfig

    strategy = select_strategy(vision_config, strategy)
    n_layers = vision_config.num_hidden_layers
    if not -n_layers - 1 <= feature_layer <= n_layers:
        raise DoctorSunError(f"projector feature_layer {feature_layer} is outside the vision tower "
                             f"({n_layers} layers)")
    text_config.vocab_size = max(int(text_config.vocab_size or 0), vocab_size)
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        image_seq_length=visual_tokens(vision_config, strategy),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=feature_layer,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def generation_config(tokenizer, fmt: ChatFormat, base=None):
    """Greedy by default; stop at the format's end-of-turn token and at EOS. ``base`` (a model's own
    generation config) is updated in place instead of making a new one."""
    from transformers import GenerationConfig

    gen = base if base is not None else GenerationConfig()
    gen.eos_token_id = fmt.stop_ids(tokenizer)
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.do_sample = False
    for key in ("temperature", "top_p", "top_k"):
        setattr(gen, key, None)
    gen.max_new_tokens = 256
    return gen


def write_meta(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write ``doctorsun.json`` (the DoctorSun version first) into ``folder``."""
    from doctorsun import __version__

    return write_json(Path(folder) / META_FILE, {"doctorsun_version": __version__, **record})


def read_meta(folder: str | Path) -> dict[str, Any]:
    """A model folder's ``doctorsun.json`` (empty for checkpoints made elsewhere)."""
    f = Path(folder) / META_FILE
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
