"""PathVQA (He et al., 2020): the original pickles or the Hugging Face parquet copy.

Original: ``qas/{split}/{split}_qa.pkl`` (a list of ``{"image", "question", "answer"}``; the image is
``images/{split}/{image}.jpg``). Pickles can run code when loaded, so they are read with an unpickler
that accepts plain data only. Parquet copy: ``data/{split}-*.parquet`` with ``image, question, answer``.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters import parquet
from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    find_one,
    load_plain_pickle,
    need_split,
    text,
    vqa_record,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "pathvqa"
SPLITS = ("train", "val", "test")


def convert(src: Path, split: str, extract_to: str | Path | None = None) -> ConvertResult:
    """Options: ``extract_to`` (parquet layout; where images are written, default ``<src>/images``).
    Splits: train, val (``validation`` in the parquet copy), test. ``src`` is the ``pvqa`` folder,
    a ``{split}_qa.pkl`` file, or the parquet copy's folder."""
    if src.is_dir() and parquet.has_parquet(src) and not (src / "qas").exists():
        return _from_parquet(src, split, extract_to)
    if src.is_file():
        pkl, root = src, src.parents[2]
        split = src.name.removesuffix("_qa.pkl")
    else:
        need_split(split, SPLITS, SOURCE)
        pkl = find_one(src, [f"qas/{split}/{split}_qa.pkl", f"**/{split}_qa.pkl"], f"{split}_qa.pkl")
        root = pkl.parents[2]
    rows = load_plain_pickle(pkl)
    if not isinstance(rows, list):
        raise DoctorSunError(f"{pkl} should hold a list of questions")
    out = Collector()
    for i, row in enumerate(rows):
        try:
            image = f"{split}/{text(row['image'])}.jpg"
            out.add(vqa_record(f"{SOURCE}-{split}-{i}", text(row.get("question")), text(row.get("answer")),
                               source=SOURCE, lang="en", image=image, meta={"image_id": row["image"]}))
        except ITEM_ERRORS as exc:
            out.skip(f"item {i}", str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, root / "images")


def _from_parquet(src: Path, split: str, extract_to) -> ConvertResult:
    hub_split = {"val": "validation"}.get(split, split)
    need_split(hub_split, ("train", "validation", "test"), SOURCE)
    image_root = Path(extract_to) if extract_to else src / "images"
    out = Collector()
    for i, row in enumerate(parquet.read_rows(parquet.parquet_shards(src, hub_split))):
        try:
            name = parquet.extract_image(row.get("image"), image_root / hub_split, f"{hub_split}_{i:05d}")
            out.add(vqa_record(f"{SOURCE}-{hub_split}-{i}", text(row.get("question")),
                               text(row.get("answer")),
                               source=SOURCE, lang="en", image=f"{hub_split}/{name}", meta={"index": i}))
        except (ValueError, OSError) as exc:
            out.skip(f"row {i}", str(exc))
    return out.result(SOURCE, split, image_root)
