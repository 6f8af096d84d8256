"""MMMU (Yue et al., 2024), college-level multimodal questions; the medical subjects by default.

The Hugging Face release: ``{Subject}/{dev,validation,test}-*.parquet`` with ``id, question, options``
(a Python-list string), ``explanation, image_1 .. image_7`` (image structs or null), ``img_type, answer,
topic_difficulty, question_type`` (``multiple-choice`` or ``open``) and ``subfield``. Questions and
options refer to their images as ``<image N>``: the pictures referred to are given once each, in
number order, before the question (where every image goes at inference), and each reference, in an
option too, reads ``image K`` with K the picture's position. Open questions keep every accepted answer
(``answer`` may be a list string) in ``meta.answers``. The test split's answers are withheld: score ``validation``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from doctorsun.data.converters import parquet
from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    LETTERS,
    Collector,
    ConvertResult,
    mcq_record,
    need_split,
    text,
    vqa_record,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "validation"
SOURCE = "mmmu"
SPLITS = ("dev", "validation", "test")
MEDICAL = ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
           "Public_Health")
"""The Health & Medicine discipline: MMMU-Med."""
_REF = re.compile(r"<image (\d+)>")


def convert(src: Path, split: str, subjects: list[str] | None = None, extract_to: str | None = None) -> ConvertResult:
    """Options: ``subjects`` (default the five Health & Medicine subjects; ``[all]`` every subject found);
    ``extract_to`` the folder for the decoded images (default ``images/`` under ``src``). ``src`` is the
    release root holding one folder per subject."""
    need_split(split, SPLITS, SOURCE)
    if not src.is_dir():
        raise DoctorSunError(f"mmmu: {src} is not the release folder (one folder per subject)")
    wanted = sorted(p.name for p in src.iterdir() if p.is_dir()) if subjects == ["all"] else list(subjects or MEDICAL)
    image_root = Path(extract_to) if extract_to else src / "images"
    out = Collector()
    found = False
    for subject in wanted:
        shards = sorted((src / subject).glob(f"{split}-*.parquet"))
        found = found or bool(shards)
        for shard in shards:
            for i, row in enumerate(parquet.read_rows([shard])):
                try:
                    out.add(_record(row, subject, split, image_root))
                except ITEM_ERRORS as exc:
                    out.skip(text(row.get("id")) or f"{shard.name} row {i}", str(exc) or type(exc).__name__)
    if not found:
        raise DoctorSunError(f"mmmu: no {{subject}}/{split}-*.parquet under {src} for {', '.join(wanted)}")
    return out.result(SOURCE, split, image_root)


def _record(row: dict, subject: str, split: str, image_root: Path) -> dict:
    qid = text(row.get("id"))
    if not qid:
        raise ValueError("no id")
    question = text(row.get("question"))
    options = [text(o) for o in _list(row.get("options"))]
    numbers = sorted({int(n) for part in (question, *options) for n in _REF.findall(part)})
    images = []
    for n in numbers:
        cell = row.get(f"image_{n}")
        if not cell:
            raise ValueError(f"<image {n}> has no image_{n}")
        images.append(f"{subject}/{parquet.extract_image(cell, image_root / subject, f'{qid}_{n}')}")
    if not images:
        raise ValueError("no <image N> reference in the question or options")
    # The pictures go first (as every image does at inference); the text names them by position.
    position = {n: k for k, n in enumerate(numbers, 1)}

    def named(part: str) -> str:
        return _REF.sub(lambda m: f"image {position[int(m.group(1))]}", part)

    question, options = named(question), [named(o) for o in options]
    answer = row.get("answer")
    meta = {"subject": subject, "subfield": text(row.get("subfield")) or None,
            "img_type": text(row.get("img_type")) or None,
            "topic_difficulty": text(row.get("topic_difficulty")) or None,
            "question_type": text(row.get("question_type")) or None}
    rid = f"{SOURCE}-{split}-{qid}"
    if meta["question_type"] == "multiple-choice":
        letter = text(answer)
        if letter not in LETTERS[:len(options)]:
            raise ValueError(f"answer {letter!r} names no option among {LETTERS[:len(options)]}")
        return mcq_record(rid, question, options, [LETTERS.index(letter)], source=SOURCE, lang="en", image=images,
                          meta=meta)
    answers = [text(a) for a in (_list(answer) if text(answer).startswith("[") else [answer])]
    if not answers or not all(answers):
        raise ValueError("open question without an answer")
    meta["answers"] = answers
    return vqa_record(rid, question, answers[0], source=SOURCE, lang="en", image=images, answer_type="OPEN",
                      meta=meta)


def _list(value) -> list:
    """A list cell, or the Python-list string MMMU stores (``"['1', '2']"``)."""
    if isinstance(value, list):
        return value
    try:
        parsed = ast.literal_eval(text(value)) if text(value) else []
    except (ValueError, SyntaxError):
        raise ValueError(f"not a list: {text(value)[:60]!r}") from None
    if not isinstance(parsed, list):
        raise ValueError(f"not a list: {text(value)[:60]!r}")
    return parsed
