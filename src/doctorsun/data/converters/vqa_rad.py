"""VQA-RAD (Lau et al., 2018), as published on OSF, or the Hugging Face parquet copy.

Original: ``VQA_RAD Dataset Public.json`` (a list; ``phrase_type`` test_freeform / test_para marks the
451 test rows) beside ``VQA_RAD Image Folder/``. Its quirks: one ``qid`` is a string, a few answers are
ints, some ``answer_type`` values end in a space, unused fields hold the string "NULL".
Parquet copy (``flaviagiammarino/vqa-rad``): ``image, question, answer`` with no answer type, so closed
means a yes/no answer there.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters import parquet
from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    find_one,
    need_split,
    read_json,
    text,
    vqa_record,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "vqa-rad"
JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
META_FIELDS = ("image_organ", "question_type", "phrase_type", "qid_linked_id", "evaluation")


def convert(src: Path, split: str, image_dir: str | Path | None = None,
            extract_to: str | Path | None = None) -> ConvertResult:
    """Options: ``image_dir`` (original layout; default the image folder beside the JSON);
    ``extract_to`` (parquet layout; where images are written, default ``<src>/images/<split>``).
    Splits: ``test`` (phrase_type test_*), ``train`` (the rest), ``all``."""
    need_split(split, ("test", "train", "all"), SOURCE)
    if parquet.has_parquet(src) and not (src / JSON_NAME).exists():
        return _from_parquet(src, split, extract_to)
    json_path = src if src.is_file() else find_one(src, [JSON_NAME, f"*/{JSON_NAME}", "*.json"], JSON_NAME)
    rows = read_json(json_path)
    if not isinstance(rows, list):
        raise DoctorSunError(f"{json_path} should hold a list of questions")
    image_root = Path(image_dir) if image_dir else json_path.parent / IMAGE_DIR
    out = Collector()
    for i, row in enumerate(rows):
        where = row.get("qid", f"item {i}") if isinstance(row, dict) else f"item {i}"
        try:
            if split != "all" and _is_test(row) != (split == "test"):
                continue
            out.add(_record(row, out.ident(SOURCE, row.get("qid"), i)))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, image_root)


def _is_test(row: dict) -> bool:
    return str(row.get("phrase_type", "")).startswith("test")


def _record(row: dict, rid: str) -> dict:
    answer_type = text(row.get("answer_type")).upper() or None  # "CLOSED " -> "CLOSED"
    image = text(row.get("image_name"))
    if not image or image == "NULL":
        raise ValueError("no image_name")
    meta = {k: text(row.get(k)) for k in META_FIELDS}
    meta["qid"] = row.get("qid")
    meta["answer"] = text(row.get("answer"))
    return vqa_record(rid, text(row.get("question")), text(row.get("answer")), source=SOURCE,
                      lang="en", image=image, answer_type=answer_type, meta=meta)


def _from_parquet(src: Path, split: str, extract_to) -> ConvertResult:
    splits = ("train", "test") if split == "all" else (split,)
    out = Collector()
    image_root = Path(extract_to) if extract_to else src / "images"
    for part in splits:
        for i, row in enumerate(parquet.read_rows(parquet.parquet_shards(src, part))):
            try:
                name = parquet.extract_image(row.get("image"), image_root / part, f"{part}_{i:05d}")
                answer = text(row.get("answer"))
                out.add(vqa_record(f"{SOURCE}-{part}-{i}", text(row.get("question")), answer, source=SOURCE,
                                   lang="en", image=f"{part}/{name}",
                                   meta={"split": part, "index": i, "answer": answer}))
            except (ValueError, OSError) as exc:
                out.skip(f"{part} row {i}", str(exc))
    return out.result(SOURCE, split, image_root)
