"""What a checkpoint is: visual tokens and config from one function; key maps of foreign layouts."""

from __future__ import annotations

import pytest
from transformers import CLIPVisionConfig, LlamaConfig, SiglipVisionConfig

from doctorsun.errors import DoctorSunError
from doctorsun.model.checkpoint import llava_config, select_strategy, visual_tokens
from doctorsun.model.generate import isolate_failures
from doctorsun.model.layouts import LLAVA, VISION_TOWER, XTUNER_PROJECTOR

TOWER = dict(image_size=336, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
             num_attention_heads=2)


@pytest.mark.parametrize("vision, requested, strategy, tokens", [
    (CLIPVisionConfig(**TOWER), "auto", "default", 576),  # CLS dropped: LLaVA's 24 x 24
    (CLIPVisionConfig(**TOWER), "full", "full", 577),
    (SiglipVisionConfig(**TOWER), "auto", "full", 576),  # no CLS to keep or drop
    (SiglipVisionConfig(**TOWER), "full", "full", 576),
])
def test_visual_tokens_follow_the_cls_token(vision, requested, strategy, tokens):
    assert select_strategy(vision, requested) == strategy
    assert visual_tokens(vision, strategy) == tokens
    config = llava_config(vision, LlamaConfig(vocab_size=100), vocab_size=101, image_token_id=100,
                          strategy=requested)
    assert config.image_seq_length == tokens and config.vision_feature_select_strategy == strategy
    assert config.text_config.vocab_size == 101 and config.image_token_index == 100


def test_llava_config_refuses_what_cannot_be_built():
    with pytest.raises(DoctorSunError, match="no CLS token"):
        select_strategy(SiglipVisionConfig(**TOWER), "default")
    with pytest.raises(DoctorSunError, match="feature_layer 9 is outside the vision tower"):
        llava_config(CLIPVisionConfig(**TOWER), LlamaConfig(), vocab_size=10, image_token_id=9,
                     feature_layer=9)
    padded = llava_config(CLIPVisionConfig(**TOWER), LlamaConfig(vocab_size=128), vocab_size=101,
                          image_token_id=100)
    assert padded.text_config.vocab_size == 128  # a padded embedding keeps its rows


def test_key_maps_rename_keep_and_refuse():
    assert LLAVA.rename(["model.mm_projector.0.weight", "model.mm_projector.2.bias", "lm_head.weight",
                         "model.layers.0.self_attn.q_proj.weight",
                         "model.layers.0.self_attn.rotary_emb.inv_freq",
                         "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight"]) == {
        "model.multi_modal_projector.linear_1.weight": "model.mm_projector.0.weight",
        "model.multi_modal_projector.linear_2.bias": "model.mm_projector.2.bias",
        "lm_head.weight": "lm_head.weight",
        "model.language_model.layers.0.self_attn.q_proj.weight": "model.layers.0.self_attn.q_proj.weight",
        "model.vision_tower.embeddings.patch_embedding.weight":
            "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
    }
    with pytest.raises(DoctorSunError, match="unexpected tensor model.mm_projector.1.weight in a LLaVA"):
        LLAVA.rename(["model.mm_projector.1.weight"])
    with pytest.raises(DoctorSunError, match="unexpected tensor vision_tower.x"):
        LLAVA.rename(["vision_tower.x"])
    assert XTUNER_PROJECTOR.rename(["projector.model.0.weight", "model.2.weight", "0.bias"]) == {
        "model.multi_modal_projector.linear_1.weight": "projector.model.0.weight",
        "model.multi_modal_projector.linear_2.weight": "model.2.weight",
        "model.multi_modal_projector.linear_1.bias": "0.bias",
    }
    full_clip = ["text_model.encoder.layers.0.mlp.fc1.weight", "logit_scale", "visual_projection.weight",
                 "vision_model.post_layernorm.weight", "vision_model.embeddings.position_ids"]
    assert VISION_TOWER.rename(full_clip) == {"model.vision_tower.post_layernorm.weight":
                                              "vision_model.post_layernorm.weight"}


def test_isolate_failures_costs_only_the_bad_item():
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError(f"bad item among {len(items)}")
        return [i.upper() for i in items]

    results = isolate_failures(run, ["a", "bad", "c"])
    assert results[0] == "A" and results[2] == "C" and isinstance(results[1], ValueError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    kept = isolate_failures(run, ["a", "bad"], retry=lambda exc: False)
    assert all(isinstance(r, ValueError) for r in kept) and len(calls) == 5
