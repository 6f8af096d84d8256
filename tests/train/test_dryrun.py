"""``--dry-run`` on the reference 8B recipe: counts from the architecture arithmetic, no download."""

import json
from pathlib import Path

import pytest

from doctorsun.train.config import load_recipe
from doctorsun.train.dryrun import dry_run

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "doctor-sun-8b"


@pytest.fixture(scope="module")
def facts():
    llm = json.loads((RECIPES / "llm_config.json").read_text())
    vision = json.loads((RECIPES / "vision_config.json").read_text())
    return llm, vision


def llm_params(c) -> int:
    h, i, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    kv = c["num_key_value_heads"] * (h // c["num_attention_heads"])
    vocab = c["vocab_size"] + 1  # + <image>
    attention = h * h * 2 + h * kv * 2  # q, o and k, v
    per_layer = attention + 3 * h * i + 2 * h  # + gate/up/down and two RMSNorms
    return 2 * vocab * h + layers * per_layer + h  # untied embedding and head, final norm


def vit_lora_params(v, r) -> int:
    h, i = v["hidden_size"], v["intermediate_size"]
    per_layer = 4 * r * (h + h) + r * (h + i) + r * (i + h)  # q, k, v, out_proj; fc1; fc2
    return v["num_hidden_layers"] * per_layer


def projector_params(v, c) -> int:
    return v["hidden_size"] * c["hidden_size"] + c["hidden_size"] + c["hidden_size"] ** 2 + c["hidden_size"]


def test_finetune_counts_match_the_architecture(facts):
    llm, vision = facts
    plan = dry_run(load_recipe(RECIPES / "3-finetune.yaml"))
    assert llm_params(llm) == 8_030_269_440  # Llama-3.1-8B's published 8,030,261,248 + one 4096-wide row twice
    assert plan.counts.trainable == {"vision": vit_lora_params(vision, 64),
                                     "projector": projector_params(vision, llm),
                                     "llm": llm_params(llm)}
    assert plan.counts.frozen["llm"] == 0 and plan.counts.frozen["projector"] == 0
    assert 300e6 < plan.counts.frozen["vision"] < 310e6  # CLIP ViT-L/14-336's vision tower, frozen under LoRA
    assert plan.visual_tokens == (336 // 14) ** 2 == 576
    assert plan.tokens_per_step == 16 * 4096


def test_align_trains_only_the_projector_and_fits(facts):
    llm, vision = facts
    plan = dry_run(load_recipe(RECIPES / "2-align.yaml"))
    assert plan.counts.total_trainable == projector_params(vision, llm)
    assert plan.counts.frozen["llm"] == llm_params(llm)
    gib = plan.memory_gib
    # 16-bit weights replicated under ZeRO-2: 2 bytes x all parameters, nothing for frozen gradients
    assert gib["ZeRO-2"]["weights"] == pytest.approx(2 * (plan.counts.total_trainable + plan.counts.total_frozen)
                                                     / 1024**3)
    assert gib["ZeRO-2"]["optim"] < 0.05
    assert gib["ZeRO-3"]["total"] < gib["ZeRO-2"]["total"]


def test_full_llm_memory_by_strategy(facts):
    plan = dry_run(load_recipe(RECIPES / "1-text.yaml"))
    n, trainable = plan.gpus, plan.counts.total_trainable
    gib = plan.memory_gib
    assert gib["ZeRO-2"]["optim"] == pytest.approx(12 * trainable / n / 1024**3)  # fp32 master + Adam m, v
    assert gib["ZeRO-3"]["weights"] < gib["ZeRO-2"]["weights"] / 3
    assert all(20 < m["total"] < 80 for m in gib.values())  # an 8B model on 8 x 80 GB: fits, not trivially
    text = plan.render()
    assert "ZeRO-2" in text and "FSDP" in text and "8,030,269,440" in text


def test_cli_dry_run_prints_without_weights(capsys, monkeypatch):
    from doctorsun.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", str(RECIPES / "3-finetune.yaml"), "--dry-run", "--set", "train.plan_gpus=4"]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU on 4 GPUs" in out and "tokens per optimizer step" in out


SIGLIP = {"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2,
          "num_attention_heads": 2, "image_size": 384, "patch_size": 14}


@pytest.mark.parametrize("facts, strategy, tokens", [
    (SIGLIP, "auto", 27 * 27),  # SigLIP has no CLS token: full keeps the 729 patches, nothing more
    (SIGLIP, "full", 27 * 27),
    ({"model_type": "clip_vision_model", **{k: v for k, v in SIGLIP.items() if k != "model_type"}}, "full",
     730),
    ({"model_type": "clip_vision_model", **{k: v for k, v in SIGLIP.items() if k != "model_type"}}, "auto",
     729),
])
def test_dry_run_plans_the_visual_tokens_that_build_makes(tmp_path, facts, strategy, tokens):
    """The dry run and assembly count visual tokens with one function, CLS condition included."""
    from doctorsun.train.dryrun import meta_model

    (tmp_path / "vision.json").write_text(json.dumps(facts))
    recipe = load_recipe(RECIPES / "3-finetune.yaml", [
        f"architecture.vision_config={tmp_path / 'vision.json'}",
        "build={llm: unused, projector: {select_strategy: " + strategy + "}}", "model=null"])
    assert meta_model(recipe).config.image_seq_length == tokens
