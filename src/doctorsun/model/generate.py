"""Batched generation over Doctor Sun models: the one engine that chat, serve and eval share.

Greedy by default (temperature 0), left padding so that a batch of prompts decodes together.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

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

    def streamer(self, settings: GenerationSettings | None = None,
                 on_delta: Callable[[int, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> DeltaStreamer:
        """A streamer for ``generate(..., streamer=)`` that knows this model's stop tokens."""
        eos = self.model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        stop_ids.add(self.tokenizer.eos_token_id)
        stop = (settings or GenerationSettings()).stop
        return DeltaStreamer(self.tokenizer, stop_ids, stop, on_delta=on_delta, cancelled=cancelled)

    def stream(self, conversation: Sequence[Message], images: Sequence[Any] = (),
               settings: GenerationSettings | None = None) -> Iterator[str]:
        """Answer one conversation piece by piece; the pieces join up to what ``generate`` returns.

        Closing the iterator early (or Ctrl-C while waiting) stops the generation at the next token.
        """
        pieces: queue.Queue[str | None] = queue.Queue()
        stop_now = threading.Event()
        streamer = self.streamer(settings, on_delta=lambda _row, text: pieces.put(text),
                                 cancelled=stop_now.is_set)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                texts = self.generate([list(conversation)], [list(images)], settings, streamer=streamer)
                result["text"] = texts[0]
            except BaseException as exc:  # handed to the consumer's thread below
                result["error"] = exc
            finally:
                pieces.put(None)

        worker = threading.Thread(target=work, name="doctorsun-generate", daemon=True)
        worker.start()
        try:
            while (piece := pieces.get()) is not None:
                yield piece
        finally:
            stop_now.set()  # a no-op once generation is over
            worker.join()
        if "error" in result:
            raise result["error"]
        rest = streamer.finish(0, result["text"])
        if rest:
            yield rest


class GenerationCancelled(Exception):
    """Raised inside ``generate`` by a streamer whose consumers have all gone away."""


class DeltaStreamer(BaseStreamer):
    """Turns a (batched) ``generate`` call into per-row text deltas and per-row token counts.

    ``on_delta(row, text)`` is called from the generating thread. Text that may still change is held
    back: an incomplete multi-byte character, a possible beginning of a stop string, and trailing
    whitespace (answers are stripped); so the deltas of a row join up to the row's final answer, and
    ``finish`` hands out whatever a final detokenisation adds. When ``cancelled()`` turns true the next
    token raises ``GenerationCancelled``, which ends ``generate``.
    """

    def __init__(self, tokenizer, stop_ids: set[int], stop: Sequence[str] = (),
                 on_delta: Callable[[int, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None):
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.stop = [s for s in stop if s]
        self.on_delta = on_delta
        self.cancelled = cancelled
        self.prompt_tokens: list[int] = []
        self.tokens: list[list[int]] = []
        self.text: list[str] = []  # decoded so far, incrementally
        self.offsets: list[tuple[int, int]] = []  # (prefix, read): tokens decoded as context / as text
        self.sent: list[str] = []
        self.done: list[bool] = []

    def put(self, value: torch.Tensor) -> None:
        if self.cancelled is not None and self.cancelled():
            raise GenerationCancelled("every consumer of this generation has gone")
        if not self.prompt_tokens:  # the first call carries the (left-padded) prompts: (B, T)
            pad = self.tokenizer.pad_token_id
            for row in value.tolist():
                lead = next((i for i, t in enumerate(row) if t != pad), len(row))
                self.prompt_tokens.append(len(row) - lead)
            n = len(self.prompt_tokens)
            self.tokens, self.text, self.offsets = [[] for _ in range(n)], [""] * n, [(0, 0)] * n
            self.sent, self.done = [""] * n, [False] * n
            return
        for row, token in enumerate(value.reshape(-1).tolist()):  # (B,): one new token per row
            if self.done[row]:
                continue
            if token in self.stop_ids:
                self.done[row] = True
                continue
            self.tokens[row].append(token)
            self._decode(row)
            self._emit(row)

    def end(self) -> None:
        for row in range(len(self.tokens)):
            self._emit(row, final=True)

    def _decode(self, row: int) -> None:
        """Extend the row's text by its newest token(s), decoding only a short window: a token's text
        can depend on the one before (leading spaces) and a character can span tokens, so the window
        starts one step back and text is taken only once it is no longer a partial character."""
        tokens, (prefix, read) = self.tokens[row], self.offsets[row]
        before = self.tokenizer.decode(tokens[prefix:read], skip_special_tokens=True)
        after = self.tokenizer.decode(tokens[prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.text[row] += after[len(before):]
            self.offsets[row] = (read, len(tokens))

    def _emit(self, row: int, final: bool = False) -> None:
        raw = self.text[row]
        text = _cut_at_stop(raw, self.stop)
        if len(text) < len(raw):
            self.done[row] = True
        text = text.lstrip()
        if not (final or self.done[row]):
            text = _hold_back(text, self.stop)
        else:
            text = text.rstrip()
        self._send(row, text)

    def _send(self, row: int, text: str) -> None:
        sent = self.sent[row]
        if len(text) > len(sent) and text.startswith(sent):
            self.sent[row] = text
            if self.on_delta is not None:
                self.on_delta(row, text[len(sent):])

    def finish(self, row: int, answer: str) -> str:
        """The part of ``answer`` (the row's final text) not streamed yet; marks it as sent."""
        sent = self.sent[row] if row < len(self.sent) else ""
        if len(answer) > len(sent) and answer.startswith(sent):
            if row < len(self.sent):
                self.sent[row] = answer
            return answer[len(sent):]
        return ""

    def completion_tokens(self, row: int) -> int:
        return len(self.tokens[row]) if row < len(self.tokens) else 0

    def finish_reason(self, row: int) -> str:
        """``stop`` (end of turn or a stop string) or ``length`` (ran into max_new_tokens)."""
        return "stop" if row < len(self.done) and self.done[row] else "length"


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def _hold_back(text: str, stops: Sequence[str]) -> str:
    """``text`` without the tail that may still change: trailing whitespace, a half-decoded character
    (U+FFFD) or the beginning of a stop string."""
    text = text.rstrip().rstrip("\ufffd")
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                text = text[:-k]
                break
    return text.rstrip()
