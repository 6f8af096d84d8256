"""``doctorsun import``: tiny checkpoints written in the original LLaVA layout and in XTuner's layout
(renamed from the tiny model's own weights) import into models with the same logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from doctorsun.cli import main
from doctorsun.model import load_model

V = 49152  # SmolLM2's vocabulary: the tiny model's embeddings have one more row, for <image>


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    model, processor = load_model(tiny_model_dir)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return model, processor, state


def vision_dir(reference, out: Path) -> Path:
    """The tiny vision tower saved as a CLIP vision model (what ``mm_vision_tower`` points at)."""
    from transformers import CLIPVisionModel

    model, processor, _ = reference
    tower = CLIPVisionModel(model.config.vision_config)
    tower.load_state_dict(model.model.vision_tower.state_dict())
    tower.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    return out


def write_llava(reference, tiny_llm_dir, out: Path, with_tower: bool = True, pickle: bool = False) -> Path:
    from transformers import AutoTokenizer

    model, _, state = reference
    tensors = {}
    for key, t in state.items():
        if key.startswith("model.language_model."):
            name = "model." + key.removeprefix("model.language_model.")
        elif key.startswith("model.multi_modal_projector.linear_"):
            layer = {"1": "0", "2": "2"}[key.split("linear_")[1][0]]
            name = f"model.mm_projector.{layer}." + key.rsplit(".", 1)[1]
        elif key.startswith("model.vision_tower."):
            if not with_tower:
                continue
            name = "model.vision_tower.vision_tower.vision_model." + key.removeprefix("model.vision_tower.")
        else:
            name = key
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            t = t[:V]  # LLaVA has no <image> token: it marks the image with index -200
        tensors[name] = t.contiguous().clone()
    out.mkdir(parents=True)
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(
        4
    )  # old LLaVA checkpoints have these
    if pickle:
        torch.save(tensors, out / "pytorch_model.bin")
    else:
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    config = model.config.text_config.to_dict()
    config.update(
        architectures=["LlavaLlamaForCausalLM"],
        model_type="llava_llama",
        vocab_size=V,
        mm_vision_tower=str(vision_dir(reference, out.parent / f"{out.name}-clip")),
        mm_hidden_size=32,
        mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        image_aspect_ratio="pad",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        mm_patch_merge_type="flat",
    )
    (out / "config.json").write_text(json.dumps(config))
    AutoTokenizer.from_pretrained(tiny_llm_dir).save_pretrained(out)
    return out


def assert_same_logits(reference, imported_dir: Path) -> None:
    model, processor, _ = reference
    imported, imported_processor = load_model(imported_dir)
    text = "<image>\nWhat is it? 这是什么？"
    ids = processor(text=[text], images=[_image()], return_tensors="pt")
    assert imported_processor(text=[text], images=[_image()])["input_ids"] == ids["input_ids"].tolist()
    assert imported.config.image_token_index == model.config.image_token_index
    with torch.no_grad():
        want = model(**ids).logits  # (1, T, V + 1)
        got = imported(**ids).logits
    assert torch.equal(got[..., :V], want[..., :V])
    # The added <image> row is the mean row: its logit is the mean logit, never the argmax.
    assert torch.allclose(got[..., V], got[..., :V].mean(-1), atol=1e-4)


def _image():
    from PIL import Image

    return Image.new("RGB", (20, 12), (90, 140, 200))


def test_llava_layout_imports_with_the_same_logits(reference, tiny_llm_dir, tmp_path, capsys):
    src = write_llava(reference, tiny_llm_dir, tmp_path / "llava")
    assert main(["import", "--from", "llava", str(src), "--out", str(tmp_path / "out")]) == 0
    assert_same_logits(reference, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "doctorsun.json").read_text())
    assert meta["import"]["layout"] == "llava" and meta["import"]["image_aspect_ratio"] == "pad"
    # LLaVA pads to a square with the mean colour before resizing: so does the imported processor.
    _, processor = load_model(tmp_path / "out")
    assert processor.image_processor.do_pad


def test_pickle_weights_are_refused_unless_allowed(reference, tiny_llm_dir, tmp_path, capsys):
    src = write_llava(reference, tiny_llm_dir, tmp_path / "llava-bin", pickle=True)
    assert main(["import", "--from", "llava", str(src), "--out", str(tmp_path / "refused")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert (
        main(["import", "--from", "llava", str(src), "--out", str(tmp_path / "out"), "--allow-pickle"]) == 0
    )
    assert_same_logits(reference, tmp_path / "out")


def test_llava_without_tower_weights_takes_them_from_the_tower(reference, tiny_llm_dir, tmp_path):
    src = write_llava(reference, tiny_llm_dir, tmp_path / "llava", with_tower=False)
    assert main(["import", "--from", "llava", str(src), "--out", str(tmp_path / "out")]) == 0
    assert_same_logits(reference, tmp_path / "out")


def test_xtuner_layout_with_a_vision_lora(reference, tiny_llm_dir, tmp_path):
    """XTuner: LLM at the top, projector/ (``model.0/2``), and LoRA on the ViT over the base tower."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

    model, processor, state = reference
    src = tmp_path / "xtuner"
    llm = LlamaForCausalLM(
        model.config.text_config.__class__(**{**model.config.text_config.to_dict(), "vocab_size": V})
    )
    llm.load_state_dict(
        {
            (
                "model." + k.removeprefix("model.language_model.")
                if k.startswith("model.language_model.")
                else k
            ): (v[:V] if v.shape[0] == V + 1 else v)
            for k, v in state.items()
            if k.startswith(("model.language_model.", "lm_head."))
        }
    )
    llm.save_pretrained(src)
    AutoTokenizer.from_pretrained(tiny_llm_dir).save_pretrained(src)
    (src / "projector").mkdir()
    save_file(
        {
            f"model.{0 if i == 1 else 2}.{p}": state[f"model.multi_modal_projector.linear_{i}.{p}"].clone()
            for i in (1, 2)
            for p in ("weight", "bias")
        },
        src / "projector" / "model.safetensors",
    )
    (src / "projector" / "config.json").write_text(json.dumps({"depth": 2, "hidden_act": "gelu"}))
    base = vision_dir(reference, tmp_path / "clip")
    torch.manual_seed(3)
    lora = get_peft_model(
        CLIPVisionModel.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(src / "visual_encoder_adapter")

    out = tmp_path / "out"
    assert main(["import", "--from", "xtuner", str(src), "--vision-tower", str(base), "--out", str(out)]) == 0
    merged = lora.merge_and_unload()
    q = "encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], state[f"model.vision_tower.{q}"])  # the LoRA matters
    model.model.vision_tower.load_state_dict(merged.state_dict())  # the reference, with the LoRA merged
    try:
        assert_same_logits(reference, out)
    finally:
        model.model.vision_tower.load_state_dict(
            {
                k.removeprefix("model.vision_tower."): v
                for k, v in state.items()
                if k.startswith("model.vision_tower.")
            }
        )


def test_not_a_llava_checkpoint_is_named(tiny_model_dir, tmp_path, capsys):
    assert main(["import", "--from", "llava", str(tiny_model_dir), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_model_dir}/config.json is not a LLaVA checkpoint" in err
