"""The chat formats: detection, rendering, and the end-of-turn marker every user of a format shares."""

from __future__ import annotations

import pytest
from jinja2 import Template

from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import (
    FORMATS,
    IMAGE_TOKEN,
    count_images,
    detect_format,
    format_of,
    get_format,
    user_message,
)


def test_formats_are_detected_from_special_tokens():
    assert detect_format({"<|eot_id|>": 1, "<|start_header_id|>": 2}).name == "llama3"
    assert detect_format({"<|im_start|>": 1, "<|im_end|>": 2}).name == "chatml"
    assert detect_format({"</s>": 1}).name == "vicuna"
    with pytest.raises(DoctorSunError, match="unknown chat template 'alpaca'"):
        get_format("alpaca")


def test_llama3_template_renders_header_tokens():
    text = Template(FORMATS["llama3"].template).render(messages=[user_message("肺部有结节吗？", 1)],
                                                       add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<image>\n肺部有结节吗？"
                    "<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_template_puts_one_placeholder_per_image_part(name):
    messages = [user_message("Compare them.", 2), {"role": "assistant", "content": "Both normal."}]
    text = Template(FORMATS[name].template).render(messages=messages, eos_token="</s>")
    assert text.count(IMAGE_TOKEN) == count_images(messages) == 2
    assert FORMATS[name].assistant_start in text


def test_vicuna_ends_a_turn_with_the_tokenizers_own_eos(tiny_model):
    """The one place the end marker is resolved: vicuna has none of its own, so stop ids and training
    labels both use whatever EOS the tokenizer has."""
    _, processor = tiny_model
    tokenizer = processor.tokenizer
    vicuna, chatml = FORMATS["vicuna"], FORMATS["chatml"]
    assert vicuna.end_token(tokenizer) == tokenizer.eos_token
    assert chatml.end_token(tokenizer) == "<|im_end|>"
    assert vicuna.stop_ids(tokenizer) == [tokenizer.eos_token_id]
    assert chatml.stop_ids(tokenizer) == sorted({tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                                 tokenizer.eos_token_id})
    assert format_of(processor).name == "chatml"  # the tiny model's LLM speaks SmolLM2's chatml
