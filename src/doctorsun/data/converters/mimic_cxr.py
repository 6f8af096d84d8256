"""MIMIC-CXR (Johnson et al., 2019): report generation from chest X-rays.

The PhysioNet layout: free-text reports ``mimic-cxr-reports/files/p10/p10000032/s50414267.txt``, the
split file ``mimic-cxr-2.0.0-split.csv`` (``dicom_id, study_id, subject_id, split``: train / validate /
test) and the JPG images ``files/p10/p10000032/s50414267/{dicom_id}.jpg`` (MIMIC-CXR-JPG); with
``mimic-cxr-2.0.0-metadata.csv`` present, frontal views (PA, AP) go first. A report's sections are its
upper-case headings ("FINDINGS:", "IMPRESSION:"); a study without the chosen section is reported, not
kept. Credentialed data: nothing of it ships with DoctorSun.
"""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    find_one,
    need_split,
    read_csv,
    report_record,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "mimic-cxr"
SPLITS = ("train", "validate", "test")
_HEADING = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.M)
FRONTAL = ("PA", "AP")


def convert(src: Path, split: str, section: str = "findings", max_images: int = 1) -> ConvertResult:
    """Options: ``section`` findings (default), impression or both; ``max_images`` per study (default 1,
    a frontal view where the metadata says which). Splits: train, validate, test. ``src`` is the folder
    holding the split CSV, ``mimic-cxr-reports/`` and ``files/``."""
    need_split(split, SPLITS, SOURCE)
    if section not in ("findings", "impression", "both"):
        raise DoctorSunError("mimic-cxr: section must be findings, impression or both")
    split_csv = find_one(src, ["mimic-cxr-2.0.0-split.csv", "*split*.csv"], "mimic-cxr-2.0.0-split.csv")
    reports = src / "mimic-cxr-reports"
    if not reports.is_dir():
        raise DoctorSunError(f"mimic-cxr: no mimic-cxr-reports/ under {src}")
    view: dict[str, str] = {}
    meta_csv = src / "mimic-cxr-2.0.0-metadata.csv"
    if meta_csv.is_file():
        view = {text(r.get("dicom_id")): text(r.get("ViewPosition")) for r in read_csv(meta_csv)}
    studies: dict[tuple[str, str], list[str]] = {}
    for row in read_csv(split_csv):
        if text(row.get("split")) == split:
            studies.setdefault((text(row.get("subject_id")), text(row.get("study_id"))), []).append(
                text(row.get("dicom_id")))
    out = Collector()
    for (subject, study), dicoms in studies.items():
        where = f"s{study}"
        try:
            folder = f"files/p{subject[:2]}/p{subject}/s{study}"
            path = reports / f"{folder}.txt"
            if not path.is_file():
                raise ValueError(f"no report {path.relative_to(src)}")
            sections = report_sections(path.read_text(encoding="utf-8", errors="replace"))
            wanted = {"findings": sections.get("findings", ""), "impression": sections.get("impression", ""),
                      "both": " ".join(s for s in (sections.get("findings"), sections.get("impression")) if s)}
            ordered = sorted(dicoms, key=lambda d: view.get(d) not in FRONTAL)
            out.add(report_record(f"{SOURCE}-{study}", wanted[section],
                                  [f"{folder}/{d}.jpg" for d in ordered[:max_images]], source=SOURCE, lang="en",
                                  meta={"study": study, "views": [view.get(d) for d in ordered[:max_images]]
                                        if view else None}))
        except ITEM_ERRORS as exc:
            out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, src)


def report_sections(report: str) -> dict[str, str]:
    """``{"findings": ..., "impression": ...}`` (lower-case heading -> its text, whitespace collapsed)."""
    marks = list(_HEADING.finditer(report))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(report)
        body = " ".join(report[m.end():end].split())
        if body:
            out[m.group(1).strip().lower()] = body
    return out
