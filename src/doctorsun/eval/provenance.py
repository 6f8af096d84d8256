"""What a score file must name so that someone else can reproduce it: the model (and its build record),
the data (content hashes), the prompt (chat template and prompt builder), decoding and versions."""

from __future__ import annotations

import hashlib
import inspect
import platform
from pathlib import Path
from typing import Any

from doctorsun.files import sha256_file

# Annotation files are hashed; images are not (they are many, and a changed image shows in the scores).
DATA_SUFFIXES = {".json", ".jsonl", ".csv", ".tsv", ".txt", ".pkl", ".parquet", ".arrow"}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_data(path: str | Path) -> dict[str, Any]:
    """``{"path", "sha256", "files"}``: a file's hash, or for a folder one hash over the relative paths
    and hashes of its annotation files (JSON, JSONL, CSV, pickle, parquet...), in sorted order."""
    path = Path(path)
    if path.is_file():
        return {"path": str(path), "sha256": sha256_file(path), "files": 1}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return {"path": str(path), "sha256": h.hexdigest(), "files": len(files)}


def prompt_record(processor) -> dict[str, Any]:
    """The chat template (its name when it is one of ours, and a hash of its text) and the prompt builder
    (module and a hash of its source), so a changed prompt is visible in every score file."""
    from doctorsun.data import prompts
    from doctorsun.model.chat import template_label

    template = getattr(processor, "chat_template", None) or ""
    return {"chat_template": template_label(processor), "chat_template_sha256": sha256_text(template),
            "builder": prompts.__name__, "builder_sha256": sha256_text(inspect.getsource(prompts))}


def model_record(model_path: str | None) -> dict[str, Any]:
    """The model path and, for a DoctorSun checkpoint, its ``doctorsun.json`` (how it was built/trained)."""
    from doctorsun.model.checkpoint import read_meta

    record: dict[str, Any] = {"path": model_path}
    if model_path and Path(model_path).is_dir():
        meta = read_meta(model_path)
        if meta:
            record["meta"] = meta
    return record


def weights_fingerprint(model) -> str:
    """A cheap hash of the weights actually in memory (shape and a strided sample of every parameter),
    so that a retrained model saved to the same path is never mistaken for the old one."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            flat = param.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)].double()
            h.update(f"{name}{tuple(param.shape)}{sample.sum().item():.10e}{sample.abs().sum().item():.10e}".encode())
    return h.hexdigest()


def versions() -> dict[str, str]:
    import torch
    import transformers

    from doctorsun import __version__

    return {"doctorsun": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}
