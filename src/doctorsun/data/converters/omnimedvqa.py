"""OmniMedVQA (Hu et al., 2024): ``QA_information/{Open,Restricted}-access/<Dataset>.json`` + ``Images/``.

Every item is a multiple-choice question with 2-4 options (``option_C``/``option_D`` may be absent) and
the gold as option text (``gt_answer``); ``image_path`` is relative to the set's root. One file uses
``modality`` where the others use ``modality_type``. There is no split: the whole set is a test set.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import ITEM_ERRORS, Collector, ConvertResult, mcq_record, read_json, text
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "omnimedvqa"
ACCESS = {"open": ("Open-access",), "restricted": ("Restricted-access",),
          "all": ("Open-access", "Restricted-access")}


def convert(src: Path, split: str, access: str = "all", dataset: str | None = None) -> ConvertResult:
    """Options: ``access`` open / restricted / all; ``dataset`` keeps one sub-dataset (its JSON file
    stem, e.g. ``ACRIMA``). ``src`` is the OmniMedVQA root (or one QA JSON file)."""
    if split not in ("test", "all"):
        raise DoctorSunError(f"omnimedvqa has no split {split!r}: it is one test set (use test)")
    if access not in ACCESS:
        raise DoctorSunError(f"omnimedvqa: access must be one of {', '.join(ACCESS)}")
    if src.is_file():
        files, root = [src], src.parents[2]
    else:
        root = src
        files = [f for folder in ACCESS[access] for f in sorted((src / "QA_information" / folder).glob("*.json"))]
        if not files:
            raise DoctorSunError(f"omnimedvqa: no QA_information/*-access/*.json under {src}")
    if dataset:
        files = [f for f in files if f.stem == dataset]
        if not files:
            raise DoctorSunError(f"omnimedvqa: no sub-dataset {dataset!r}")
    out = Collector()
    for path in files:
        access_name = path.parent.name
        for i, row in enumerate(read_json(path)):
            where = f"{path.name} item {i}"
            if isinstance(row, dict):
                where = row.get("question_id", where)
            try:
                out.add(_record(row, access_name))
            except ITEM_ERRORS as exc:
                out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, "test", root)


def _record(row: dict, access: str) -> dict:
    choices = [text(row.get(f"option_{c}")) for c in "ABCD" if text(row.get(f"option_{c}"))]
    gold = text(row.get("gt_answer"))
    folded = [c.casefold() for c in choices]
    if gold not in choices and gold.casefold() in folded:  # a few golds differ from the option in case
        gold = choices[folded.index(gold.casefold())]
    if gold not in choices:
        raise ValueError(f"gt_answer {gold!r} is not among the options {choices}")
    image = text(row.get("image_path"))
    if not image:
        raise ValueError("no image_path")
    meta = {"question_id": row.get("question_id"), "dataset": row.get("dataset"),
            "question_type": row.get("question_type"),
            "modality_type": row.get("modality_type") or row.get("modality"),
            "gt_answer": gold, "access": access}
    return mcq_record(f"{SOURCE}-{text(row['question_id'])}", text(row.get("question")), choices,
                      [choices.index(gold)], source=SOURCE, lang="en", image=image, meta=meta)
