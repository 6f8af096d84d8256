"""Assemble a Doctor Sun model: vision tower + ``mlp2x_gelu`` projector + LLM, as a transformers
``LlavaForConditionalGeneration`` with a ``LlavaProcessor`` whose chat template places ``<image>``."""

from __future__ import annotations

import logging

import torch

from doctorsun.model.chat import IMAGE_TOKEN, ChatFormat, choose_format
from doctorsun.model.checkpoint import generation_config, has_cls, llava_config
from doctorsun.model.config import BuildConfig
from doctorsun.model.llm import load_llm
from doctorsun.model.vision import load_vision

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_processor(image_processor, tokenizer, vision_config, strategy: str, fmt: ChatFormat):
    """The ``LlavaProcessor``: image preprocessing, the tokenizer and the chat template (also set on the
    tokenizer, for tools that read only the tokenizer)."""
    from transformers import LlavaProcessor

    tokenizer.chat_template = fmt.template
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=fmt.template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1 if has_cls(vision_config) else 0,
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
    from transformers import LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    dtype = DTYPES[cfg.dtype]
    torch.manual_seed(cfg.seed)
    llm, tokenizer = load_llm(cfg.llm, dtype=dtype)
    vision, image_processor = load_vision(cfg.vision, dtype=dtype)
    fmt = choose_format(cfg.chat_template, tokenizer)
    prepare_tokenizer(tokenizer)
    config = llava_config(vision.config, llm.config, vocab_size=len(tokenizer),
                          image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                          strategy=cfg.projector.select_strategy, feature_layer=cfg.projector.feature_layer)
    # Build the shell on the meta device, then move the real parts in: no second copy of the LLM.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = llm.model
    model.lm_head = llm.lm_head
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    model.resize_token_embeddings(config.text_config.vocab_size, mean_resizing=False)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.language_model.embed_tokens.weight
    model.config.vocab_size = config.text_config.vocab_size
    generation_config(tokenizer, fmt, base=model.generation_config)

    processor = make_processor(image_processor, tokenizer, vision.config,
                               config.vision_feature_select_strategy, fmt)
    model.eval()
    log.info("built %s + %s, %d visual tokens, template %s", cfg.llm,
             cfg.vision.name_or_path or "scratch ViT",
             config.image_seq_length, fmt.name)
    return model, processor
