"""Chat-template tokenisation of SunMed-VL records for training, with label masks, and packing.

A record is rendered by the model's own chat template exactly as ``Engine`` renders a question at
inference (``user_message`` puts the images first), tokenised once with character offsets, and a token
gets a label only when it lies inside an assistant turn (its text and the end-of-turn marker, so the
model learns to stop). Each ``<image>`` then becomes the model's number of visual tokens.

Samples that would train on something other than what they say are refused with their record id
(``SampleError``) instead of being fed to the model: a visual-token count that does not match the
images, image tokens that truncation would cut, or no assistant token left to learn from (the silent
"tokenization mismatch" that zeroes the loss in other tools).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN, PLACEHOLDER, format_of, literal_messages, user_message

IGNORE = -100
"""Label of a token that does not count in the loss (PyTorch's ``cross_entropy`` default)."""


class SampleError(DoctorSunError):
    """A record that cannot become a training sample; the message starts with its id."""

    def __init__(self, record_id: str, reason: str):
        super().__init__(f"record {record_id}: {reason}")
        self.record_id = record_id
        self.reason = reason


def record_messages(record: dict) -> tuple[list[dict[str, Any]], int]:
    """Chat messages for a record's turns (images first in their human turn, as at inference) and the
    number of ``<image>`` placeholders they held."""
    messages, placeholders = [], 0
    for turn in record.get("conversations") or []:
        value = str(turn.get("value", ""))
        if turn.get("from") == "human":
            n = value.count(IMAGE_TOKEN)
            placeholders += n
            messages.append(user_message(PLACEHOLDER.sub("", value).strip(), n))
        else:
            placeholders += value.count(IMAGE_TOKEN)
            messages.append({"role": "assistant", "content": value})
    return messages, placeholders


def n_record_images(record: dict) -> int:
    image = record.get("image")
    if image is None:
        return 0
    return 1 if isinstance(image, str) else len(image)


@dataclass
class ChatTokenizer:
    """Turns records into ``input_ids`` / ``labels`` for one model (its processor and visual tokens)."""

    processor: Any
    """The model's ``LlavaProcessor`` (tokenizer + chat template)."""
    image_seq_length: int
    """Visual tokens per image (``model.config.image_seq_length``)."""
    max_length: int = 2048
    """Longest sample in tokens, visual tokens included; longer ones are cut at the end."""
    label_scope: str = "assistant"
    """``assistant``: only assistant tokens count; ``all``: every token (plain-text pretraining)."""

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise DoctorSunError(f"max_length must be >= 2, not {self.max_length}")
        if self.label_scope not in ("assistant", "all"):
            raise DoctorSunError(f"label_scope must be assistant or all, not {self.label_scope!r}")
        tokenizer = self.processor.tokenizer
        self.format = format_of(self.processor)
        self.markers = (self.format.assistant_start, self.format.end_token(tokenizer))
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise DoctorSunError(f"the tokenizer has no {IMAGE_TOKEN} token: is this a Doctor Sun model?")

    def render(self, record: dict) -> tuple[str, int]:
        """The record as the chat template writes it, and its number of image placeholders."""
        messages, placeholders = record_messages(record)
        text = self.processor.apply_chat_template(literal_messages(messages), tokenize=False)
        return text, placeholders

    def assistant_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of assistant turns: from after the start marker to the end marker's end."""
        start, end = self.markers
        spans, pos = [], 0
        while (i := text.find(start, pos)) != -1:
            body = i + len(start)
            j = text.find(end, body)
            stop = len(text) if j == -1 else j + len(end)
            spans.append((body, stop))
            pos = stop
        return spans

    def __call__(self, record: dict) -> dict[str, list[int]]:
        """``{"input_ids", "labels"}`` for one record; raises ``SampleError`` naming the record."""
        rid = str(record.get("id", "?"))
        text, placeholders = self.render(record)
        n_images = n_record_images(record)
        if placeholders != n_images:
            raise SampleError(rid, f"{placeholders} {IMAGE_TOKEN} placeholder(s) for {n_images} image(s)")
        # Same call as the processor makes at inference, plus the offsets the masks need.
        enc = self.processor.tokenizer(text, return_offsets_mapping=True)
        spans = self.assistant_spans(text) if self.label_scope == "assistant" else [(0, len(text))]
        ids: list[int] = []
        labels: list[int] = []
        for tok, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            if tok == self.image_token_id:
                ids += [tok] * self.image_seq_length
                labels += [IGNORE] * self.image_seq_length
                continue
            inside = e > s and any(a <= s and e <= b for a, b in spans)
            ids.append(tok)
            labels.append(tok if inside else IGNORE)
        n_visual = sum(1 for t in ids if t == self.image_token_id)
        if n_visual != n_images * self.image_seq_length:
            raise SampleError(rid,
                              f"{n_visual} visual tokens for {n_images} image(s) x {self.image_seq_length}")
        return self._truncate(rid, ids, labels)

    def _truncate(self, rid: str, ids: list[int], labels: list[int]) -> dict[str, list[int]]:
        if len(ids) > self.max_length:
            if self.image_token_id in ids[self.max_length:]:
                raise SampleError(rid, f"{len(ids)} tokens: truncation at max_length {self.max_length} "
                                       f"would cut its {IMAGE_TOKEN} tokens")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        # The loss predicts token t from tokens < t, so a label on the first token never counts.
        if all(label == IGNORE for label in labels[1:]):
            reason = "no assistant tokens left after truncation" if len(labels) == self.max_length else \
                "no assistant turn to learn from"
            raise SampleError(rid, reason)
        return {"input_ids": ids, "labels": labels}

    def tokenize_all(self, records: Iterable[dict]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Tokenise every record; refused ones become ``(id, reason)`` problems and the rest go on."""
        samples, problems = [], []
        for record in records:
            try:
                samples.append({**self(record), "record": record})
            except SampleError as exc:
                problems.append((exc.record_id, exc.reason))
        return samples, problems


def pack_plan(lengths: Sequence[int], max_length: int, open_rows: int = 8) -> list[list[int]]:
    """Which samples share a row of at most ``max_length`` tokens: first fit among the last
    ``open_rows`` rows, in order, so that packing stays linear in the number of samples and needs only
    the lengths (a sample longer than ``max_length`` is cut to it and fills a row)."""
    rows: list[list[int]] = []
    used: list[int] = []
    for index, n in enumerate(lengths):
        n = min(n, max_length)
        first = max(0, len(rows) - open_rows)
        at = next((r for r in range(first, len(rows)) if used[r] + n <= max_length), None)
        if at is None:
            rows.append([])
            used.append(0)
            at = len(rows) - 1
        rows[at].append(index)
        used[at] += n
    return rows


def join_packed(samples: Sequence[dict[str, list[int]]], max_length: int | None = None) -> dict[str, list[int]]:
    """Samples concatenated into one row with ``position_ids`` that restart at 0 for every sample; given
    no attention mask, transformers turns them into a block-diagonal causal mask (when no KV cache is
    used, as in training), so packed samples never see each other. The first token of every sample gets
    no label: it is not predicted from the sample before it."""
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for sample in samples:
        ids, labels = sample["input_ids"][:max_length], sample["labels"][:max_length]
        row["input_ids"] += ids
        row["labels"] += [IGNORE, *labels[1:]]
        row["position_ids"] += list(range(len(ids)))
    return row


def pack(samples: Sequence[dict[str, list[int]]], max_length: int,
         open_rows: int = 8) -> list[dict[str, list]]:
    """``pack_plan`` and ``join_packed`` in one: the packed rows, each with the sample indices it holds
    (``sources``)."""
    plan = pack_plan([len(s["input_ids"]) for s in samples], max_length, open_rows)
    return [{**join_packed([samples[i] for i in row], max_length), "sources": row} for row in plan]
