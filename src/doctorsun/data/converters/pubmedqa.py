"""PubMedQA (Jin et al., 2019), the expert-labelled part: ``ori_pqal.json`` maps PMID -> ``QUESTION,
CONTEXTS, LABELS, MESHES, YEAR, final_decision (yes/no/maybe), LONG_ANSWER``. The standard test split
is the 500 PMIDs of ``test_ground_truth.json`` (beside it in the release's ``data/``); the rest is train.

Each item is a three-way choice; the abstract's contexts go into the question, as peers prompt it.
"""

from __future__ import annotations

from pathlib import Path

from doctorsun.data.converters.base import ITEM_ERRORS, Collector, ConvertResult, find_one, mcq_record, read_json, text
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "pubmedqa"
DECISIONS = ["yes", "no", "maybe"]
GROUND_TRUTH = "test_ground_truth.json"


def convert(src: Path, split: str, ground_truth: str | Path | None = None) -> ConvertResult:
    """Options: ``ground_truth`` (default ``test_ground_truth.json`` beside ``ori_pqal.json``) defines
    the test split. Splits: test, train (every other PMID), all. ``src`` is ori_pqal.json or its folder."""
    path = src if src.is_file() else find_one(src, ["ori_pqal.json", "**/ori_pqal.json"], "ori_pqal.json")
    if split not in ("test", "train", "all"):
        raise DoctorSunError(f"pubmedqa has no split {split!r} (known: test, train, all)")
    items = read_json(path)
    if not isinstance(items, dict):
        raise DoctorSunError(f"pubmedqa: {path} should map PMID -> item")
    if split != "all":
        gt_path = Path(ground_truth) if ground_truth else path.parent / GROUND_TRUTH
        if not gt_path.is_file():
            raise DoctorSunError(f"pubmedqa: the {split} split needs {gt_path} (or use split='all')")
        test_ids = set(read_json(gt_path))
        items = {k: v for k, v in items.items() if (k in test_ids) == (split == "test")}
    out = Collector()
    for pmid, item in items.items():
        try:
            out.add(_record(pmid, item))
        except ITEM_ERRORS as exc:
            out.skip(pmid, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, None)


def _record(pmid: str, item: dict) -> dict:
    decision = text(item.get("final_decision")).lower()
    if decision not in DECISIONS:
        raise ValueError(f"final_decision {item.get('final_decision')!r} is not yes/no/maybe")
    contexts = [text(c) for c in item.get("CONTEXTS") or []]
    context = " ".join(c for c in contexts if c)
    question = (f"Context: {context}\nQuestion: " if context else "") + text(item["QUESTION"])
    meta = {"pmid": pmid, "final_decision": decision, "long_answer": text(item.get("LONG_ANSWER")) or None,
            "year": item.get("YEAR"), "meshes": item.get("MESHES"), "labels": item.get("LABELS")}
    return mcq_record(f"{SOURCE}-{pmid}", question, list(DECISIONS), [DECISIONS.index(decision)],
                      source=SOURCE, lang="en", meta=meta)
