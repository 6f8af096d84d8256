"""CMMLU (Li et al., 2023), 67 subjects of Chinese general knowledge, and C-Eval (Huang et al., 2023),
52 subjects of Chinese exams: four options each.

CMMLU: ``{dev,test}/{subject}.csv`` with header ``,Question,A,B,C,D,Answer``.
C-Eval: ``{dev,val,test}/{subject}_{split}.csv`` with header ``id,question,A,B,C,D,answer,explanation``;
its test answers are withheld (scored by the authors' server), so ``val`` is the split to score here.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
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
SOURCE = "cmmlu"
SPLITS = ("dev", "test")


def convert(src: Path, split: str, subjects: list[str] | None = None) -> ConvertResult:
    """Option: ``subjects`` keeps only those subjects (e.g. ``[clinical_knowledge]``). Splits: dev, test.
    ``src`` is the release root (holding ``test/``) or one subject CSV."""
    return read_exam(src, split, subjects, SOURCE, SPLITS, "{subject}.csv",
                     {"question": "Question", "answer": "Answer"})


def read_exam(src: Path, split: str, subjects: list[str] | None, source: str, splits: tuple[str, ...],
              pattern: str, columns: dict[str, str]) -> ConvertResult:
    """A folder of per-subject CSVs with ``A..D`` option columns (CMMLU, C-Eval)."""
    wanted = set(subjects or [])
    suffix = pattern.format(subject="").format(split=split)
    if src.is_file():
        files = [src]
    else:
        need_split(split, splits, source)
        files = sorted((src / split).glob(pattern.format(subject="*").format(split=split)))
        if not files:
            raise DoctorSunError(f"{source}: no {split}/{pattern.format(subject='*').format(split=split)} "
                                 f"under {src}")
    out = Collector()
    for path in files:
        subject = path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem
        if wanted and subject not in wanted:
            continue
        for i, row in enumerate(read_csv(path)):
            try:
                choices = [text(row.get(k)) for k in "ABCD"]
                answer = text(row.get(columns["answer"]))
                if not answer:
                    raise ValueError("no answer (the split's answers may be withheld)")
                gold = letters_to_indices(answer, 4)
                if len(gold) != 1:
                    raise ValueError(f"answer {answer!r} should be one letter")
                out.add(mcq_record(f"{source}-{split}-{subject}-{i}", text(row.get(columns["question"])), choices,
                                   gold, source=source, lang="zh", meta={"subject": subject}))
            except ITEM_ERRORS as exc:
                out.skip(f"{path.name} row {i + 2}", str(exc) or type(exc).__name__)
    return out.result(source, split, None)
