"""``doctorsun train RECIPE --dry-run``: what a stage would train and whether it fits, without weights.

The model is built on the meta device (shapes, no memory) from architecture facts: the config.json
values shipped beside the recipe, or the configs of a local model dir. The per-part trainability is
applied exactly as in training, so the parameter counts are the ones the run will have.

Memory per GPU follows the ZeRO paper's accounting (Rajbhandari et al. 2020,
https://arxiv.org/abs/1910.02054) for mixed-precision AdamW: 2 bytes per weight and per gradient in
16-bit, 12 bytes of optimizer state per trainable weight (fp32 master copy, momentum, variance); in
fp32 training, 4 + 4 + 8. ZeRO-2 shards gradients and optimizer state, ZeRO-3 also the weights, FSDP
(FULL_SHARD) shards fp32 weights, gradients and optimizer state. Activations use the per-layer
estimate of Korthikanti et al. 2022 (https://arxiv.org/abs/2205.05198): about 34 bytes x tokens x
hidden per layer in 16-bit with fused attention, or only the layer inputs (2 bytes x tokens x hidden)
plus one layer when activations are checkpointed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.model.checkpoint import llava_config
from doctorsun.train.config import Recipe, resolve_model_dir
from doctorsun.train.parts import PartCounts, apply_parts, count_parts

GIB = 1024**3


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DoctorSunError(f"architecture facts file not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def meta_model(recipe: Recipe):
    """The recipe's model on the meta device, from shipped facts or a local model dir's config."""
    from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration

    arch = recipe.architecture
    if arch.llm_config and arch.vision_config:
        llm = AutoConfig.for_model(**_read_json(recipe.arch_path(arch.llm_config)))
        vision = vision_config(_read_json(recipe.arch_path(arch.vision_config)))
        proj = recipe.build.projector if recipe.build else None
        # The tokenizer gets one more token, <image>, as build_model adds it.
        config = llava_config(vision, llm, vocab_size=llm.vocab_size + 1, image_token_id=llm.vocab_size,
                              strategy=getattr(proj, "select_strategy", "auto"),
                              feature_layer=getattr(proj, "feature_layer", -2))
    elif recipe.model is not None:
        path = resolve_model_dir(recipe.model)
        if not (path / "config.json").is_file():
            raise DoctorSunError(f"dry run: {path} has no config.json, and the recipe ships no architecture "
                                 f"facts")
        config = LlavaConfig.from_pretrained(path)
    else:
        raise DoctorSunError("dry run needs architecture.llm_config and architecture.vision_config "
                             "(config.json facts shipped with the recipe) or a local model dir")
    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


def vision_config(facts: dict):
    """A CLIP or SigLIP vision config from a config.json (a vision model's, or a whole CLIP/SigLIP's)."""
    from transformers import AutoConfig

    facts = dict(facts)
    model_type = facts.pop("model_type", "clip_vision_model")
    nested = facts.get("vision_config")
    if isinstance(nested, dict):  # a full CLIP/SigLIP config: its vision half
        facts, model_type = dict(nested), f"{model_type.removesuffix('_vision_model')}_vision_model"
        facts.pop("model_type", None)
    if not model_type.endswith("_vision_model"):
        model_type += "_vision_model"
    try:
        return AutoConfig.for_model(model_type, **facts)
    except ValueError as exc:
        raise DoctorSunError(f"architecture facts: unknown vision model type {model_type!r} ({exc})") from None


@dataclass
class Plan:
    """The dry run's numbers."""

    stage: str
    counts: PartCounts
    tokens_per_step: int
    visual_tokens: int
    gpus: int
    gpu_memory_gb: float
    memory_gib: dict[str, dict[str, float]] = field(default_factory=dict)
    """Strategy -> component -> GiB per GPU."""

    def render(self) -> str:
        lines = [f"stage {self.stage}: parameters", self.counts.table(), "",
                 f"tokens per optimizer step (upper bound): {self.tokens_per_step:,} "
                 f"({self.visual_tokens} visual tokens per image)", "",
                 f"memory per GPU on {self.gpus} GPUs (GiB):",
                 f"{'strategy':<8} {'weights':>8} {'grads':>8} {'optim':>8} {'activ.':>8} {'total':>8}  fits "
                 f"{self.gpu_memory_gb:g} GB?"]
        for name, m in self.memory_gib.items():
            fits = "yes" if m["total"] * GIB <= self.gpu_memory_gb * 1e9 else "no"
            lines.append(f"{name:<8} {m['weights']:>8.1f} {m['grads']:>8.1f} {m['optim']:>8.1f} "
                         f"{m['activations']:>8.1f} {m['total']:>8.1f}  {fits}")
        return "\n".join(lines)


def activation_bytes(text_config, tokens: int, checkpointing: bool, half: bool) -> float:
    """Activation memory of the LLM for ``tokens`` tokens on one GPU."""
    h, layers = text_config.hidden_size, text_config.num_hidden_layers
    scale = 1.0 if half else 2.0  # 34 bytes is for 16-bit activations
    per_layer = 34 * tokens * h * scale
    if checkpointing:
        return layers * 2 * tokens * h * scale + per_layer
    return layers * per_layer


def largest_layer(model) -> int:
    """Parameters of the biggest decoder/encoder layer or embedding: what ZeRO-3/FSDP gather at once."""
    sizes = [sum(p.numel() for p in m.parameters()) for name, m in model.named_modules()
             if name.endswith(("layers.0", "embed_tokens", "lm_head"))]
    return max(sizes) if sizes else 0


def dry_run(recipe: Recipe) -> Plan:
    model = meta_model(recipe)
    with torch.device("meta"):
        model = apply_parts(model, recipe.parts)
    counts = count_parts(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    loop = recipe.train
    n, half = loop.plan_gpus, loop.mixed_precision != "no"
    total, trainable = counts.total_trainable + counts.total_frozen, counts.total_trainable
    w = 2 if half else 4
    opt = 12 if half else 8
    micro_tokens = loop.micro_batch * recipe.data.max_length
    act = activation_bytes(config.text_config, micro_tokens, loop.gradient_checkpointing, half)
    gathered = 2 * w * largest_layer(base)
    raw = {
        "ZeRO-2": (w * total, w * trainable / n, opt * trainable / n),
        "ZeRO-3": (w * total / n + gathered, w * trainable / n, opt * trainable / n),
        "FSDP": (4 * total / n + gathered, 4 * trainable / n, 8 * trainable / n),
    }
    memory = {}
    for name, (weights, grads, optim) in raw.items():
        memory[name] = {"weights": weights / GIB, "grads": grads / GIB, "optim": optim / GIB,
                        "activations": act / GIB, "total": (weights + grads + optim + act) / GIB}
    return Plan(stage=recipe.stage, counts=counts, tokens_per_step=loop.global_batch * recipe.data.max_length,
                visual_tokens=config.image_seq_length, gpus=n, gpu_memory_gb=loop.plan_gpu_memory_gb,
                memory_gib=memory)
