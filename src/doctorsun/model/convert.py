"""Writing a converted checkpoint as a doctorsun model: a transformers-native
``LlavaForConditionalGeneration`` dir, every tensor checked against the model it must load into.

The conversion renames tensors; it computes nothing, so the imported model gives the same logits. LLaVA
marks the image with an index (-200) outside the vocabulary while transformers uses a real ``<image>``
token: when the tokenizer lacks one it is added, and its new embedding and output rows are the mean of
the existing rows, so its logit is the mean logit and greedy decoding never picks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir
from doctorsun.model.assemble import make_processor, prepare_tokenizer
from doctorsun.model.chat import IMAGE_TOKEN, choose_format
from doctorsun.model.checkpoint import generation_config, llava_config, write_meta
from doctorsun.model.weights import engine_layout, write_sharded

log = logging.getLogger(__name__)

VOCAB_TENSORS = ("model.language_model.embed_tokens.weight", "lm_head.weight")


@dataclass
class Plan:
    """A checkpoint taken apart: configs, tokenizer, image processor and where each tensor comes from."""

    text_config: Any
    """The LLM's transformers config."""
    vision_config: Any
    """The CLIP/SigLIP vision config."""
    tokenizer: Any
    """The LLM's tokenizer (``<image>`` is added on writing when missing)."""
    image_processor: Any
    """Preprocessing that matches how the checkpoint was trained."""
    feature_layer: int
    """Vision layer feeding the projector."""
    select_strategy: str
    """``default`` (drop CLS) or ``full``."""
    tensors: dict[str, Callable[[], torch.Tensor]] = field(default_factory=dict)
    """Target name (as in ``LlavaForConditionalGeneration.state_dict()``) -> loader of the source tensor."""
    source: dict[str, Any] = field(default_factory=dict)
    """Provenance, written to ``doctorsun.json``."""


def write_model(plan: Plan, out: Path, chat_template: str = "auto", dtype: str | None = None) -> Path:
    """Check every tensor against the transformers model it must load into, then write the model dir."""
    tokenizer = plan.tokenizer
    fmt = choose_format(chat_template, tokenizer)
    prepare_tokenizer(tokenizer)  # adds <image> (and a pad token) when missing
    config = llava_config(plan.vision_config, plan.text_config, vocab_size=len(tokenizer),
                          image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                          strategy=plan.select_strategy, feature_layer=plan.feature_layer)
    tensors = checked_tensors(plan, config)
    cast = getattr(torch, dtype) if dtype else None
    first = tensors.get("model.language_model.embed_tokens.weight", next(iter(tensors.values())))
    config.dtype = str(cast or first().dtype).removeprefix("torch.")
    processor = make_processor(plan.image_processor, tokenizer, plan.vision_config, plan.select_strategy, fmt)
    with atomic_dir(out) as tmp:
        config.save_pretrained(tmp)
        write_sharded(_in_order(tensors, cast), tmp)
        generation_config(tokenizer, fmt).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        engine_layout(tmp)
        write_meta(tmp, {"stage": "import", "import": {**plan.source, "chat_template": fmt.name}})
    log.info("imported %s into %s (%d tensors, template %s)", plan.source.get("path"), out, len(tensors),
             fmt.name)
    return out


def checked_tensors(plan: Plan, config) -> dict[str, Callable[[], torch.Tensor]]:
    """The plan's tensors, refusing any name the model lacks and any tensor it needs but is missing."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):  # shapes and names only: no memory
        expected = {k: tuple(v.shape) for k, v in LlavaForConditionalGeneration(config).state_dict().items()}
    tensors = dict(plan.tensors)
    if config.tie_word_embeddings:  # the output layer is the input embedding
        tensors.pop("lm_head.weight", None)
        expected.pop("lm_head.weight", None)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise DoctorSunError(
            f"checkpoint does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            f" ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for name, shape in expected.items():
        tensors[name] = _with_shape(tensors[name], name, shape)
    return tensors


def _with_shape(load: Callable[[], torch.Tensor], name: str, shape: tuple[int, ...]):
    def checked() -> torch.Tensor:
        t = load()
        if name in VOCAB_TENSORS and t.shape[0] < shape[0]:
            t = _grow_vocab(t, shape[0])
        if tuple(t.shape) != shape:
            raise DoctorSunError(f"tensor {name} has shape {tuple(t.shape)}, the config says {shape}")
        return t

    return checked


def _in_order(tensors, cast) -> Iterator[tuple[str, torch.Tensor]]:
    for name in sorted(tensors):
        t = tensors[name]()
        yield name, t.to(cast) if cast is not None else t


def _grow_vocab(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Append rows equal to the mean row: a new token's logit is then the mean logit, never the argmax."""
    mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)  # (1, H)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)], dim=0)  # (rows, H)
