"""``doctorsun import``: a checkpoint in the original LLaVA layout (as Doctor Sun's weights are released)
or XTuner's LLaVA output -> a doctorsun (transformers-native ``LlavaForConditionalGeneration``) model.

The tensors are renamed, not changed (``convert.write_model`` explains the one added token), so the
imported model gives the same logits.

Layouts (https://github.com/haotian-liu/LLaVA ``llava/model``; XTuner ``xtuner/model/llava.py``):
- LLaVA: ``config.json`` (``LlavaLlamaForCausalLM``, ``mm_vision_tower``, ``mm_projector_type``,
  ``mm_vision_select_layer``, ``mm_vision_select_feature``, ``image_aspect_ratio``), tensors
  ``model.embed_tokens|layers|norm``, ``lm_head``, ``model.mm_projector.{0,2}``,
  ``model.vision_tower.vision_tower.vision_model.*`` (absent when the tower stayed frozen).
- XTuner: the LLM at the top (when trained; else ``--llm``) or ``llm_adapter/`` (LoRA), ``projector/``
  (``model.{0,2}``), ``visual_encoder/`` (when trained) or ``visual_encoder_adapter/`` (LoRA) over
  ``--vision-tower``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.model.convert import Plan, write_model
from doctorsun.model.foreign import (
    auto_config,
    image_processor,
    llava_text_config,
    load_tokenizer,
    read_json,
    tower_config,
)
from doctorsun.model.layouts import CAUSAL_LM, LLAVA, VISION_TOWER, XTUNER_PROJECTOR, KeyMap
from doctorsun.model.weights import PICKLE_SUFFIXES, WeightFiles

log = logging.getLogger(__name__)

LLAVA_ARCHITECTURES = {"LlavaLlamaForCausalLM": "llama", "LlavaMistralForCausalLM": "mistral"}
SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}


@dataclass
class ImportOptions:
    """How to read a foreign checkpoint (the ``doctorsun import`` flags)."""

    vision_tower: str | None = None
    """CLIP/SigLIP dir or HF id (default: config.json's ``mm_vision_tower``; XTuner: ``SRC/visual_encoder``)."""
    llm: str | None = None
    """XTuner: the base LLM (dir or HF id) when the checkpoint holds no LLM weights."""
    vision_feature_layer: int | None = None
    """ViT layer feeding the projector (LLaVA: from config.json; XTuner: -2)."""
    image_aspect_ratio: str | None = None
    """``pad`` (pad to a square with the mean colour first) or ``resize``; default: as the source trained."""
    allow_pickle: bool = False
    """Also read ``.bin``/``.pt``/``.pth`` weights, with ``torch.load(weights_only=True)``."""
    trust_remote_code: bool = False
    """Let transformers run code shipped with the tokenizer/config."""

    def __post_init__(self) -> None:
        if self.image_aspect_ratio not in (None, "pad", "resize"):
            raise DoctorSunError(f"image_aspect_ratio must be pad or resize, not {self.image_aspect_ratio!r}")


def import_checkpoint(layout: str, src: str | Path, out: str | Path, options: ImportOptions | None = None,
                      chat_template: str = "auto", dtype: str | None = None) -> tuple[Path, int]:
    """Convert ``src`` (``llava`` or ``xtuner`` layout) into a Doctor Sun model dir; returns
    ``(out, number of tensors)``."""
    options = options or ImportOptions()
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DoctorSunError(f"checkpoint not found: {src}")
    planners = {"llava": plan_llava, "xtuner": plan_xtuner}
    if layout not in planners:
        raise DoctorSunError(f"unknown checkpoint layout {layout!r}; choose one of {sorted(planners)}")
    plan = planners[layout](src, options)
    return write_model(plan, Path(out), chat_template, dtype), len(plan.tensors)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="layout",
        required=True,
        choices=["llava", "xtuner"],
        help="llava: the original LLaVA layout (Doctor Sun's release); xtuner: XTuner's LLaVA output",
    )
    p.add_argument("src", help="checkpoint dir")
    p.add_argument("--out", required=True, help="output model dir")
    p.add_argument(
        "--vision-tower",
        help="CLIP/SigLIP dir or HF id (default: config.json's mm_vision_tower; XTuner: SRC/visual_encoder)",
    )
    p.add_argument("--llm", help="XTuner: the base LLM (dir or HF id) when SRC holds no LLM weights")
    p.add_argument(
        "--vision-feature-layer",
        type=int,
        default=None,
        help="ViT layer feeding the projector (XTuner default -2; LLaVA: from config.json)",
    )
    p.add_argument(
        "--image-aspect-ratio",
        choices=["pad", "resize"],
        default=None,
        help="pad: pad to a square with the mean colour first, as LLaVA-1.5 and XTuner train "
        "(default: from config.json, XTuner: pad)",
    )
    p.add_argument("--chat-template", choices=["auto", "chatml", "llama3", "vicuna"], default="auto")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="cast weights (default: as stored)"
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read .bin/.pt/.pth weights, with torch.load(weights_only=True)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run code shipped with the tokenizer/config (off by default)",
    )


def run(args: argparse.Namespace) -> int:
    options = ImportOptions(
        vision_tower=args.vision_tower,
        llm=args.llm,
        vision_feature_layer=args.vision_feature_layer,
        image_aspect_ratio=args.image_aspect_ratio,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
    )
    out, n = import_checkpoint(args.layout, args.src, args.out, options, args.chat_template, args.dtype)
    print(json.dumps({"out": str(out), "from": args.layout, "tensors": n}))
    return 0


# --- the original LLaVA layout ------------------------------------------------------------------------------


def plan_llava(src: Path, opts: ImportOptions) -> Plan:
    raw = read_json(src / "config.json")
    arch, feature, aspect = _check_llava_config(raw, src, opts.image_aspect_ratio)
    weights = WeightFiles(src, opts.allow_pickle, "LLaVA checkpoint")
    has_tower = any(k.startswith("model.vision_tower.") for k in weights.keys())
    tower = opts.vision_tower or raw.get("mm_vision_tower")
    if not tower:
        raise DoctorSunError(f"{src}/config.json names no mm_vision_tower: pass --vision-tower")
    vision_config, tower_dir = tower_config(tower, need_weights=not has_tower, trust=opts.trust_remote_code)
    text_config = llava_text_config(raw, LLAVA_ARCHITECTURES[arch])
    plan = Plan(
        text_config,
        vision_config,
        load_tokenizer(src, opts.trust_remote_code),
        image_processor(src, tower_dir, vision_config, aspect),
        opts.vision_feature_layer
        if opts.vision_feature_layer is not None
        else int(raw.get("mm_vision_select_layer", -2)),
        SELECT_FEATURE[feature],
        source={"layout": "llava", "path": str(src), "vision_tower": tower, "image_aspect_ratio": aspect},
    )
    _add(plan, weights, LLAVA, src)
    if not has_tower:
        _add_tower(plan, tower_dir, opts.allow_pickle)
    return plan


def _check_llava_config(raw: dict[str, Any], src: Path, aspect: str | None) -> tuple[str, str, str]:
    """``(architecture, select feature, image aspect ratio)``; refuses what the conversion cannot keep."""
    arch = next((a for a in raw.get("architectures") or [] if a in LLAVA_ARCHITECTURES), None)
    if arch is None:
        raise DoctorSunError(
            f"{src}/config.json is not a LLaVA checkpoint (architectures "
            f"{raw.get('architectures')}; expected one of {sorted(LLAVA_ARCHITECTURES)})"
        )
    if raw.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise DoctorSunError(
            f"{src}: mm_projector_type {raw.get('mm_projector_type', 'linear')!r} is not supported "
            "(only mlp2x_gelu)"
        )
    if raw.get("mm_use_im_start_end"):
        raise DoctorSunError(f"{src}: mm_use_im_start_end checkpoints are not supported")
    if raw.get("mm_patch_merge_type", "flat") != "flat":
        raise DoctorSunError(
            f"{src}: mm_patch_merge_type {raw['mm_patch_merge_type']!r} is not supported (flat)"
        )
    feature = raw.get("mm_vision_select_feature", "patch")
    if feature not in SELECT_FEATURE:
        raise DoctorSunError(
            f"{src}: mm_vision_select_feature {feature!r} is not supported ({sorted(SELECT_FEATURE)})"
        )
    stored = raw.get("image_aspect_ratio")
    if stored not in (None, "pad", "square", "resize") and aspect is None:
        raise DoctorSunError(
            f"{src}: image_aspect_ratio {stored!r} is not supported (pad; or choose --image-aspect-ratio)"
        )
    return arch, feature, aspect or ("pad" if stored == "pad" else "resize")


# --- XTuner's LLaVA output ------------------------------------------------------------------------------


def plan_xtuner(src: Path, opts: ImportOptions) -> Plan:
    projector_dir = src / "projector"
    if not projector_dir.is_dir():
        raise DoctorSunError(f"{src} is not an XTuner LLaVA dir (no projector/)")
    proj_cfg = read_json(projector_dir / "config.json") if (projector_dir / "config.json").is_file() else {}
    if proj_cfg.get("depth", 2) != 2 or proj_cfg.get("hidden_act", "gelu") != "gelu":
        raise DoctorSunError(f"{projector_dir}: only depth-2 GELU projectors are supported ({proj_cfg})")

    has_llm = (src / "config.json").is_file() and any(
        f.suffix in (".safetensors", *PICKLE_SUFFIXES) for f in src.iterdir() if f.is_file()
    )
    if has_llm:
        llm_dir: str | Path = src
    elif opts.llm:
        llm_dir = opts.llm
    else:
        raise DoctorSunError(
            f"{src} holds no LLM weights (the LLM was frozen or LoRA-tuned): pass --llm BASE"
        )
    tower = _xtuner_tower(src, opts)
    vision_config, tower_dir = tower_config(tower, need_weights=True, trust=opts.trust_remote_code)
    llm_weights = _llm_weights(llm_dir, src / "llm_adapter", opts)
    text_config = auto_config(llm_dir, opts.trust_remote_code)
    tokenizer = load_tokenizer(
        src if (src / "tokenizer_config.json").is_file() else llm_dir, opts.trust_remote_code
    )
    has_cls = vision_config.model_type.startswith("clip")
    plan = Plan(
        text_config,
        vision_config,
        tokenizer,
        image_processor(src, tower_dir, vision_config, opts.image_aspect_ratio or "pad"),
        -2 if opts.vision_feature_layer is None else opts.vision_feature_layer,
        "default" if has_cls else "full",
        source={"layout": "xtuner", "path": str(src), "llm": str(llm_dir), "vision_tower": str(tower)},
    )
    _add(plan, llm_weights, CAUSAL_LM, llm_dir)
    _add(plan, WeightFiles(projector_dir, opts.allow_pickle, "XTuner projector"), XTUNER_PROJECTOR,
         projector_dir)
    _add_tower(plan, tower_dir, opts.allow_pickle, adapter=src / "visual_encoder_adapter")
    return plan


def _xtuner_tower(src: Path, opts: ImportOptions) -> str | Path:
    if (src / "visual_encoder").is_dir():
        return src / "visual_encoder"
    if opts.vision_tower:
        return opts.vision_tower
    adapter = src / "visual_encoder_adapter" / "adapter_config.json"
    base = read_json(adapter).get("base_model_name_or_path") if adapter.is_file() else None
    if base:
        return base
    raise DoctorSunError(
        f"{src} holds no visual_encoder/: pass --vision-tower (e.g. openai/clip-vit-large-patch14-336)"
    )


def _llm_weights(llm_dir: str | Path, adapter: Path, opts: ImportOptions):
    """The LLM's tensors: its files as they are, or (with an ``llm_adapter/``) LoRA merged in memory."""
    if not adapter.is_dir():
        path = Path(str(llm_dir))
        if not path.is_dir():
            raise DoctorSunError(f"LLM {llm_dir} must be a local dir (give --llm DIR)")
        return WeightFiles(path, opts.allow_pickle, "LLM")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _check_adapter(adapter, opts.allow_pickle)
    base = AutoModelForCausalLM.from_pretrained(
        llm_dir, dtype="auto", use_safetensors=not opts.allow_pickle, trust_remote_code=opts.trust_remote_code
    )
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    return merged.state_dict()


def _check_adapter(adapter: Path, allow_pickle: bool) -> None:
    if not (adapter / "adapter_model.safetensors").is_file():
        if not allow_pickle or not any(adapter.glob("adapter_model.bin")):
            raise DoctorSunError(
                f"adapter {adapter} has no adapter_model.safetensors"
                + ("" if allow_pickle else " (pickle .bin adapters need --allow-pickle)")
            )


# --- shared pieces --------------------------------------------------------------------------------------


def _loader(weights, key: str) -> Callable[[], torch.Tensor]:
    return lambda: weights[key]


def _add(plan: Plan, weights, keymap: KeyMap, where) -> None:
    """Add ``weights``' tensors to the plan under the names ``keymap`` gives them."""
    try:
        renamed = keymap.rename(weights.keys())
    except DoctorSunError as exc:
        raise DoctorSunError(f"{where}: {exc}") from None
    for new, old in renamed.items():
        plan.tensors[new] = _loader(weights, old)


def _add_tower(plan: Plan, tower: str | Path | None, allow_pickle: bool, adapter: Path | None = None) -> None:
    """Add the vision tower's tensors from its own checkpoint (merging a LoRA adapter when there is one)."""
    if tower is None:
        raise DoctorSunError("the checkpoint holds no vision tower weights: pass --vision-tower DIR")
    from transformers import CLIPVisionModel, SiglipVisionModel

    cls = CLIPVisionModel if plan.vision_config.model_type.startswith("clip") else SiglipVisionModel
    if adapter is not None and adapter.is_dir():
        from peft import PeftModel

        _check_adapter(adapter, allow_pickle)
        base = cls.from_pretrained(tower, dtype="auto", use_safetensors=not allow_pickle)
        weights: Any = PeftModel.from_pretrained(base, adapter).merge_and_unload().state_dict()
    elif Path(str(tower)).is_dir():
        weights = WeightFiles(Path(str(tower)), allow_pickle, "vision tower")
    else:  # an HF id in the local cache
        weights = cls.from_pretrained(tower, dtype="auto", use_safetensors=True).state_dict()
    _add(plan, weights, VISION_TOWER, tower)  # a full CLIP/SigLIP checkpoint: its vision half


