"""Assemble a Doctor Sun model: vision tower + ``mlp2x_gelu`` projector + LLM, as a transformers
``LlavaForConditionalGeneration`` with a ``LlavaProcessor`` whose chat template places ``<image>``."""

from __future__ import annotations

import logging

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.model.config import BuildConfig
from doctorsun.model.llm import load_llm
from doctorsun.model.templates import STOP_TOKENS, detect_template, get_template
from doctorsun.model.vision import load_vision

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_processor(image_processor, tokenizer, patch_size: int, strategy: str, has_cls: bool, template: str):
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=get_template(template),
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1 if has_cls else 0,
    )


def prepare_tokenizer(tokenizer) -> None:
    """Add ``<image>`` (one token) and make sure there is a pad token; batched generation pads left."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def build_model(cfg: BuildConfig):
    """Return ``(model, processor)`` for a build config; the LLM and vision weights are the real ones."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    dtype = DTYPES[cfg.dtype]
    torch.manual_seed(cfg.seed)
    llm, tokenizer = load_llm(cfg.llm, dtype=dtype)
    vision, image_processor, has_cls = load_vision(cfg.vision, dtype=dtype)

    strategy = cfg.projector.select_strategy
    if strategy == "auto":
        strategy = "default" if has_cls else "full"
    if strategy == "default" and not has_cls:
        raise DoctorSunError("this vision encoder has no CLS token: use projector select_strategy 'full'")
    template = detect_template(tokenizer.get_vocab()) if cfg.chat_template == "auto" else cfg.chat_template

    prepare_tokenizer(tokenizer)
    vcfg = vision.config
    grid = vcfg.image_size // vcfg.patch_size
    n_layers = vcfg.num_hidden_layers
    if not -n_layers - 1 <= cfg.projector.feature_layer <= n_layers:
        raise DoctorSunError(f"projector feature_layer {cfg.projector.feature_layer} is outside the vision tower")

    text_config = llm.config
    text_config.vocab_size = len(tokenizer)
    config = LlavaConfig(
        vision_config=vcfg,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=grid * grid + (1 if strategy == "full" and has_cls else 0),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=cfg.projector.feature_layer,
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
    )
    # Build the shell on the meta device, then move the real parts in: no second copy of the LLM.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.language_model.embed_tokens.weight
    model.config.vocab_size = len(tokenizer)

    stop = STOP_TOKENS[template] or tokenizer.eos_token
    stop_ids = sorted({tokenizer.convert_tokens_to_ids(stop), tokenizer.eos_token_id})
    gen = model.generation_config
    gen.eos_token_id = stop_ids
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.do_sample = False
    for key in ("temperature", "top_p", "top_k"):
        setattr(gen, key, None)
    gen.max_new_tokens = 256

    processor = make_processor(image_processor, tokenizer, vcfg.patch_size, strategy, has_cls, template)
    model.eval()
    log.info("built %s + %s, %d visual tokens, template %s", cfg.llm, cfg.vision.name_or_path or "scratch ViT",
             config.image_seq_length, template)
    return model, processor
