"""C-Eval (Huang et al., 2023): ``{dev,val,test}/{subject}_{split}.csv``, header
``id,question,A,B,C,D,answer,explanation``; read by ``cmmlu.read_exam``."""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import ConvertResult
from doctorsun.data.converters.cmmlu import read_exam

DEFAULT_SPLIT = "val"
SOURCE = "ceval"
SPLITS = ("dev", "val", "test")


def convert(src: Path, split: str, subjects: list[str] | None = None) -> ConvertResult:
    """Option: ``subjects`` (e.g. ``[clinical_medicine, basic_medicine]``). Splits: dev, val, test (the
    test answers are withheld: every test row is reported as skipped). ``src`` is the release root or
    one subject CSV."""
    return read_exam(src, split, subjects, SOURCE, SPLITS, "{subject}_{{split}}.csv",
                     {"question": "question", "answer": "answer"})
