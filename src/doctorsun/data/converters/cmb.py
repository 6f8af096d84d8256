"""CMB-Exam (Wang et al., 2023), Chinese medical exam questions.

Layout: ``CMB-Exam/CMB-test/CMB-test-choice-question-merge.json`` (no answers: those were published
separately as ``CMB-test-choice-answer.json``, ``[{"id", ..., "answer"}]``), ``CMB-val/CMB-val-merge.json``
and ``CMB-train/CMB-train-merge.json`` (answers inside). Items: ``exam_type, exam_class, exam_subject,
question, answer ("D" or "ABC"), question_type (单项选择题 / 多项选择题), option {"A": .., "E": ..}``.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    choices_from_letter_dict,
    find_one,
    letters_to_indices,
    mcq_record,
    need_split,
    read_json,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "cmb"
FILES = {"test": "CMB-test/CMB-test-choice-question-merge.json", "val": "CMB-val/CMB-val-merge.json",
         "train": "CMB-train/CMB-train-merge.json"}
ANSWERS = "CMB-test-choice-answer.json"
META_FIELDS = ("exam_type", "exam_class", "exam_subject", "question_type", "id", "explanation")


def convert(src: Path, split: str, answers: str | Path | None = None) -> ConvertResult:
    """Options: ``answers`` (the test answers file; default: ``CMB-test-choice-answer.json`` found
    under ``src``). Splits: test, val, train. ``src`` is the CMB folder (or CMB-Exam, or one file)."""
    if src.is_file():
        path, root = src, src.parent
    else:
        need_split(split, tuple(FILES), SOURCE)
        path = find_one(src, [FILES[split], f"CMB-Exam/{FILES[split]}", f"**/{Path(FILES[split]).name}"],
                        Path(FILES[split]).name)
        root = src
    items = read_json(path)
    if not isinstance(items, list):
        raise DoctorSunError(f"cmb: {path} should hold a JSON list")
    gold = _answers(answers, root) if any("answer" not in i for i in items if isinstance(i, dict)) else {}
    out = Collector()
    for i, item in enumerate(items):
        where = item.get("id", f"item {i}") if isinstance(item, dict) else f"item {i}"
        try:
            letters = text(item.get("answer")) or gold.get(str(item.get("id")), "")
            if not letters:
                raise ValueError("no answer (give the test answers file as answers=...)")
            out.add(_record(item, letters, split, i))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, None)


def _answers(answers, root: Path) -> dict[str, str]:
    if answers:
        path = Path(answers)
    else:
        hits = sorted(root.glob(f"**/{ANSWERS}")) + sorted(root.parent.glob(ANSWERS))
        if not hits:
            return {}
        path = hits[0]
    return {str(a["id"]): text(a.get("answer")) for a in read_json(path) if isinstance(a, dict) and "id" in a}


def _record(item: dict, letters: str, split: str, index: int) -> dict:
    choices = choices_from_letter_dict(item["option"])
    gold = letters_to_indices(letters, len(choices))
    meta = {k: item.get(k) for k in META_FIELDS}
    rid = f"{SOURCE}-{split}-{item.get('id', index)}"
    return mcq_record(rid, text(item.get("question")), choices, gold, source=SOURCE, lang="zh", meta=meta)
