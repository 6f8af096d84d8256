"""``doctorsun build``: assemble a model from parts and save it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from doctorsun.errors import DoctorSunError
from doctorsun.model.config import BuildConfig, ProjectorConfig, VisionConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML with a BuildConfig (the flags below override it)")
    p.add_argument("--vision", help="HF id or dir of a CLIP/SigLIP model; default: a small ViT from scratch")
    p.add_argument("--llm", help="HF id, dir, .gguf file, or smollm2-135m (default)")
    p.add_argument("--image-size", type=int, help="scratch ViT input size")
    p.add_argument("--patch-size", type=int, help="scratch ViT patch size")
    p.add_argument("--feature-layer", type=int, help="vision layer that feeds the projector (default -2)")
    p.add_argument("--select-strategy", choices=["auto", "default", "full"],
                   help="drop CLS (default) or keep all")
    p.add_argument("--chat-template", choices=["auto", "chatml", "llama3", "vicuna"])
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="output model dir")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    data: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise DoctorSunError(f"config not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        data = data.get("model", data)
    vision = dict(data.pop("vision", {}) or {})
    projector = dict(data.pop("projector", {}) or {})
    for flag, key in (("vision", "name_or_path"), ("image_size", "image_size"), ("patch_size", "patch_size")):
        if getattr(args, flag) is not None:
            vision[key] = getattr(args, flag)
    for flag, key in (("feature_layer", "feature_layer"), ("select_strategy", "select_strategy")):
        if getattr(args, flag) is not None:
            projector[key] = getattr(args, flag)
    for key in ("llm", "chat_template", "dtype", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    try:
        return BuildConfig.from_dict({**data, "vision": VisionConfig(**vision),
                                      "projector": ProjectorConfig(**projector)})
    except TypeError as exc:
        raise DoctorSunError(f"bad model config: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from doctorsun.model.assemble import build_model
    from doctorsun.model.io import save_model

    cfg = config_from_args(args)
    model, processor = build_model(cfg)
    save_model(model, processor, args.out, meta={"stage": "build", "build": cfg.to_dict()})
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"out": str(args.out), "parameters": n, "visual_tokens": model.config.image_seq_length}))
    return 0
