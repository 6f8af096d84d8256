"""``doctorsun export``: a self-contained transformers checkpoint for the rest of the ecosystem.

LoRA merged (a peft adapter dir over a base model is merged via peft), safetensors only, processor with the
chat template inside (also on the tokenizer, for tools that read only the tokenizer), generation config,
and a model card. ``--engine vllm`` then serves the export through vLLM's own OpenAI server (`make vllm`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from doctorsun import __version__
from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir
from doctorsun.model.chat import format_of
from doctorsun.model.checkpoint import read_meta, write_meta
from doctorsun.model.io import load_model
from doctorsun.model.weights import engine_layout

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir, or a peft LoRA adapter dir over one")
    p.add_argument("--out", required=True, help="output dir")
    p.add_argument(
        "--base",
        help="base model dir of an adapter (default: its adapter_config.json's base_model_name_or_path)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="cast the weights (bfloat16 for GPU serving; default: as stored)",
    )
    p.add_argument("--name", help="model name in the card and for vLLM (default: the output dir's name)")
    p.add_argument("--max-shard-size", default="4GB", help="largest safetensors file")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept an adapter_model.bin (torch.load with weights_only=True)",
    )
    p.add_argument(
        "--engine",
        choices=["transformers", "vllm"],
        default="transformers",
        help="vllm: serve the export through vLLM afterwards (needs the vLLM environment: `make vllm`)",
    )
    p.add_argument("--host", default="127.0.0.1", help="vLLM: address to listen on")
    p.add_argument("--port", type=int, default=8000, help="vLLM: port")
    p.add_argument("--api-key", help="vLLM: require this Bearer key")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="vLLM: allow code shipped with a model (off by default; doctorsun needs none)",
    )


def run(args: argparse.Namespace) -> int:
    vllm = _vllm_command(args) if args.engine == "vllm" else None  # fail before the (long) export
    out = export(
        args.model,
        args.out,
        base=args.base,
        dtype=args.dtype,
        name=args.name,
        max_shard_size=args.max_shard_size,
        allow_pickle=args.allow_pickle,
    )
    problems = engine_problems(out, "vllm" if vllm is not None else "any")
    print(json.dumps({"out": str(out), "engine": args.engine, "engine_problems": problems}))
    for problem in problems:
        log.warning("a serving engine would miss: %s", problem)
    if vllm is None:
        return 0
    if problems:
        raise DoctorSunError(f"{out} is not ready for vLLM: " + "; ".join(problems))
    command = vllm
    log.info("serving %s through vLLM: %s", out, " ".join(c if c != args.api_key else "***" for c in command))
    os.execv(command[0], command)  # vLLM takes this process's place: signals reach it and its workers
    return 0


ENGINE_CONFIG_KEYS = ("image_token_index", "vision_feature_layer", "vision_feature_select_strategy",
                      "projector_hidden_act", "multimodal_projector_bias", "image_seq_length")
"""config.json keys vLLM's and SGLang's LLaVA loaders read."""
SGLANG_CONFIG_KEYS = ("image_aspect_ratio",)
"""config.json keys SGLang reads besides (how it prepares images; ``weights.engine_config`` writes it)."""


def engine_problems(folder: str | Path, engine: str = "any") -> list[str]:
    """What vLLM or SGLang (``engine``: ``vllm``, ``sglang`` or ``any``) would miss in a saved model folder:
    config keys, the vision tower's weight names (``weights.engine_key``), the processor files and the chat
    template. Empty when nothing is missing."""
    from safetensors import safe_open

    from doctorsun.model.weights import ENGINE_TOWERS, aspect_ratio, engine_key, saved_image_processor

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    problems = [f"config.json has no {k}" for k in ENGINE_CONFIG_KEYS if k not in config]
    if engine != "vllm":
        problems += [f"config.json has no {k} (SGLang reads it)" for k in SGLANG_CONFIG_KEYS if k not in config]
        pre = saved_image_processor(folder)
        if "image_aspect_ratio" in config and pre is not None:
            want = aspect_ratio(pre)
            if config["image_aspect_ratio"] != want:
                problems.append(f"config.json says image_aspect_ratio {config['image_aspect_ratio']!r} but the "
                                f"image processor implements {want!r} (SGLang would prepare images otherwise)")
    if (config.get("vision_config") or {}).get("model_type") in ENGINE_TOWERS:
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                old = [k for k in f.keys() if engine_key(k) != k]
            if old:
                problems.append(f"{path.name}: {len(old)} vision tower weight(s) not under vision_tower.vision_model "
                                f"(e.g. {old[0]}); vLLM's LLaVA loader refuses them")
    if not any((folder / n).is_file() for n in ("preprocessor_config.json", "processor_config.json")):
        problems.append("no preprocessor_config.json (the image processor)")
    if not (folder / "tokenizer_config.json").is_file():
        problems.append("no tokenizer_config.json")
    template = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file() or \
        "chat_template" in json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")
                                      if (folder / "tokenizer_config.json").is_file() else "{}")
    if not template:
        problems.append("no chat template (chat_template.jinja, or chat_template in tokenizer_config.json)")
    return problems


def export(
    model_dir: str | Path,
    out: str | Path,
    base: str | None = None,
    dtype: str | None = None,
    name: str | None = None,
    max_shard_size: str = "4GB",
    allow_pickle: bool = False,
) -> Path:
    """Write ``model_dir`` (merged with its LoRA when it is an adapter) to ``out``; returns ``out``."""
    import torch

    out = Path(out)
    model, processor, meta = load_merged(Path(model_dir), base, allow_pickle)
    if dtype:
        model = model.to(getattr(torch, dtype))
    processor.tokenizer.chat_template = processor.chat_template
    name = name or out.resolve().name
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        processor.save_pretrained(tmp)
        engine_layout(tmp)
        write_meta(tmp, {**meta, "export": {"source": str(model_dir),
                                            "dtype": str(model.dtype).removeprefix("torch.")}})
        (tmp / "README.md").write_text(model_card(model, processor, name, read_meta(tmp)))
        stray = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
        if stray:
            raise DoctorSunError(f"export would contain pickle files {stray}; refusing")
    log.info("exported %s to %s", model_dir, out)
    return out


def load_merged(model_dir: Path, base: str | None, allow_pickle: bool):
    """``(model, processor, provenance)``; an adapter dir is merged into its base through peft."""
    adapter_config = model_dir / "adapter_config.json"
    if not adapter_config.is_file():
        model, processor = load_model(model_dir)
        return model, processor, read_meta(model_dir)
    from peft import PeftModel

    config = json.loads(adapter_config.read_text())
    base = base or config.get("base_model_name_or_path")
    if not base:
        raise DoctorSunError(f"adapter {model_dir} names no base model: pass --base DIR")
    if not (model_dir / "adapter_model.safetensors").is_file():
        if not (allow_pickle and (model_dir / "adapter_model.bin").is_file()):
            raise DoctorSunError(
                f"adapter {model_dir} has no adapter_model.safetensors"
                + ("" if allow_pickle else " (a pickle .bin adapter needs --allow-pickle)")
            )
    model, processor = load_model(base)
    try:
        model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise DoctorSunError(f"cannot apply adapter {model_dir} to {base}: {exc}") from None
    if (model_dir / "processor_config.json").is_file() or (model_dir / "tokenizer_config.json").is_file():
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(model_dir)
        processor.tokenizer.padding_side = "left"
    meta = read_meta(base)
    meta["merged_adapter"] = {
        "path": str(model_dir),
        "peft_type": config.get("peft_type"),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
    }
    return model, processor, meta


def _vllm_command(args: argparse.Namespace) -> list[str]:
    """vLLM's server command for the export (``vllm_engine.server_command``); raises when there is no vLLM."""
    from doctorsun.model.vllm_engine import server_command

    return server_command(Path(args.out), host=args.host, port=args.port,
                          name=args.name or Path(args.out).resolve().name, dtype=args.dtype,
                          api_key=args.api_key, trust_remote_code=args.trust_remote_code)


def model_card(model, processor, name: str, meta: dict[str, Any]) -> str:
    """README.md: what the model is, how to load and serve it, and that it is not medical advice."""
    cfg = model.config
    vision, text = cfg.vision_config, cfg.text_config
    params = sum(p.numel() for p in model.parameters())
    template = format_of(processor).name
    source = meta.get("import", {}).get("path") or meta.get("build", {}).get("llm") or "a DoctorSun model"
    return CARD.format(
        name=name,
        version=__version__,
        params=params / 1e6,
        vision=vision.model_type,
        image_size=vision.image_size,
        patch=vision.patch_size,
        visual_tokens=cfg.image_seq_length,
        llm=text.model_type,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        template=template,
        stage=meta.get("stage", "unknown"),
        source=source,
        dtype=str(model.dtype).removeprefix("torch."),
        adapter=" (LoRA merged)" if "merged_adapter" in meta else "",
    )


CARD = """---
library_name: transformers
pipeline_tag: image-text-to-text
language: [en, zh]
tags: [medical, multimodal, llava, doctorsun]
---

# {name}

A bilingual (Chinese/English) medical multimodal model exported by DoctorSun {version}{adapter}:
a {vision} vision encoder ({image_size} px, patch {patch}, {visual_tokens} visual tokens per image), a
2-layer GELU projector and a {llm} language model ({layers} layers, width {hidden}); {params:.1f}M
parameters in {dtype}, stored as a transformers `LlavaForConditionalGeneration` (safetensors). Chat
template: `{template}` (inside the processor and the tokenizer). Stage: {stage}; from {source}.

> **Not medical advice.** This model's outputs are generated text for research. They can be wrong and
> must not be used to diagnose, treat or make any clinical decision.

## Use with transformers

```python
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

model = AutoModelForImageTextToText.from_pretrained("{name}")
processor = AutoProcessor.from_pretrained("{name}")
question = {{"type": "text", "text": "What modality is this?"}}
messages = [{{"role": "user", "content": [{{"type": "image"}}, question]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[Image.open("scan.png").convert("RGB")], text=prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=128, do_sample=False)  # greedy, as evaluated
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

DICOM and NIfTI files: read them with `doctorsun.data.image.load_image` (windowed as in training).

## Serve with vLLM (GPU)

```bash
vllm serve {name} --served-model-name {name}
# or: doctorsun export --model <dir> --out {name} --engine vllm
```

Then any OpenAI client: `POST /v1/chat/completions` with `image_url` parts (data: URLs).

## Serve with DoctorSun (CPU or GPU)

```bash
doctorsun serve --model {name} --ui   # OpenAI-compatible API, web UI at /ui, DICOM data URLs accepted
```
"""
