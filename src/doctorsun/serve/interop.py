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
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.serve.checkpoint import PICKLE_SUFFIXES, WeightFiles
from doctorsun.serve.convert import Plan, write_model

log = logging.getLogger(__name__)

LLAVA_ARCHITECTURES = {"LlavaLlamaForCausalLM": "llama", "LlavaMistralForCausalLM": "mistral"}
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
SELECT_FEATURE = {"patch": "default", "cls_patch": "full"}
SKIPPED_BUFFERS = (".inv_freq", "position_ids")
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
    src = Path(args.src).expanduser()
    if not src.is_dir():
        raise DoctorSunError(f"checkpoint not found: {src}")
    plan = plan_llava(src, args) if args.layout == "llava" else plan_xtuner(src, args)
    out = write_model(plan, Path(args.out), args.chat_template, args.dtype)
    print(json.dumps({"out": str(out), "from": args.layout, "tensors": len(plan.tensors)}))
    return 0


# --- the original LLaVA layout ------------------------------------------------------------------------------


def plan_llava(src: Path, args: argparse.Namespace) -> Plan:
    raw = _read_json(src / "config.json")
    arch, feature, aspect = _check_llava_config(raw, src, args.image_aspect_ratio)
    weights = WeightFiles(src, args.allow_pickle, "LLaVA checkpoint")
    has_tower = any(k.startswith("model.vision_tower.") for k in weights.keys())
    tower = args.vision_tower or raw.get("mm_vision_tower")
    if not tower:
        raise DoctorSunError(f"{src}/config.json names no mm_vision_tower: pass --vision-tower")
    vision_config, tower_dir = _vision_config(tower, need_weights=not has_tower, trust=args.trust_remote_code)
    text_config = _text_config(raw, LLAVA_ARCHITECTURES[arch])
    plan = Plan(
        text_config,
        vision_config,
        _tokenizer(src, args.trust_remote_code),
        _image_processor(src, tower_dir, vision_config, aspect),
        args.vision_feature_layer
        if args.vision_feature_layer is not None
        else int(raw.get("mm_vision_select_layer", -2)),
        SELECT_FEATURE[feature],
        source={"layout": "llava", "path": str(src), "vision_tower": tower, "image_aspect_ratio": aspect},
    )
    for key in weights.keys():
        if key.endswith(SKIPPED_BUFFERS):
            continue
        plan.tensors[_llava_target(key, src)] = _loader(weights, key)
    if not has_tower:
        _add_tower(plan, tower_dir, args.allow_pickle)
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


def _llava_target(key: str, src: Path) -> str:
    if key.startswith("model.mm_projector."):
        index, _, rest = key.removeprefix("model.mm_projector.").partition(".")
        if index not in ("0", "2"):
            raise DoctorSunError(f"{src}: unexpected projector tensor {key} (mlp2x_gelu has layers 0 and 2)")
        return f"model.multi_modal_projector.linear_{1 if index == '0' else 2}.{rest}"
    if key.startswith("model.vision_tower.vision_tower."):
        return "model.vision_tower." + key.removeprefix("model.vision_tower.vision_tower.").removeprefix(
            "vision_model."
        )
    if key.startswith("model."):
        return "model.language_model." + key.removeprefix("model.")
    if key.startswith("lm_head."):
        return key
    raise DoctorSunError(f"{src}: unexpected tensor {key} in a LLaVA checkpoint")


# --- XTuner's LLaVA output ------------------------------------------------------------------------------


def plan_xtuner(src: Path, args: argparse.Namespace) -> Plan:
    projector_dir = src / "projector"
    if not projector_dir.is_dir():
        raise DoctorSunError(f"{src} is not an XTuner LLaVA dir (no projector/)")
    proj_cfg = _read_json(projector_dir / "config.json") if (projector_dir / "config.json").is_file() else {}
    if proj_cfg.get("depth", 2) != 2 or proj_cfg.get("hidden_act", "gelu") != "gelu":
        raise DoctorSunError(f"{projector_dir}: only depth-2 GELU projectors are supported ({proj_cfg})")

    has_llm = (src / "config.json").is_file() and any(
        f.suffix in (".safetensors", *PICKLE_SUFFIXES) for f in src.iterdir() if f.is_file()
    )
    if has_llm:
        llm_dir: str | Path = src
    elif args.llm:
        llm_dir = args.llm
    else:
        raise DoctorSunError(
            f"{src} holds no LLM weights (the LLM was frozen or LoRA-tuned): pass --llm BASE"
        )
    tower = _xtuner_tower(src, args)
    vision_config, tower_dir = _vision_config(tower, need_weights=True, trust=args.trust_remote_code)
    llm_weights = _llm_weights(llm_dir, src / "llm_adapter", args)
    text_config = _auto_config(llm_dir, args.trust_remote_code)
    tokenizer = _tokenizer(
        src if (src / "tokenizer_config.json").is_file() else llm_dir, args.trust_remote_code
    )
    has_cls = vision_config.model_type.startswith("clip")
    plan = Plan(
        text_config,
        vision_config,
        tokenizer,
        _image_processor(src, tower_dir, vision_config, args.image_aspect_ratio or "pad"),
        -2 if args.vision_feature_layer is None else args.vision_feature_layer,
        "default" if has_cls else "full",
        source={"layout": "xtuner", "path": str(src), "llm": str(llm_dir), "vision_tower": str(tower)},
    )
    for key in llm_weights.keys():
        if key.endswith(SKIPPED_BUFFERS):
            continue
        if key.startswith("model."):
            plan.tensors["model.language_model." + key.removeprefix("model.")] = _loader(llm_weights, key)
        elif key.startswith("lm_head."):
            plan.tensors[key] = _loader(llm_weights, key)
        else:
            raise DoctorSunError(f"{llm_dir}: unexpected LLM tensor {key}")
    projector = WeightFiles(projector_dir, args.allow_pickle, "XTuner projector")
    for key in projector.keys():
        index, _, rest = key.removeprefix("projector.").removeprefix("model.").partition(".")
        if index not in ("0", "2"):
            raise DoctorSunError(f"{projector_dir}: unexpected projector tensor {key}")
        plan.tensors[f"model.multi_modal_projector.linear_{1 if index == '0' else 2}.{rest}"] = _loader(
            projector, key
        )
    _add_tower(plan, tower_dir, args.allow_pickle, adapter=src / "visual_encoder_adapter")
    return plan


def _xtuner_tower(src: Path, args: argparse.Namespace) -> str | Path:
    if (src / "visual_encoder").is_dir():
        return src / "visual_encoder"
    if args.vision_tower:
        return args.vision_tower
    adapter = src / "visual_encoder_adapter" / "adapter_config.json"
    base = _read_json(adapter).get("base_model_name_or_path") if adapter.is_file() else None
    if base:
        return base
    raise DoctorSunError(
        f"{src} holds no visual_encoder/: pass --vision-tower (e.g. openai/clip-vit-large-patch14-336)"
    )


def _llm_weights(llm_dir: str | Path, adapter: Path, args: argparse.Namespace):
    """The LLM's tensors: its files as they are, or (with an ``llm_adapter/``) LoRA merged in memory."""
    if not adapter.is_dir():
        path = Path(str(llm_dir))
        if not path.is_dir():
            raise DoctorSunError(f"LLM {llm_dir} must be a local dir (give --llm DIR)")
        return WeightFiles(path, args.allow_pickle, "LLM")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _check_adapter(adapter, args.allow_pickle)
    base = AutoModelForCausalLM.from_pretrained(
        llm_dir, dtype="auto", use_safetensors=not args.allow_pickle, trust_remote_code=args.trust_remote_code
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


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DoctorSunError(f"missing {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DoctorSunError(f"{path} is not valid JSON: {exc}") from None


def _loader(weights, key: str) -> Callable[[], torch.Tensor]:
    return lambda: weights[key]


def _text_config(raw: dict[str, Any], model_type: str):
    from transformers import AutoConfig

    kept = {k: v for k, v in raw.items() if not k.startswith("mm_") and k not in LLAVA_ONLY_KEYS}
    return AutoConfig.for_model(model_type, **kept)


def _auto_config(name: str | Path, trust: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise DoctorSunError(f"cannot load the config of {name}: {exc}") from None


def _vision_config(tower: str | Path, need_weights: bool, trust: bool):
    """``(vision_config, local_dir_or_id | None)`` for a tower named by a dir or HF id."""
    from transformers import CLIPVisionConfig

    try:
        config = _auto_config(tower, trust)
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
    for key in weights.keys():
        if (
            key.startswith("text_model.")
            or key in ("logit_scale", "logit_bias")
            or key.startswith(("text_projection", "visual_projection"))
            or key.endswith(SKIPPED_BUFFERS)
        ):
            continue  # a full CLIP/SigLIP checkpoint: keep the vision half
        plan.tensors["model.vision_tower." + key.removeprefix("vision_model.")] = _loader(weights, key)


def _tokenizer(path: str | Path, trust: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise DoctorSunError(f"cannot load the tokenizer from {path}: {exc}") from None


def _image_processor(src: Path, tower: str | Path | None, vision_config, aspect: str):
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
