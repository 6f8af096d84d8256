"""Streaming and cancellation of generation: text deltas per row of a batched ``Engine.generate``, a
thread that generates while the caller reads, and a stop at the next token once every reader has gone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from doctorsun.model.chat import Message
from doctorsun.model.generate import Engine, GenerationSettings, cut_at_stop


def streamer_for(engine: Engine, settings: GenerationSettings | None = None,
                 on_delta: Callable[[int, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> DeltaStreamer:
    """A streamer for ``engine.generate(..., streamer=)`` that knows the model's stop tokens."""
    eos = engine.model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    stop_ids.add(engine.tokenizer.eos_token_id)
    stop = (settings or GenerationSettings()).stop
    return DeltaStreamer(engine.tokenizer, stop_ids, stop, on_delta=on_delta, cancelled=cancelled)


def stream(engine: Engine, conversation: Sequence[Message], images: Sequence[Any] = (),
           settings: GenerationSettings | None = None) -> Iterator[str]:
    """Answer one conversation piece by piece; the pieces join up to what ``generate`` returns.

    Closing the iterator early (or Ctrl-C while waiting) stops the generation at the next token.
    """
    pieces: queue.Queue[str | None] = queue.Queue()
    stop_now = threading.Event()
    streamer = streamer_for(engine, settings, on_delta=lambda _row, text: pieces.put(text),
                            cancelled=stop_now.is_set)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            texts = engine.generate([list(conversation)], [list(images)], settings, streamer=streamer)
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
        text = cut_at_stop(raw, self.stop)
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
