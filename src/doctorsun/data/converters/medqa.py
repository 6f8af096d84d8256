"""MedQA (Jin et al., 2021): JSONL rows ``question, options {"A": ..}, answer (text), answer_idx
(letter), meta_info``; the release keeps them as ``data_clean/questions/{US,Mainland,Taiwan}/{split}.jsonl``
(and a ``US/4_options/`` copy). Chinese (Mainland) questions become ``zh`` records."""

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
    read_jsonl,
    text,
)
from doctorsun.data.records import detect_lang
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "medqa"
SPLITS = ("train", "dev", "test")


def convert(src: Path, split: str, region: str = "US", options: int | None = None) -> ConvertResult:
    """Options: ``region`` US (default), Mainland or Taiwan; ``options`` 4 reads the 4-option US copy.
    Splits: train, dev, test. ``src`` is the MedQA root or one JSONL file."""
    if src.is_file():
        path, split = src, src.stem
    else:
        need_split(split, SPLITS, SOURCE)
        if options not in (None, 4, 5):
            raise DoctorSunError("medqa: options must be 4 or 5")
        sub = f"{region}/4_options" if options == 4 else region
        name = f"phrases_no_exclude_{split}.jsonl" if options == 4 else f"{split}.jsonl"
        path = find_one(src, [f"{sub}/{name}", f"**/questions/{sub}/{name}", f"**/{sub}/{name}"],
                        f"{sub}/{name}")
    out = Collector()
    for where, row in read_jsonl(path, out):
        try:
            choices = choices_from_letter_dict(row["options"])
            letter = text(row.get("answer_idx"))
            gold = letters_to_indices(letter, len(choices))
            if len(gold) != 1:
                raise ValueError(f"answer_idx {letter!r} should be one letter")
            question = text(row.get("question"))
            meta = {"answer_idx": letter, "answer": text(row.get("answer")),
                    "meta_info": row.get("meta_info")}
            out.add(mcq_record(f"{SOURCE}-{split}-{where.split()[-1]}", question, choices, gold,
                               source=SOURCE,
                               lang=detect_lang(question), meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, None)
