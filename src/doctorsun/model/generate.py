"""Batched generation over Doctor Sun models: the one engine that chat, serve and eval share.

Greedy by default (temperature 0), left padding so that a batch of prompts decodes together.
Streaming, threads and cancellation belong to the server (``doctorsun.serve.streaming``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import StoppingCriteria

from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import Message, count_images, literal_messages, user_message

MAX_STOPS = 4
"""Most stop strings one generation takes (OpenAI's limit)."""
MAX_STOP_CHARS = 128
"""Longest stop string: they are matched on the decoded tail of each row, never through a token table."""


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
        if not valid_stops(self.stop):
            raise DoctorSunError(f"stop takes at most {MAX_STOPS} non-empty strings of up to {MAX_STOP_CHARS} "
                                 "characters")


def valid_stops(stops) -> bool:
    """At most ``MAX_STOPS`` non-empty strings of at most ``MAX_STOP_CHARS`` characters."""
    return (isinstance(stops, list | tuple) and len(stops) <= MAX_STOPS
            and all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops))


class Engine:
    """A model and its processor, ready to answer."""

    kind = "transformers"
    """The generation engine, recorded in score files."""

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
        texts = [self.processor.apply_chat_template(literal_messages(c), add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        flat = [img for imgs in images for img in imgs]
        inputs = self.processor(text=texts, images=flat or None, padding=True, return_tensors="pt")
        return inputs.to(self.device)

    @torch.inference_mode()
    def generate(self, conversations, images, settings: GenerationSettings | None = None,
                 streamer=None) -> list[str]:
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
            prompt = inputs["input_ids"].shape[1]
            kwargs["stopping_criteria"] = [StopStrings(self.tokenizer, settings.stop, prompt)]
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]  # (B, T_new)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        # A length limit can end inside a multi-byte character (byte-level BPE), which decodes as U+FFFD.
        return [cut_at_stop(t.rstrip("\ufffd"), settings.stop).strip() for t in texts]

    def reply_lengths(self, conversations, images, replies: Sequence[str]) -> tuple[list[str], list[int]]:
        """``(texts, n_reply)``: each conversation's prompt with its reply appended, and how many tokens the
        reply adds to its prompt. Counted by the tokenizer alone: an image placeholder is one token in both
        texts, so the processor's expansion of it cancels out and no image needs processing here."""
        if len(replies) != len(conversations):
            raise DoctorSunError(f"{len(conversations)} conversations but {len(replies)} replies")
        if len(conversations) != len(images):
            raise DoctorSunError(f"{len(conversations)} conversations but {len(images)} image lists")
        for i, (conv, imgs) in enumerate(zip(conversations, images, strict=True)):
            if count_images(conv) != len(imgs):
                raise DoctorSunError(
                    f"conversation {i} has {count_images(conv)} image placeholders but {len(imgs)} images"
                )
        prompts = [self.processor.apply_chat_template(literal_messages(c), add_generation_prompt=True,
                                                      tokenize=False) for c in conversations]
        texts = [p + r for p, r in zip(prompts, replies, strict=True)]
        lengths = [len(ids) for ids in self.tokenizer(prompts + texts)["input_ids"]]
        n_reply = [n_all - n_prompt for n_prompt, n_all in zip(lengths[:len(texts)], lengths[len(texts):],
                                                               strict=True)]
        for i, n in enumerate(n_reply):
            if n < 1:
                raise DoctorSunError(f"reply {i} ({replies[i]!r}) adds no token to its prompt")
        return texts, n_reply

    @torch.inference_mode()
    def loglikelihood(self, conversations, images, replies: Sequence[str]) -> list[tuple[float, int]]:
        """``(sum of log-probabilities, tokens)`` of each reply as the assistant's next turn (the likelihood
        scoring of lm-evaluation-harness, on the chat template): one forward pass per batch with images; a
        text-only batch runs each distinct prompt once (``_loglikelihood_text``)."""
        texts, n_reply = self.reply_lengths(conversations, images, replies)
        flat = [img for imgs in images for img in imgs]
        if not flat:
            return self._loglikelihood_text(texts, n_reply)
        inputs = self.processor(text=texts, images=flat, padding=True, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        # Left padding puts every reply at the end of its row: only the last max(n)+1 positions need the
        # vocabulary projection (the full (B, T, V) logits would dominate time and memory).
        keep = max(n_reply) + 1
        logits = self.model(**inputs, logits_to_keep=keep).logits.float()  # (B, keep, V)
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = inputs["input_ids"][:, -keep + 1:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, keep - 1)
        return [(float(token_lp[i, -n:].sum()), n) for i, n in enumerate(n_reply)]

    def _loglikelihood_text(self, texts: Sequence[str], n_reply: Sequence[int]) -> list[tuple[float, int]]:
        """``loglikelihood`` of text-only rows, each distinct prompt run once: the options of one question
        share their prompt, so its cache is copied to each of them and only the replies run after it (lm-
        evaluation-harness runs the whole text once per option). Equal to the one-pass scores up to float
        rounding."""
        ids = self.processor(text=list(texts))["input_ids"]
        index: dict[tuple[int, ...], int] = {}
        group = [index.setdefault(tuple(row[:-n]), len(index)) for row, n in zip(ids, n_reply, strict=True)]
        prompts = list(index)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(p) for p in prompts)
        prompt_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the last column
            prompt_ids[i, width - len(p):] = torch.tensor(p)
            prompt_mask[i, width - len(p):] = 1
        out = self.model(input_ids=prompt_ids.to(self.device), attention_mask=prompt_mask.to(self.device),
                         position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0).to(self.device), use_cache=True,
                         logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (prompts, V): each reply's first token
        scores = [float(first[g, row[-n]]) for g, row, n in zip(group, ids, n_reply, strict=True)]
        rest = max(n_reply) - 1
        if rest > 0:
            # transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, then goes in 5.40)
            name = "cache" if "cache" in inspect.signature(type(self.model).forward).parameters else "past_key_values"
            cache = getattr(out, name)
            rows = torch.tensor(group, device=self.device)
            cache.reorder_cache(rows)  # one copy of its prompt's cache per reply
            reply_ids = torch.full((len(ids), rest), pad, dtype=torch.long)
            reply_mask = torch.zeros((len(ids), rest), dtype=torch.long)
            for i, (row, n) in enumerate(zip(ids, n_reply, strict=True)):  # right padding after each reply
                if n > 1:
                    reply_ids[i, :n - 1] = torch.tensor(row[-n:-1])
                    reply_mask[i, :n - 1] = 1
            mask = torch.cat([prompt_mask[group], reply_mask], dim=1)
            positions = prompt_mask[group].sum(1, keepdim=True) + torch.arange(rest)
            logits = self.model(input_ids=reply_ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device), use_cache=False,
                                **{name: cache}).logits.float()  # (rows, rest, V)
            logprobs = torch.log_softmax(logits, dim=-1)
            for i, (row, n) in enumerate(zip(ids, n_reply, strict=True)):
                if n > 1:
                    targets = torch.tensor(row[-n + 1:], device=self.device)
                    scores[i] += float(logprobs[i, :n - 1].gather(-1, targets[:, None]).sum())
        return [(value, n) for value, n in zip(scores, n_reply, strict=True)]

    def answer(self, question: str, image=None, settings: GenerationSettings | None = None,
               history: Sequence[Message] = ()) -> str:
        """One question, with or without an image (a PIL image: ``doctorsun.data.load_image`` reads files)."""
        imgs = [] if image is None else [image]
        conv = [*history, user_message(question, len(imgs))]
        return self.generate([conv], [imgs], settings)[0]


class StopStrings(StoppingCriteria):
    """A stopping criterion: a row stops once its generated text holds a stop string. Only the newest
    tokens are decoded (enough to hold the longest stop string), so memory and time stay linear in the
    stop strings' length, unlike a precomputed token-by-stop-string table."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, [s for s in stops if s], prompt_length
        # A token is at least one character, except special ones that decode to nothing.
        self.window = max(len(s) for s in self.stops) + 2

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_length:]  # (B, T_new)
        tails = self.tokenizer.batch_decode(new[:, -self.window:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], dtype=torch.bool,
                            device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


T = TypeVar("T")
R = TypeVar("R")


def isolate_failures(run: Callable[[list[T]], list[R]], items: list[T],
                     retry: Callable[[BaseException], bool] = lambda exc: True) -> list[R | Exception]:
    """``run(items)`` (one batched call); when it raises, ``run`` each item alone so that one bad item
    costs only itself. Returns a result or the exception per item, in order. ``retry(exc)`` false keeps
    the batch's failure for every item (e.g. when part of the answer was already streamed)."""
    try:
        results = run(items)
    except Exception as exc:  # any failure of a batch: find the item that caused it
        if len(items) == 1 or not retry(exc):
            return [exc] * len(items)
        return [r for item in items for r in isolate_failures(run, [item], retry)]
    return list(results)
