"""``doctorsun export``: a LoRA adapter merged into a checkpoint that plain transformers loads and that
answers as doctorsun does."""

from __future__ import annotations

import json

import pytest
import torch

from doctorsun.cli import main
from doctorsun.data.image import load_image
from doctorsun.model import load_model
from doctorsun.model.generate import Engine, GenerationSettings

QUESTION = "What modality is this image?"


@pytest.fixture(scope="module")
def adapter(chatty_model_dir, tmp_path_factory):
    """A LoRA adapter (on the LLM and the ViT) over the chatty model, saved as peft saves it."""
    from peft import LoraConfig, get_peft_model

    model, processor = load_model(chatty_model_dir)
    torch.manual_seed(5)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    peft_model.save_pretrained(out)
    return out, peft_model, processor


def plain_transformers_answer(model_dir, image, max_new_tokens: int) -> str:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_lora_adapter_exports_merged_and_loads_in_plain_transformers(adapter, dicom_ct, tmp_path):
    adapter_dir, peft_model, processor = adapter
    image = load_image(dicom_ct)
    settings = GenerationSettings(max_new_tokens=10)
    want = Engine(peft_model, processor).answer(QUESTION, image, settings)  # LoRA applied, not merged
    with peft_model.disable_adapter():
        assert Engine(peft_model, processor).answer(QUESTION, image, settings) != want  # the LoRA matters
    out = tmp_path / "export"
    assert main(["export", "--model", str(adapter_dir), "--out", str(out)]) == 0

    assert want and plain_transformers_answer(out, image, 10) == want
    assert Engine.load(out).answer(QUESTION, image, settings) == want
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    assert not any("lora" in k for k in _tensor_names(out)), "LoRA weights left unmerged"
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert "chat_template" in tokenizer_config or "chat_template.jinja" in files
    meta = json.loads((out / "doctorsun.json").read_text())
    assert meta["merged_adapter"]["r"] == 4
    card = (out / "README.md").read_text()
    assert "Not medical advice" in card and "AutoModelForImageTextToText" in card and "vllm serve" in card


def test_export_of_a_model_dir_casts_on_request(chatty_model_dir, tmp_path):
    out = tmp_path / "bf16"
    assert main(["export", "--model", str(chatty_model_dir), "--out", str(out), "--dtype", "bfloat16"]) == 0
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert json.loads((out / "doctorsun.json").read_text())["export"]["dtype"] == "bfloat16"


def test_export_reports_what_a_serving_engine_would_miss(chatty_model_dir, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from doctorsun.model.export import engine_problems

    out = tmp_path / "exp"
    assert main(["export", "--model", str(chatty_model_dir), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["engine_problems"] == []
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    config = json.loads((broken / "config.json").read_text())
    del config["vision_feature_select_strategy"]
    config["image_aspect_ratio"] = "pad"  # the processor resizes, it does not pad
    (broken / "config.json").write_text(json.dumps(config))
    tensors = load_file(broken / "model.safetensors")  # back to transformers 5's own tower names
    save_file({k.replace("vision_tower.vision_model.", "vision_tower."): v for k, v in tensors.items()},
              broken / "model.safetensors", metadata={"format": "pt"})
    (broken / "preprocessor_config.json").unlink(missing_ok=True)
    (broken / "processor_config.json").unlink(missing_ok=True)
    problems = engine_problems(broken)
    assert problems[0] == "config.json has no vision_feature_select_strategy"
    assert "not under vision_tower.vision_model" in problems[1] and "image processor" in problems[2], problems
    assert len(problems) == 3
    (broken / "preprocessor_config.json").write_text(json.dumps({"do_pad": False}))  # a processor that resizes
    assert "config.json says image_aspect_ratio 'pad' but the image processor implements 'square' (SGLang " \
        "would prepare images otherwise)" in engine_problems(broken)
    del config["image_aspect_ratio"]
    (broken / "config.json").write_text(json.dumps(config))
    assert "config.json has no image_aspect_ratio (SGLang reads it)" in engine_problems(broken)
    assert not any("image_aspect_ratio" in p for p in engine_problems(broken, "vllm"))  # vLLM does not read it


def test_vllm_engine_needs_vllm(chatty_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCTORSUN_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    out = tmp_path / "vllm"
    assert main(["export", "--model", str(chatty_model_dir), "--out", str(out), "--engine", "vllm"]) == 2
    assert "--engine vllm needs vLLM: run `make vllm`" in capsys.readouterr().err
    assert not out.exists()  # refused before exporting


def test_pickle_adapter_is_refused(adapter, tmp_path, capsys):
    adapter_dir, _, _ = adapter
    bin_dir = tmp_path / "bin-adapter"
    bin_dir.mkdir()
    (bin_dir / "adapter_config.json").write_text((adapter_dir / "adapter_config.json").read_text())
    (bin_dir / "adapter_model.bin").write_bytes(b"pickle")
    assert main(["export", "--model", str(bin_dir), "--out", str(tmp_path / "o")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err


def _tensor_names(model_dir):
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as f:
        return list(f.keys())
