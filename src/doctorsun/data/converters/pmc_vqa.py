"""PMC-VQA (Zhang et al., 2023): CSV files beside the image folder, multiple choice with four options.

Version 1 (``train.csv``, ``test.csv``, ``test_clean.csv``): ``Figure_path, Question, Answer,
Choice A..D`` ("A:text"), ``Answer_label``; the dataset card spells the answer column ``Anwser``, so
both spellings are read. Version 2 (``train_2.csv``, ``test_2.csv``): ``index, Figure_path, Caption,
Question, Choice A..D, Answer`` (the letter), ``split``. Images: ``images/`` (v1), ``images_2/`` or
``figures/`` (v2).
"""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.data.converters.base import ITEM_ERRORS, Collector, ConvertResult, mcq_record, read_csv, text
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "pmc-vqa"
IMAGE_DIRS = ("images", "images_2", "figures")
_CHOICE_PREFIX = re.compile(r"^\s*[A-D]\s*[:：.]\s*")


def convert(src: Path, split: str, version: int | None = None,
            image_dir: str | Path | None = None) -> ConvertResult:
    """Options: ``version`` 1 or 2 (default: v1 when ``{split}.csv`` exists, else v2's
    ``{split}_2.csv``); ``image_dir`` (default: the first of images/, images_2/, figures/ that exists).
    Splits: train, test, test_clean (v1). ``src`` is the folder or one CSV file."""
    csv_path = src if src.is_file() else _csv_for(src, split, version)
    root = csv_path.parent
    image_root = Path(image_dir) if image_dir else next(
        (root / d for d in IMAGE_DIRS if (root / d).is_dir()), root / "images")
    rows = read_csv(csv_path)
    out = Collector()
    for i, row in enumerate(rows):
        try:
            out.add(_record(row, i, csv_path.stem))
        except ITEM_ERRORS as exc:
            out.skip(f"row {i + 2}", str(exc) or type(exc).__name__)  # +2: header line, 1-based
    return out.result(SOURCE, csv_path.stem, image_root)


def _csv_for(src: Path, split: str, version: int | None) -> Path:
    candidates = {1: [f"{split}.csv"], 2: [f"{split}_2.csv"], None: [f"{split}.csv", f"{split}_2.csv"]}
    if version not in candidates:
        raise DoctorSunError(f"pmc-vqa: version must be 1 or 2, not {version!r}")
    for name in candidates[version]:
        if (src / name).is_file():
            return src / name
    raise DoctorSunError(f"pmc-vqa: no {' or '.join(candidates[version])} in {src}")


def _record(row: dict, i: int, stem: str) -> dict:
    choices = [_CHOICE_PREFIX.sub("", text(row.get(f"Choice {c}"))).strip() for c in "ABCD"]
    while choices and not choices[-1]:
        choices.pop()
    letter = text(row.get("Answer_label") or row.get("Anwser_label"))
    answer_text = text(row.get("Answer") or row.get("Anwser"))
    if not letter and len(answer_text) == 1:  # v2: Answer holds the letter
        letter = answer_text
    if len(letter) != 1 or not "A" <= letter.upper() <= "Z":
        raise ValueError(f"no answer letter (Answer_label={letter!r})")
    image = text(row.get("Figure_path"))
    if not image:
        raise ValueError("no Figure_path")
    meta = {"figure_path": image, "answer_label": letter.upper(), "answer": answer_text or None,
            "caption": text(row.get("Caption")) or None, "index": text(row.get("index")) or None}
    rid = f"{SOURCE}-{stem}-{text(row.get('index')) or i}"
    return mcq_record(rid, text(row.get("Question")), choices, [ord(letter.upper()) - ord("A")],
                      source=SOURCE, lang="en", image=image, meta=meta)
