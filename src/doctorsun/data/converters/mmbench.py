"""MMBench (Liu et al., 2024), general multimodal skills, English and Chinese (MMBench-CN).

Published as TSV files (``MMBench_DEV_EN.tsv``, ``MMBench_DEV_CN.tsv``, ``mmbench_dev_20230712.tsv``...)
with ``index, question, hint, A, B, C, D, answer, category, l2-category, image`` (base64) and sometimes
``source, split, comment``. Questions have two to four options (empty ``C``/``D`` cells). An ``image``
cell that holds a short number instead of base64 points at the row of that ``index`` (the files store a
shared image once). A ``hint`` goes before the question, as in the authors' prompt. Test files carry no
answers: every test row is reported as skipped.

Images are decoded once into ``extract_to`` (default ``<file stem>_images`` beside each TSV). Circular
evaluation (every rotation of the options asked) is done by ``doctorsun eval --bench mmbench``, not here.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import sys
from pathlib import Path

from PIL import Image

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    LETTERS,
    Collector,
    ConvertResult,
    mcq_record,
    text,
)
from doctorsun.data.records import detect_lang
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "dev"
SOURCE = "mmbench"
LANGS = {"en": "EN", "zh": "CN"}
REF_MAX = 64
"""An ``image`` cell this short is a reference to another row's image, not base64 data."""


def convert(src: Path, split: str, lang: str = "all", extract_to: str | None = None) -> ConvertResult:
    """Options: ``lang`` en / zh / all (which of the folder's ``*_{SPLIT}_EN`` / ``_CN`` files are read);
    ``extract_to`` the folder for the decoded images. ``src`` is one TSV file or a folder of them."""
    if lang not in (*LANGS, "all"):
        raise DoctorSunError(f"mmbench: lang must be en, zh or all, not {lang!r}")
    if src.is_file():
        files = [src]
    else:
        tag = split.upper()
        files = [f for f in sorted(src.glob("*.tsv")) if f"_{tag}" in f.stem.upper()
                 and (lang == "all" or f.stem.upper().endswith(f"_{LANGS[lang]}"))]
        if not files:
            raise DoctorSunError(f"mmbench: no *_{tag}_EN.tsv / *_{tag}_CN.tsv under {src}")
    out = Collector()
    root = Path(extract_to) if extract_to else (src if src.is_dir() else src.parent)
    for path in files:
        folder = f"{path.stem}_images"
        _read(path, root / folder, folder, out)
    return out.result(SOURCE, split, root)


def _read(path: Path, image_dir: Path, folder: str, out: Collector) -> None:
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's default limit
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    images = {text(r.get("index")): r.get("image") or "" for r in rows}
    for i, row in enumerate(rows):
        index = text(row.get("index"))
        where = f"{path.name} index {index or i}"
        try:
            choices = [text(row.get(k)) for k in "ABCD"]
            while choices and not choices[-1]:
                choices.pop()
            answer = text(row.get("answer"))
            if not answer:
                raise ValueError("no answer (a test file's answers are withheld)")
            if answer not in LETTERS[:len(choices)]:
                raise ValueError(f"answer {answer!r} names no option among {LETTERS[:len(choices)]}")
            question = stem = text(row.get("question"))
            hint = text(row.get("hint"))
            if hint and hint.lower() != "nan":
                question = f"{hint}\n{question}"
            lang = detect_lang(question + "".join(choices))
            image = _image(images, index, image_dir, f"{index}")
            meta = {"index": index, "category": text(row.get("category")) or None,
                    "l2_category": text(row.get("l2-category")) or None, "source": text(row.get("source")) or None,
                    "question_without_hint": stem}  # what the authors' answer matching quotes
            out.add(mcq_record(f"{SOURCE}-{path.stem}-{index}", question, choices, [LETTERS.index(answer)],
                               source=SOURCE, lang=lang, image=f"{folder}/{image}", meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)


def _image(images: dict[str, str], index: str, out_dir: Path, stem: str) -> str:
    """Decode the row's base64 image (following a reference to another row) to ``out_dir``; its name."""
    data = images.get(index, "")
    seen = {index}
    while 0 < len(data) <= REF_MAX and data.strip() in images and data.strip() not in seen:
        seen.add(data.strip())
        stem, data = data.strip(), images[data.strip()]
    if not data:
        raise ValueError("no image")
    try:
        raw = base64.b64decode(data, validate=False)
        with Image.open(io.BytesIO(raw)) as im:
            suffix = {"JPEG": ".jpg", "PNG": ".png"}.get(im.format or "", ".png")
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"image is not a base64-encoded picture ({exc})") from None
    path = out_dir / f"{stem}{suffix}"
    if not (path.is_file() and path.stat().st_size == len(raw)):
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    return path.name
