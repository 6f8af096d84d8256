"""CMExam (Liu et al., 2023), Chinese national medical licensing exam: ``data/{train,val,test}.csv`` with
``Question, Options, Answer, Explanation`` and annotation columns (``Disease Group, Clinical Department,
Medical Discipline, Competency, Difficulty level``). ``Options`` holds one ``"A 文本"`` per line;
``Answer`` is one or more letters."""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    LETTERS,
    Collector,
    ConvertResult,
    letters_to_indices,
    mcq_record,
    need_split,
    read_csv,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "cmexam"
SPLITS = ("train", "val", "test")
ANNOTATIONS = {"Disease Group": "disease_group", "Clinical Department": "clinical_department",
               "Medical Discipline": "medical_discipline", "Competency": "competency",
               "Difficulty level": "difficulty"}
_OPTION = re.compile(r"^\s*([A-Z])[\s.．、:：]+(.*\S)\s*$")


def convert(src: Path, split: str) -> ConvertResult:
    """Splits: train, val, test. ``src`` is the CMExam root (holding ``data/``) or one CSV file."""
    if src.is_file():
        path, split = src, src.stem
    else:
        need_split(split, SPLITS, SOURCE)
        path = next((p for p in (src / "data" / f"{split}.csv", src / f"{split}.csv") if p.is_file()), None)
        if path is None:
            raise DoctorSunError(f"cmexam: no data/{split}.csv under {src}")
    out = Collector()
    for i, row in enumerate(read_csv(path)):
        try:
            choices = parse_options(text(row.get("Options")))
            gold = letters_to_indices(text(row.get("Answer")), len(choices))
            meta = {key: text(row.get(col)) or None for col, key in ANNOTATIONS.items()}
            meta["explanation"] = text(row.get("Explanation")) or None
            out.add(mcq_record(f"{SOURCE}-{split}-{i}", text(row.get("Question")), choices, gold,
                               source=SOURCE,
                               lang="zh", meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(f"row {i + 2}", str(exc) or type(exc).__name__)  # +2: header line, 1-based
    return out.result(SOURCE, split, None)


def parse_options(options: str) -> list[str]:
    """``"A 胃溃疡\\nB 十二指肠溃疡"`` -> ``["胃溃疡", "十二指肠溃疡"]``; the letters must run A, B, C..."""
    choices = []
    for line in options.splitlines():
        if not line.strip():
            continue
        match = _OPTION.match(line)
        if not match or match.group(1) != LETTERS[len(choices)]:
            raise ValueError(f"option line {line.strip()!r} is not '{LETTERS[len(choices)]} text'")
        choices.append(match.group(2).strip())
    return choices
