"""Writing a converted checkpoint as a doctorsun model: a transformers-native
``LlavaForConditionalGeneration`` dir, every tensor checked against the model it must load into.

The conversion renames tensors; it computes nothing, so the imported model gives the same logits. LLaVA
marks the image with an index (-200) outside the vocabulary while transformers uses a real ``<image>``
token: when the tokenizer lacks one it is added, and its new embedding and output rows are the mean of
the existing rows, so its logit is the mean logit and greedy decoding never picks it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.serve.checkpoint import write_sharded

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
    from doctorsun import __version__
    from doctorsun.model.assemble import make_processor, prepare_tokenizer
    from doctorsun.model.io import META_FILE, atomic_dir
    from doctorsun.model.templates import detect_template

    tokenizer = plan.tokenizer
    template = detect_template(tokenizer.get_vocab()) if chat_template == "auto" else chat_template
    prepare_tokenizer(tokenizer)  # adds <image> (and a pad token) when missing
    config = llava_config(plan, len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"))
    tensors = checked_tensors(plan, config)
    cast = getattr(torch, dtype) if dtype else None
    first = tensors.get("model.language_model.embed_tokens.weight", next(iter(tensors.values())))
    config.dtype = str(cast or first().dtype).removeprefix("torch.")
    has_cls = plan.vision_config.model_type.startswith("clip")
    processor = make_processor(
        plan.image_processor,
        tokenizer,
        plan.vision_config.patch_size,
        plan.select_strategy,
        has_cls,
        template,
    )
    tokenizer.chat_template = processor.chat_template  # for tools that read only the tokenizer
    meta = {
        "doctorsun_version": __version__,
        "stage": "import",
        "import": {**plan.source, "chat_template": template},
    }
    with atomic_dir(out) as tmp:
        config.save_pretrained(tmp)
        write_sharded(_in_order(tensors, cast), tmp)
        generation_config(tokenizer, template).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log.info(
        "imported %s into %s (%d tensors, template %s)", plan.source.get("path"), out, len(tensors), template
    )
    return out


def llava_config(plan: Plan, vocab_size: int, image_token_id: int):
    """The ``LlavaConfig`` of the converted model (as ``doctorsun build`` makes it)."""
    from transformers import LlavaConfig

    text_config, vision_config = plan.text_config, plan.vision_config
    text_config.vocab_size = max(text_config.vocab_size, vocab_size)
    has_cls = vision_config.model_type.startswith("clip")
    grid = vision_config.image_size // vision_config.patch_size
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        image_seq_length=grid * grid + (1 if plan.select_strategy == "full" and has_cls else 0),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=plan.select_strategy,
        vision_feature_layer=plan.feature_layer,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


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


def generation_config(tokenizer, template: str):
    """Greedy by default; stop at the template's end-of-turn token and at EOS."""
    from transformers import GenerationConfig

    from doctorsun.model.templates import STOP_TOKENS

    stop = STOP_TOKENS[template] or tokenizer.eos_token
    return GenerationConfig(
        eos_token_id=sorted({tokenizer.convert_tokens_to_ids(stop), tokenizer.eos_token_id}),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
        max_new_tokens=256,
    )


def _grow_vocab(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """Append rows equal to the mean row: a new token's logit is then the mean logit, never the argmax."""
    mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)  # (1, H)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)], dim=0)  # (rows, H)
