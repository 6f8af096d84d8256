"""PMC-OA (Lin et al., 2023): ``{train,valid,test}.jsonl`` rows ``image, caption, pmcid, url_name``
beside the ``images/`` folder unpacked from ``images.zip``. Caption records for alignment."""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    caption_record,
    need_split,
    read_jsonl,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "train"
SOURCE = "pmc-oa"
SPLITS = ("train", "valid", "test")


def convert(src: Path, split: str, image_dir: str | Path | None = None) -> ConvertResult:
    """Options: ``image_dir`` (default ``images/`` beside the JSONL). Splits: train, valid, test.
    ``src`` is the folder or one JSONL file (e.g. ``pmc_oa_beta.jsonl``)."""
    if src.is_file():
        path, split = src, src.stem
    else:
        need_split(split, SPLITS, SOURCE)
        path = src / f"{split}.jsonl"
        if not path.is_file():
            raise DoctorSunError(f"pmc-oa: {path} not found")
    out = Collector()
    for where, row in read_jsonl(path, out):
        try:
            image = text(row.get("image"))
            if not image:
                raise ValueError("no image")
            meta = {"pmcid": row.get("pmcid"), "url_name": row.get("url_name")}
            out.add(caption_record(f"{SOURCE}-{Path(image).stem}", text(row.get("caption")), source=SOURCE,
                                   image=image, lang="en", meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(f"{where} ({row.get('image', '?') if isinstance(row, dict) else '?'})", str(exc))
    return out.result(SOURCE, split, Path(image_dir) if image_dir else path.parent / "images")
