"""MMLU (Hendrycks et al., 2021), 57 subjects of general and professional knowledge, four options.

Two published layouts: the original release ``data/{dev,val,test}/{subject}_{split}.csv`` (no header;
``question, A, B, C, D, answer``), and the Hugging Face copy ``cais/mmlu``: ``{subject|all}/{split}-*.parquet``
with ``question, subject, choices (list), answer (index 0-3)``. The original's ``val`` split is the Hub's
``validation``; either name works.
"""

from __future__ import annotations

import csv
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    letters_to_indices,
    mcq_record,
    need_split,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "mmlu"
SPLITS = ("dev", "val", "validation", "test", "auxiliary_train")


def convert(src: Path, split: str, subjects: list[str] | None = None) -> ConvertResult:
    """Option: ``subjects`` keeps only those subjects (e.g. ``[anatomy, college_medicine]``).
    Splits: dev, val (validation), test. ``src`` is the release root (holding ``data/``), the Hub copy's
    root, or one subject CSV."""
    wanted = set(subjects or [])
    out = Collector()
    if src.is_file():
        _read_csv(src, src.stem.rsplit("_", 1)[0], split, out)
        return out.result(SOURCE, split, None)
    need_split(split, SPLITS, SOURCE)
    hub = "validation" if split == "val" else split
    shards = sorted(src.glob(f"all/{hub}-*.parquet")) or sorted(src.glob(f"*/{hub}-*.parquet"))
    if shards:
        _read_parquet(shards, split, wanted, out)
        return out.result(SOURCE, split, None)
    disk = "val" if split == "validation" else split
    files = sorted((src / "data" / disk).glob(f"*_{disk}.csv")) or sorted((src / disk).glob(f"*_{disk}.csv"))
    if not files:
        raise DoctorSunError(f"mmlu: no data/{disk}/*_{disk}.csv nor */{hub}-*.parquet under {src}")
    for path in files:
        subject = path.stem[: -len(disk) - 1]
        if not wanted or subject in wanted:
            _read_csv(path, subject, split, out)
    return out.result(SOURCE, split, None)


def _read_csv(path: Path, subject: str, split: str, out: Collector) -> None:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        rows = list(csv.reader(f))
    for i, row in enumerate(rows):
        try:
            if len(row) != 6:
                raise ValueError(f"{len(row)} columns; expected question, A, B, C, D, answer")
            choices = [text(c) for c in row[1:5]]
            gold = letters_to_indices(text(row[5]), 4)
            out.add(_record(f"{SOURCE}-{split}-{subject}-{i}", text(row[0]), choices, gold, subject))
        except ITEM_ERRORS as exc:
            out.skip(f"{path.name} row {i + 1}", str(exc) or type(exc).__name__)


def _read_parquet(shards: list[Path], split: str, wanted: set[str], out: Collector) -> None:
    import pyarrow.parquet as pq

    counters: dict[str, int] = {}
    for shard in shards:
        for i, row in enumerate(pq.read_table(shard).to_pylist()):
            try:
                subject = text(row.get("subject")) or shard.parent.name
                if wanted and subject not in wanted:
                    continue
                choices = [text(c) for c in row["choices"]]
                answer = row["answer"]
                if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
                    raise ValueError(f"answer {answer!r} is not an option index 0-{len(choices) - 1}")
                n = counters[subject] = counters.get(subject, -1) + 1
                out.add(_record(f"{SOURCE}-{split}-{subject}-{n}", text(row["question"]), choices, [answer],
                                subject))
            except ITEM_ERRORS as exc:
                out.skip(f"{shard.name} row {i}", str(exc) or type(exc).__name__)


def _record(rid: str, question: str, choices: list[str], gold: list[int], subject: str) -> dict:
    return mcq_record(rid, question, choices, gold, source=SOURCE, lang="en", meta={"subject": subject})
