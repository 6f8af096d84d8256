"""The chat format of a Doctor Sun model: the ``<image>`` placeholder, the user turn that carries images,
and one record per template family (its Jinja template, the token that ends an assistant turn, and the
markers around assistant text). Tokenisation for training, generation, evaluation and serving all read
them from here, so a model is prompted at test time exactly as it was trained.

One ``<image>`` in a user turn (a ``{"type": "image"}`` content part) lands where the image goes;
``LlavaProcessor`` then expands it into the visual tokens. No default system prompt: the reference
recipe trains with an empty one. Formats follow each family's own template:
- chatml: SmolLM2 / Qwen (``<|im_start|>role\\n...<|im_end|>``)
- llama3: Llama-3 / 3.1 (https://github.com/meta-llama/llama-models, ``<|eot_id|>`` ends a turn)
- vicuna: LLaVA-1.5's ``USER: ... ASSISTANT:`` for LLMs with no chat format of their own
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from doctorsun.errors import DoctorSunError

IMAGE_TOKEN = "<image>"
"""The image placeholder: in SunMed-VL text, in the tokenizer (one added token) and in the template."""

PLACEHOLDER = re.compile(r"[ \t]*" + re.escape(IMAGE_TOKEN) + r"[ \t]*\n?")
"""A placeholder with the blanks and the line break around it, as records write it."""
LITERAL_IMAGE_TOKEN = "< image>"
"""How the placeholder's text reads when a person types it: never the image token."""

Message = dict[str, Any]

# Renders a message's content: a plain string, or a list of {"type": "image"} / {"type": "text"} parts.
_CONTENT = (
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '" + IMAGE_TOKEN + "\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
)


@dataclass(frozen=True)
class ChatFormat:
    """One template family."""

    name: str
    """``chatml``, ``llama3`` or ``vicuna``."""
    template: str
    """The Jinja chat template saved inside the processor (and on the tokenizer)."""
    stop: str | None
    """The token that ends an assistant turn; ``None``: the tokenizer's EOS."""
    assistant_start: str
    """Text that opens an assistant turn; training labels start after it."""

    def end_token(self, tokenizer) -> str:
        """The token that closes an assistant turn (and stops generation) for this tokenizer."""
        return self.stop or tokenizer.eos_token

    def stop_ids(self, tokenizer) -> list[int]:
        """Token ids that end generation: the end-of-turn token and EOS."""
        return sorted({tokenizer.convert_tokens_to_ids(self.end_token(tokenizer)), tokenizer.eos_token_id})


FORMATS: dict[str, ChatFormat] = {
    "chatml": ChatFormat(
        "chatml",
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _CONTENT + "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}",
        stop="<|im_end|>",
        assistant_start="<|im_start|>assistant\n",
    ),
    "llama3": ChatFormat(
        "llama3",
        "{{ '<|begin_of_text|>' }}"
        "{%- for message in messages -%}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
        + _CONTENT
        + "{{ '<|eot_id|>' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- "
        "endif -%}",
        stop="<|eot_id|>",
        assistant_start="<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "vicuna": ChatFormat(
        "vicuna",
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}" + _CONTENT + "{{ ' ' }}"
        "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}" + _CONTENT + "{{ ' ' }}"
        "{%- else -%}{{ 'ASSISTANT: ' }}" + _CONTENT + "{{ eos_token }}"
        "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}",
        stop=None,
        assistant_start="ASSISTANT: ",
    ),
}


def get_format(name: str) -> ChatFormat:
    if name not in FORMATS:
        raise DoctorSunError(f"unknown chat template {name!r}; choose one of {sorted(FORMATS)}")
    return FORMATS[name]


def detect_format(vocab: dict[str, int]) -> ChatFormat:
    """The template family an LLM's tokenizer speaks, from its special tokens."""
    if "<|eot_id|>" in vocab and "<|start_header_id|>" in vocab:
        return FORMATS["llama3"]
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return FORMATS["chatml"]
    return FORMATS["vicuna"]


def choose_format(name: str, tokenizer) -> ChatFormat:
    """``auto`` (from the tokenizer's special tokens) or a named format."""
    return detect_format(tokenizer.get_vocab()) if name == "auto" else get_format(name)


def _held_format(processor) -> ChatFormat | None:
    """The format whose template the processor (or tokenizer) holds verbatim, if any."""
    own = getattr(processor, "chat_template", None)
    return next((fmt for fmt in FORMATS.values() if own == fmt.template), None)


def format_of(processor) -> ChatFormat:
    """The format a processor (or tokenizer) carries: the one whose template it holds, else from its vocab."""
    return _held_format(processor) or detect_format(getattr(processor, "tokenizer", processor).get_vocab())


def template_label(processor) -> str:
    """The format's name when the processor holds one of ours verbatim, else ``custom`` or ``none``."""
    held = _held_format(processor)
    return held.name if held else ("custom" if getattr(processor, "chat_template", None) else "none")


def user_message(question: str, n_images: int = 0) -> Message:
    """A user turn with ``n_images`` image parts before the text (LLaVA places the image first)."""
    return {"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": question}]}


def literal(text: str) -> str:
    """Text as it was typed: a ``<image>`` inside it is words, not an image position."""
    return text.replace(IMAGE_TOKEN, LITERAL_IMAGE_TOKEN)


def literal_messages(messages: Sequence[Message]) -> list[Message]:
    """The one rule for every conversation rendered for a model (API, web UI, CLI chat, evaluation and
    training): images exist only as ``{"type": "image"}`` parts; any ``<image>`` in the text is made
    literal, so user text can never create image positions."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            content = literal(content)
        elif isinstance(content, list):
            content = [{**p, "text": literal(str(p.get("text", "")))} if p.get("type") == "text" else p
                       for p in content]
        out.append({**m, "content": content})
    return out


def count_images(messages: Sequence[Message]) -> int:
    """Image parts in a conversation."""
    n = 0
    for m in messages:
        if isinstance(m["content"], list):
            n += sum(1 for part in m["content"] if part.get("type") == "image")
    return n
