"""Per-part trainability: each of vision / projector / llm is frozen, fully trained, or LoRA-adapted.

This is the one mechanism that makes the stages differ: alignment is ``projector: full`` with the rest
frozen, instruction tuning is ``projector: full, llm: full or lora, vision: lora or frozen``, and so on.
LoRA goes through peft (one adapter for all LoRA parts; rank and alpha per part through peft's
``rank_pattern`` / ``alpha_pattern``) and is merged into the weights on save, so every checkpoint is a
plain transformers model.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685): a frozen linear ``W`` (out x in) becomes
``W x + (alpha / r) * B A x`` with ``A`` (r x in) and ``B`` (out x r, zero at start), so the layer
trains ``r * (in + out)`` parameters and starts exactly where the frozen model was.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from torch import nn

from doctorsun.errors import DoctorSunError
from doctorsun.train.config import DEFAULT_LORA_TARGETS, PART_NAMES, PartsConfig

log = logging.getLogger(__name__)

# Parameter-name prefixes of each part inside ``LlavaForConditionalGeneration``.
PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "vision": ("model.vision_tower.",),
    "projector": ("model.multi_modal_projector.",),
    "llm": ("model.language_model.", "lm_head."),
}

# The same parts under the names a saved checkpoint uses (transformers writes LLaVA-HF's layout).
SAVED_PREFIXES: dict[str, tuple[str, ...]] = {
    "vision": ("vision_tower.",),
    "projector": ("multi_modal_projector.",),
    "llm": ("language_model.",),
}


def part_of(name: str) -> str | None:
    """The part a parameter or module name belongs to (in memory, under peft, or in a saved file)."""
    name = _base_name(name)
    for table in (PART_PREFIXES, SAVED_PREFIXES):
        for part, prefixes in table.items():
            if name.startswith(prefixes) or f"{name}." in prefixes:
                return part
    return None


def _base_name(name: str) -> str:
    """Strip peft's wrapping (``base_model.model.``) and LoRA's ``base_layer.`` from a name."""
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


_BLOCK = re.compile(r"\.layers\.(\d+)\.")


def block_of(name: str) -> int | None:
    """The transformer block a parameter or module name lies in (``...layers.12...`` is 12)."""
    found = _BLOCK.search(name)
    return int(found.group(1)) if found else None


def chosen_blocks(model: nn.Module, part: str, layers: int | None) -> list[int] | None:
    """The blocks of ``part`` that ``layers`` selects (the last ``layers``, or the first ``-layers``);
    ``None``: the whole part."""
    if layers is None:
        return None
    blocks = sorted({b for name, _ in model.named_parameters() if part_of(name) == part
                     and (b := block_of(_base_name(name))) is not None})
    if abs(layers) > len(blocks):
        raise DoctorSunError(f"parts.{part}.layers is {layers}, but the {part} has {len(blocks)} "
                             "transformer blocks")
    return blocks[-layers:] if layers > 0 else blocks[:-layers]


def _lora_regex(part: str, targets: list[str], blocks: list[int] | None = None) -> str:
    prefixes = "|".join(re.escape(p) for p in PART_PREFIXES[part])
    names = "|".join(re.escape(t) for t in targets)
    if blocks is None:
        return rf"(?:{prefixes}).*\.(?:{names})"
    within = "|".join(str(b) for b in blocks)
    return rf"(?:{prefixes})(?:.*\.)?layers\.(?:{within})\..*\.(?:{names})"


@dataclass
class PartCounts:
    """Parameters per part once ``apply_parts`` has run."""

    trainable: dict[str, int]
    """Trainable parameters per part (LoRA parts: the adapter weights)."""
    frozen: dict[str, int]
    """Frozen parameters per part."""

    @property
    def total_trainable(self) -> int:
        return sum(self.trainable.values())

    @property
    def total_frozen(self) -> int:
        return sum(self.frozen.values())

    def table(self) -> str:
        lines = [f"{'part':<10} {'trainable':>15} {'frozen':>15}"]
        for part in PART_NAMES:
            lines.append(f"{part:<10} {self.trainable.get(part, 0):>15,} {self.frozen.get(part, 0):>15,}")
        lines.append(f"{'total':<10} {self.total_trainable:>15,} {self.total_frozen:>15,}")
        return "\n".join(lines)


def count_parts(model: nn.Module) -> PartCounts:
    """Count trainable and frozen parameters per part (tied weights once)."""
    trainable = dict.fromkeys(PART_NAMES, 0)
    frozen = dict.fromkeys(PART_NAMES, 0)
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        part = part_of(name)
        if part is None:
            continue
        (trainable if p.requires_grad else frozen)[part] += p.numel()
    return PartCounts(trainable, frozen)


def apply_parts(model: nn.Module, parts: PartsConfig) -> nn.Module:
    """Freeze, unfreeze or LoRA-wrap each part; returns the model to train (a ``PeftModel`` when any
    part is LoRA). Works on the meta device too (the dry run)."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = {name: chosen_blocks(model, name, cfg.layers) for name, cfg in parts.items()}
    lora_parts = [(name, cfg) for name, cfg in parts.items() if cfg.mode == "lora"]
    if lora_parts:
        from peft import LoraConfig, get_peft_model

        first = lora_parts[0][1]
        regexes = {name: _lora_regex(name, cfg.targets or DEFAULT_LORA_TARGETS[name], blocks[name])
                   for name, cfg in lora_parts}
        config = LoraConfig(
            r=first.r,
            lora_alpha=first.alpha,
            lora_dropout=first.dropout,
            target_modules="|".join(f"(?:{rx})" for rx in regexes.values()),
            rank_pattern={regexes[name]: cfg.r for name, cfg in lora_parts},
            alpha_pattern={regexes[name]: cfg.alpha for name, cfg in lora_parts},
        )
        model = get_peft_model(model, config)
    for name, p in model.named_parameters():
        part = part_of(name)
        if part is None or getattr(parts, part).mode != "full":
            continue
        if blocks[part] is None or block_of(_base_name(name)) in blocks[part]:
            p.requires_grad_(True)
    counts = count_parts(model)
    log.info("trainable parameters per part: %s", {k: v for k, v in counts.trainable.items() if v})
    return model


def merge(model: nn.Module) -> nn.Module:
    """Fold LoRA adapters into the weights: the result is the plain transformers model."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
