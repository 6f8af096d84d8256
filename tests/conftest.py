"""Shared fixtures: tiny random models built from configs (fast), the real SmolLM2 (slow, cached)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Prepared training data goes to a folder of this session, removed at exit (converted models stay cached).
_DATA_CACHE = tempfile.mkdtemp(prefix="doctorsun-test-data-")
os.environ["DOCTORSUN_DATA_CACHE"] = _DATA_CACHE
atexit.register(shutil.rmtree, _DATA_CACHE, ignore_errors=True)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_VISION = dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a transformers dir (converted from its GGUF once, cached)."""
    from doctorsun.model.llm import _cached_copy, _convert_gguf, resolve_llm

    gguf = resolve_llm("smollm2-135m")
    cached = _cached_copy(gguf)
    if not (cached / "config.json").is_file():
        _convert_gguf(gguf, cached)
    return cached


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer, 32-wide random Llama with SmolLM2's real tokenizer (so templates and Chinese work)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llm")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_build_config(tiny_llm_dir):
    from doctorsun.model.config import BuildConfig, VisionConfig

    return BuildConfig(llm=str(tiny_llm_dir), vision=VisionConfig(**TINY_VISION))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_build_config) -> Path:
    """A saved tiny Doctor Sun model (4 visual tokens); tests must not modify it."""
    from doctorsun.model import build_model, save_model

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    model, processor = build_model(tiny_build_config)
    save_model(model, processor, out, meta={"stage": "build", "build": tiny_build_config.to_dict()})
    return out


@pytest.fixture(scope="session")
def chatty_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with larger random weights: it answers with varied, input-dependent words, so a
    mixed-up or truncated answer shows (the plain tiny model only emits newlines, stripped to '')."""
    from doctorsun.model import load_model, save_model

    model, processor = load_model(tiny_model_dir)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else 0.3))
    out = tmp_path_factory.mktemp("chatty") / "chatty"
    save_model(model, processor, out, meta={"stage": "test"})
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir):
    """A fresh in-memory copy of the tiny model: ``(model, processor)``."""
    from doctorsun.model import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def dicom_ct() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))
