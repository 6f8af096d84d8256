"""Checkpoints that serving engines load as saved: the vision tower under ``vision_tower.vision_model.*``
(vLLM's and SGLang's LLaVA loaders), still loading identically in transformers."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from doctorsun.model import build_model, save_model
from doctorsun.model.weights import engine_key, engine_layout


def _keys(folder) -> list[str]:
    keys = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            keys += list(f.keys())
    return keys


def test_saved_tower_weights_carry_vision_model_and_load_identically(tmp_path, tiny_build_config):
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    model, processor = build_model(tiny_build_config)
    for max_shard_size in ("1GB", "100KB"):  # one file, and shards with an index
        out = tmp_path / max_shard_size
        save_model(model, processor, out, max_shard_size=max_shard_size)
        keys = _keys(out)
        tower = [k for k in keys if "vision_tower" in k]
        assert tower and all(k.startswith("vision_tower.vision_model.") for k in tower), tower[:3]
        assert not any(k.startswith(("vision_tower.embeddings", "vision_tower.encoder")) for k in keys)
        if max_shard_size == "100KB":
            index = json.loads((out / "model.safetensors.index.json").read_text())
            assert len(set(index["weight_map"].values())) > 1 and sorted(index["weight_map"]) == sorted(keys)
        loaded, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        want, got = model.state_dict(), loaded.state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want)
        assert engine_layout(out) == 0  # already in the engines' names


def test_engine_key_renames_only_tower_weights():
    assert engine_key("vision_tower.encoder.layers.0.mlp.fc1.weight") == \
        "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    assert engine_key("model.vision_tower.post_layernorm.bias") == \
        "model.vision_tower.vision_model.post_layernorm.bias"
    done = "vision_tower.vision_model.pre_layrnorm.weight"
    assert engine_key(done) == done
    assert engine_key("multi_modal_projector.linear_1.weight") == "multi_modal_projector.linear_1.weight"
    assert engine_key("language_model.layers.0.self_attn.q_proj.weight") == \
        "language_model.layers.0.self_attn.q_proj.weight"


def test_an_adapter_folder_is_left_to_peft(tmp_path):
    from safetensors.torch import save_file

    save_file({"base_model.model.model.vision_tower.encoder.layers.0.q_proj.lora_A.weight": torch.zeros(2, 2)},
              tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_text("{}")
    assert engine_layout(tmp_path) == 0
    assert _keys(tmp_path) == ["base_model.model.model.vision_tower.encoder.layers.0.q_proj.lora_A.weight"]


def test_saved_config_names_the_aspect_ratio_its_processor_implements(tmp_path, tiny_build_config):
    """SGLang reads ``image_aspect_ratio`` to prepare images: ``square`` for DoctorSun's resize, ``pad`` for a
    processor that pads to a square first (an imported LLaVA-1.5); it survives a load and a re-save."""
    from transformers import LlavaImageProcessor

    from doctorsun.model import load_model
    from doctorsun.model.export import engine_problems

    model, processor = build_model(tiny_build_config)
    save_model(model, processor, tmp_path / "resize")
    assert json.loads((tmp_path / "resize" / "config.json").read_text())["image_aspect_ratio"] == "square"
    assert engine_problems(tmp_path / "resize") == []
    model, processor = load_model(tmp_path / "resize")
    ip = processor.image_processor
    processor.image_processor = LlavaImageProcessor(do_pad=True, size=ip.size, crop_size=ip.crop_size,
                                                    do_center_crop=False, image_mean=ip.image_mean,
                                                    image_std=ip.image_std)
    save_model(model, processor, tmp_path / "pad")
    assert json.loads((tmp_path / "pad" / "config.json").read_text())["image_aspect_ratio"] == "pad"
    assert engine_problems(tmp_path / "pad") == []
    model, processor = load_model(tmp_path / "pad")
    assert model.config.image_aspect_ratio == "pad"
