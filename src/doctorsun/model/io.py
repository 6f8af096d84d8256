"""Saving and loading Doctor Sun checkpoints: transformers-native dirs (safetensors + processor with the
chat template inside), written atomically, loaded from safetensors only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir
from doctorsun.model.checkpoint import write_meta
from doctorsun.model.weights import engine_layout


def save_model(model, processor, out: str | Path, meta: dict[str, Any] | None = None, **save_kwargs) -> Path:
    """Write model (safetensors), processor and a ``doctorsun.json`` of provenance to ``out``, atomically;
    ``save_kwargs`` go to ``save_pretrained`` (e.g. ``max_shard_size``). The vision tower's weights are
    named as vLLM and SGLang load them (``weights.engine_layout``)."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, **save_kwargs)
        processor.save_pretrained(tmp)
        engine_layout(tmp)
        write_meta(tmp, meta or {})
    return Path(out)


def check_model_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DoctorSunError(f"model not found: {path}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise DoctorSunError(f"not a model dir (no config.json): {path}")
    if not any(path.glob("*.safetensors")):
        raise DoctorSunError(f"model dir {path} has no .safetensors weights (other formats are not loaded)")
    return path


def load_model(path: str | Path, dtype: torch.dtype | str = torch.float32, device: str = "cpu"):
    """Load ``(model, processor)`` from a Doctor Sun (or any LLaVA-HF) dir, safetensors only."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = check_model_dir(path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True)
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DoctorSunError(f"cannot load model {path}: {exc}") from exc
    processor.tokenizer.padding_side = "left"
    return model.to(device).eval(), processor
