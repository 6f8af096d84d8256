"""Saving and loading Doctor Sun checkpoints: transformers-native dirs (safetensors + processor with the
chat template inside), written atomically, loaded from safetensors only."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from doctorsun import __version__
from doctorsun.errors import DoctorSunError

META_FILE = "doctorsun.json"


@contextmanager
def atomic_dir(out: str | Path):
    """Yield a temporary dir beside ``out``; on success it replaces ``out`` in one rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(model, processor, out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write model (safetensors), processor and a ``doctorsun.json`` of provenance to ``out``."""
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        record = {"doctorsun_version": __version__, **(meta or {})}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return Path(out)


def read_meta(path: str | Path) -> dict[str, Any]:
    f = Path(path) / META_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


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
