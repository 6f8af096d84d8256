"""SLAKE 1.0 (Liu et al., 2021): ``{train,validate,test}.json`` beside ``imgs/xmlabN/source.jpg``.

Each split mixes English and Chinese questions (``q_lang``); records keep that language, so the
Chinese yes/no golds are 是/否.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    need_split,
    read_json,
    text,
    vqa_record,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "slake"
FILES = {"train": "train.json", "validate": "validate.json", "test": "test.json"}
META_FIELDS = ("q_lang", "modality", "location", "content_type", "base_type", "img_id", "qid")


def convert(src: Path, split: str, lang: str | None = None) -> ConvertResult:
    """Options: ``lang`` (``en`` or ``zh``) keeps one language only. Splits: train, validate, test.
    ``src`` is the Slake1.0 folder (or one of its split files)."""
    if src.is_file():
        path, root = src, src.parent
        split = src.stem
    else:
        need_split(split, tuple(FILES), SOURCE)
        path, root = src / FILES[split], src
    if lang not in (None, "en", "zh"):
        raise DoctorSunError(f"slake: lang must be en or zh, not {lang!r}")
    if not path.is_file():
        raise DoctorSunError(f"slake: {path} not found")
    rows = read_json(path)
    out = Collector()
    for i, row in enumerate(rows):
        where = row.get("qid", f"item {i}") if isinstance(row, dict) else f"item {i}"
        try:
            q_lang = text(row.get("q_lang"))
            if q_lang not in ("en", "zh"):
                raise ValueError(f"unknown q_lang {row.get('q_lang')!r}")
            if lang and q_lang != lang:
                continue
            meta = {k: row.get(k) for k in META_FIELDS}
            meta["answer"] = text(row.get("answer"))
            image = text(row.get("img_name"))
            if not image:
                raise ValueError("no img_name")
            out.add(vqa_record(out.ident(f"{SOURCE}-{split}", row.get("qid"), i), text(row.get("question")),
                               text(row.get("answer")),
                               source=SOURCE, lang=q_lang, image=image,
                               answer_type=text(row.get("answer_type")).upper() or None, meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, root / "imgs")
