"""What every converter shares: the result type, the record builders and safe readers.

Records are built ONLY through ``doctorsun.data.prompts`` so that a model is asked in training exactly
as evaluation asks it.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from doctorsun.data.io import json_lines, load_json
from doctorsun.data.prompts import (
    IMAGE_TOKEN,
    caption_prompt,
    closed_prompt,
    mcq_answer,
    mcq_prompt,
    open_prompt,
    report_prompt,
)
from doctorsun.data.records import detect_lang, image_paths
from doctorsun.errors import DoctorSunError

LETTERS = string.ascii_uppercase
ITEM_ERRORS = (ValueError, KeyError, AttributeError, TypeError, IndexError)
"""What a malformed item raises while a converter reads it: that item is skipped and reported."""


@dataclass
class ConvertResult:
    """SunMed-VL records from one split of a public set, and what had to be skipped."""

    records: list[dict]
    """The converted records (image paths relative to ``image_root``)."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """``(item id or index, reason)`` for every item that was skipped."""
    image_root: Path | None = None
    """Folder the records' image paths are relative to (None for text-only sets)."""
    split: str | None = None
    """The split that was read (None when the set has none)."""
    name: str = ""
    """The converter that produced this."""
    notes: list[tuple[str, str]] = field(default_factory=list)
    """``(record id, what was done)`` for items kept with a change, e.g. an id made up for a row without one."""


class Collector:
    """Gathers records and problems while a converter walks the items; ids are made unique."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.problems: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []
        self._ids: dict[str, int] = {}

    def ident(self, prefix: str, value, index: int) -> str:
        """``prefix-value``; a row without an id gets ``prefix-itemN`` (unique, and reported in ``notes``)."""
        value = text(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
        if value and value not in ("None", "NULL"):
            return f"{prefix}-{value}"
        rid = f"{prefix}-item{index}"
        self.notes.append((rid, "the row has no id; named by its position"))
        return rid

    def add(self, record: dict) -> None:
        rid = record["id"]
        if "\ufffd" in json.dumps(record, ensure_ascii=False):
            raise ValueError("holds bytes that were not UTF-8 text")
        for path in image_paths(record):
            if Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(f"image path {path!r} leaves the set's image folder")
        n = self._ids.get(rid, 0) + 1
        self._ids[rid] = n
        if n > 1:  # a set that repeats an id must not make two records indistinguishable
            record["id"] = f"{rid}#{n}"
        self.records.append(record)

    def skip(self, where, reason: str) -> None:
        self.problems.append((str(where), reason))

    def result(self, name: str, split: str | None, image_root: Path | None) -> ConvertResult:
        if image_root is not None:
            self._refuse_escapes(Path(image_root))
        return ConvertResult(self.records, self.problems, image_root, split, name, self.notes)

    def _refuse_escapes(self, root: Path) -> None:
        """Drop records whose image is a link that leads outside the set's image folder (reported)."""
        inside = root.resolve()
        escapes: dict[str, bool] = {}  # one look-up per image, however many questions share it

        def escaping(path: str) -> bool:
            if path not in escapes:
                full = root / path
                escapes[path] = full.is_symlink() and not full.resolve().is_relative_to(inside)
            return escapes[path]

        kept = []
        for record in self.records:
            bad = next((p for p in image_paths(record) if escaping(p)), None)
            if bad is None:
                kept.append(record)
            else:
                self.skip(record["id"], f"image {bad!r} is a link that leaves the set's image folder")
        self.records = kept


def text(value) -> str:
    """A cell as clean text: numbers become strings (VQA-RAD has a few int answers), None -> ''."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from an empty CSV cell
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected text, found {type(value).__name__}")
    return str(value).strip()


def yes_no(answer: str, lang: str) -> str | None:
    """The canonical yes/no gold in the record's language (``yes``/``no`` or ``是``/``否``), or None."""
    key = answer.strip().rstrip(".。").lower()
    if key in ("yes", "是"):
        return "yes" if lang == "en" else "是"
    if key in ("no", "否"):
        return "no" if lang == "en" else "否"
    return None


def vqa_record(rid: str, question: str, answer: str, *, source: str, lang: str, image: str | list[str] | None,
               answer_type: str | None = None, meta: dict | None = None) -> dict:
    """A VQA record: yes/no golds get the closed prompt; ``task`` follows the set's ``answer_type``
    where it has one (VQA-RAD marks some non-yes/no questions CLOSED) and yes/no otherwise."""
    if not question:
        raise ValueError("empty question")
    if not answer:
        raise ValueError("empty answer")
    if answer_type not in (None, "OPEN", "CLOSED"):
        raise ValueError(f"unknown answer_type {answer_type!r}")
    gold = yes_no(answer, lang)
    prompt = closed_prompt(question, lang) if gold else open_prompt(question, lang)
    closed = answer_type == "CLOSED" if answer_type else gold is not None
    record = {"id": rid, "image": image, "conversations": _turns(prompt, gold or answer, image),
              "lang": lang, "source": source, "task": "vqa-closed" if closed else "vqa-open",
              "answer_type": answer_type or ("CLOSED" if gold else "OPEN")}
    if image is None:
        del record["image"]
    return _with_meta(record, meta)


def mcq_record(rid: str, question: str, choices: list[str], gold: list[int], *, source: str, lang: str,
               image: str | list[str] | None = None, meta: dict | None = None) -> dict:
    """An MCQ record; the gold letters are also kept in ``meta["answer_letters"]`` (``"ABC"`` for a
    several-answer item, whose gpt turn lists each chosen option on its own line)."""
    if not question:
        raise ValueError("empty question")
    if len(choices) < 2 or not all(choices):
        raise ValueError(f"needs at least two non-empty options, found {choices}")
    if not gold or any(not 0 <= g < len(choices) for g in gold):
        raise ValueError(f"the answer names no option (options {LETTERS[:len(choices)]})")
    reply = "\n".join(mcq_answer(choices, g) for g in sorted(set(gold)))
    record = {"id": rid, "image": image,
              "conversations": _turns(mcq_prompt(question, choices, lang), reply, image),
              "lang": lang, "source": source, "task": "mcq", "answer_type": "CLOSED", "choices": choices}
    if image is None:
        del record["image"]
    meta = dict(meta or {})
    meta["answer_letters"] = "".join(LETTERS[g] for g in sorted(set(gold)))
    return _with_meta(record, meta)


def report_record(rid: str, report: str, images: list[str], *, source: str, lang: str,
                  meta: dict | None = None) -> dict:
    """A report-generation record: the study's images, the report request, the report."""
    if not report:
        raise ValueError("empty report section")
    if not images:
        raise ValueError("no image")
    record = {"id": rid, "image": images, "conversations": _turns(report_prompt(lang), report, images),
              "lang": lang, "source": source, "task": "report"}
    return _with_meta(record, meta)


def caption_record(rid: str, caption: str, *, source: str, image: str, lang: str | None = None,
                   meta: dict | None = None) -> dict:
    if not caption:
        raise ValueError("empty caption")
    lang = lang or detect_lang(caption)
    record = {"id": rid, "image": image, "conversations": _turns(caption_prompt(lang), caption, image),
              "lang": lang, "source": source, "task": "caption"}
    return _with_meta(record, meta)


def letters_to_indices(letters: str, n_choices: int) -> list[int]:
    """``"ABD"`` -> ``[0, 1, 3]``; raises ValueError for a letter outside the options."""
    letters = re.sub(r"[\s,，、;；]", "", letters.upper())
    if not letters:
        raise ValueError("no answer letter")
    if any(c not in LETTERS[:n_choices] for c in letters):
        raise ValueError(f"answer {letters!r} names no option among {LETTERS[:n_choices]}")
    return [LETTERS.index(c) for c in letters]


def choices_from_letter_dict(options: dict) -> list[str]:
    """``{"A": .., "B": ..}`` -> the option texts in letter order; trailing empty options dropped
    (CMB pads to E); a gap before a filled option would shift the letters, so it is an error."""
    if not isinstance(options, dict):
        raise ValueError("options must be an object of letter -> text")
    texts = [text(options.get(letter)) for letter in LETTERS[: len(options)]]
    if set(options) != set(LETTERS[: len(options)]):
        raise ValueError(f"option letters {sorted(options)} are not A, B, C...")
    while texts and not texts[-1]:
        texts.pop()
    if not all(texts):
        raise ValueError("an option before the last one is empty")
    return texts


def _turns(prompt: str, answer: str, image: str | list[str] | None) -> list[dict]:
    """The two turns; one placeholder per image goes first, unless the prompt already places them
    (MMMU's questions hold theirs inline)."""
    n_images = len(image) if isinstance(image, list) else int(bool(image))
    missing = n_images - prompt.count(IMAGE_TOKEN)
    return [{"from": "human", "value": (IMAGE_TOKEN + "\n") * missing + prompt if missing > 0 else prompt},
            {"from": "gpt", "value": answer}]


def _with_meta(record: dict, meta: dict | None) -> dict:
    meta = {k: v for k, v in (meta or {}).items() if v is not None and v != "NULL"}
    if meta:
        record["meta"] = meta
    return record


# ------------------------------------------------------------------------------------- safe readers
def read_json(path: Path):
    """A whole JSON file (BOM skipped; bytes that are not UTF-8 are replaced and their items skipped)."""
    return load_json(path)


def read_jsonl(path: Path, collector: Collector) -> list[tuple[str, dict]]:
    """Rows of a JSONL file with their line labels; a bad line (not UTF-8, not JSON, nested too deeply,
    not an object) becomes a problem and the rest load."""
    rows = []
    for label, item, problem in json_lines(path):
        if problem is None and not isinstance(item, dict):
            problem = f"not a JSON object but {type(item).__name__}"
        if problem:
            collector.skip(label, problem)
        else:
            rows.append((label, item))
    return rows


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV (BOM skipped; bytes that are not UTF-8 become U+FFFD and their rows are skipped)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        return list(csv.DictReader(f))


class _PlainUnpickler(pickle.Unpickler):
    """Only lists, dicts, strings and numbers: a pickle that asks for any class is refused, because
    unpickling arbitrary classes runs arbitrary code."""

    ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain data is allowed)")


def load_plain_pickle(path: Path):
    try:
        return _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DoctorSunError(f"cannot read {path} as plain-data pickle: {exc}") from exc


def find_one(root: Path, patterns: list[str], what: str) -> Path:
    """The first file under ``root`` matching one of ``patterns`` (in order), or a clear error."""
    for pattern in patterns:
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    raise DoctorSunError(f"no {what} under {root} (looked for {', '.join(patterns)})")


def need_split(split: str, known: tuple[str, ...], name: str) -> str:
    if split not in known:
        raise DoctorSunError(f"{name} has no split {split!r} (known: {', '.join(known)})")
    return split
