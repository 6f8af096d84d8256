"""Batched generation over Doctor Sun models: the one engine that chat, serve and eval share.

Greedy by default (temperature 0), left padding so that a batch of prompts decodes together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError

Message = dict[str, Any]


@dataclass
class GenerationSettings:
    """How to decode."""

    max_new_tokens: int = 128
    """Upper bound on generated tokens."""
    temperature: float = 0.0
    """0 means greedy decoding (the default everywhere, evaluation included)."""
    top_p: float = 1.0
    """Nucleus sampling mass, used only when temperature > 0."""
    stop: list[str] = field(default_factory=list)
    """Extra stop strings; the template's end-of-turn token always stops."""
    seed: int = 0
    """Seed for sampling, so sampled runs repeat too."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise DoctorSunError(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            raise DoctorSunError(f"temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise DoctorSunError(f"top_p must be in (0, 1], not {self.top_p}")


def user_message(question: str, n_images: int = 0) -> Message:
    """A user turn with ``n_images`` image parts before the text (LLaVA places the image first)."""
    return {"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": question}]}


def count_images(messages: Sequence[Message]) -> int:
    n = 0
    for m in messages:
        if isinstance(m["content"], list):
            n += sum(1 for part in m["content"] if part.get("type") == "image")
    return n


class Engine:
    """A model and its processor, ready to answer."""

    def __init__(self, model, processor, name: str = "model"):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.name = name

    @classmethod
    def load(cls, path: str | Path, dtype: str = "float32", device: str = "cpu") -> Engine:
        from doctorsun.model.io import load_model

        model, processor = load_model(path, dtype=dtype, device=device)
        return cls(model, processor, name=str(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, conversations: Sequence[Sequence[Message]], images: Sequence[Sequence[Any]]):
        """Render chat templates and tokenise a batch; images are PIL images in conversation order."""
        if len(conversations) != len(images):
            raise DoctorSunError(f"{len(conversations)} conversations but {len(images)} image lists")
        for i, (conv, imgs) in enumerate(zip(conversations, images, strict=True)):
            if count_images(conv) != len(imgs):
                raise DoctorSunError(
                    f"conversation {i} has {count_images(conv)} image placeholders but {len(imgs)} images"
                )
        texts = [self.processor.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        flat = [img for imgs in images for img in imgs]
        inputs = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
        return inputs.to(self.device)

    @torch.inference_mode()
    def generate(self, conversations, images, settings: GenerationSettings | None = None, streamer=None) -> list[str]:
        """Answer a batch of conversations; returns one string per conversation."""
        settings = settings or GenerationSettings()
        inputs = self.encode(conversations, images)
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "streamer": streamer}
        if settings.temperature > 0:
            torch.manual_seed(settings.seed)
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.stop:
            kwargs.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]  # (B, T_new)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [_cut_at_stop(t, settings.stop).strip() for t in texts]

    def answer(self, question: str, image=None, settings: GenerationSettings | None = None,
               history: Sequence[Message] = ()) -> str:
        """One question, with or without an image (a PIL image or a path any reader understands)."""
        imgs = []
        if image is not None:
            if not hasattr(image, "size"):
                from doctorsun.data.image import load_image

                image = load_image(image)
            imgs = [image]
        conv = [*history, user_message(question, len(imgs))]
        return self.generate([conv], [imgs], settings)[0]


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
