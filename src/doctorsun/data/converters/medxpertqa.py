"""MedXpertQA (Zuo et al., 2025), expert-level medical questions: ``{Text,MM}/{dev,test}.jsonl`` with
``id, question, options {"A": ..}, label, images, medical_task, body_system, question_type``, and the
MM subset's pictures under ``images/``. Text questions have ten options (A-J), MM questions five. The
``question`` field ends with its own "Answer Choices: (A) ..." list; that list is dropped, the options
are given once by the prompt builder."""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    choices_from_letter_dict,
    letters_to_indices,
    mcq_record,
    need_split,
    read_jsonl,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "medxpertqa"
SPLITS = ("dev", "test")
SUBSETS = ("MM", "Text")
_CHOICES = re.compile(r"\s*Answer Choices:.*\Z", re.S)


def convert(src: Path, split: str, subset: str = "MM", image_dir: str | None = None) -> ConvertResult:
    """Options: ``subset`` MM (default, with images) or Text; ``image_dir`` where the images are (default
    ``images/`` beside the subset folders). Splits: dev, test. ``src`` is the release root or one JSONL."""
    if subset not in SUBSETS:
        raise DoctorSunError(f"medxpertqa: subset must be MM or Text, not {subset!r}")
    if src.is_file():
        path, split, root = src, src.stem, src.parent.parent
    else:
        need_split(split, SPLITS, SOURCE)
        path, root = src / subset / f"{split}.jsonl", src
        if not path.is_file():
            raise DoctorSunError(f"medxpertqa: no {subset}/{split}.jsonl under {src}")
    image_root = Path(image_dir) if image_dir else root / "images"
    out = Collector()
    has_images = False
    for where, row in read_jsonl(path, out):
        try:
            choices = choices_from_letter_dict(row["options"])
            gold = letters_to_indices(text(row.get("label")), len(choices))
            images = [text(i) for i in row.get("images") or []]
            for name in images:
                if not (image_root / name).is_file():
                    raise ValueError(f"image {name!r} not found in {image_root}")
            has_images = has_images or bool(images)
            question = _CHOICES.sub("", text(row.get("question")))
            meta = {"medical_task": text(row.get("medical_task")) or None,
                    "body_system": text(row.get("body_system")) or None,
                    "question_type": text(row.get("question_type")) or None, "subset": subset}
            out.add(mcq_record(f"{SOURCE}-{text(row.get('id')) or where.split()[-1]}", question, choices, gold,
                               source=SOURCE, lang="en", image=images or None, meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(text(row.get("id")) or where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, image_root if has_images else None)
