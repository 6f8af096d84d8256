"""Chat templates for the LLM families DoctorSun assembles, written so that one ``<image>`` in a user
turn (a ``{"type": "image"}`` content part) lands where the image goes; ``LlavaProcessor`` then expands
it into the visual tokens. No default system prompt: the reference recipe trains with an empty one.

Formats follow each family's own template:
- chatml: SmolLM2 / Qwen (``<|im_start|>role\\n...<|im_end|>``)
- llama3: Llama-3 / 3.1 (https://github.com/meta-llama/llama-models, ``<|eot_id|>`` ends a turn)
- vicuna: LLaVA-1.5's ``USER: ... ASSISTANT:`` for LLMs with no chat format of their own
"""

from __future__ import annotations

from doctorsun.errors import DoctorSunError

# Renders a message's content: a plain string, or a list of {"type": "image"} / {"type": "text"} parts.
_CONTENT = (
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
)

TEMPLATES: dict[str, str] = {
    "chatml": (
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _CONTENT + "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    ),
    "llama3": (
        "{{ '<|begin_of_text|>' }}"
        "{%- for message in messages -%}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
        + _CONTENT
        + "{{ '<|eot_id|>' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
    ),
    "vicuna": (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}" + _CONTENT + "{{ ' ' }}"
        "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}" + _CONTENT + "{{ ' ' }}"
        "{%- else -%}{{ 'ASSISTANT: ' }}" + _CONTENT + "{{ eos_token }}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
    ),
}

# The token that ends an assistant turn, per template (``None``: the tokenizer's EOS).
STOP_TOKENS: dict[str, str | None] = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "vicuna": None}

# Where an assistant turn starts and ends in the rendered text; training masks everything else.
ASSISTANT_MARKERS: dict[str, tuple[str, str]] = {
    "chatml": ("<|im_start|>assistant\n", "<|im_end|>"),
    "llama3": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    "vicuna": ("ASSISTANT: ", "</s>"),
}


def detect_template(vocab: dict[str, int]) -> str:
    """The template family an LLM's tokenizer speaks, from its special tokens."""
    if "<|eot_id|>" in vocab and "<|start_header_id|>" in vocab:
        return "llama3"
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return "chatml"
    return "vicuna"


def get_template(name: str) -> str:
    if name not in TEMPLATES:
        raise DoctorSunError(f"unknown chat template {name!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]
