"""MIMIC-CXR (Johnson et al., 2019): report generation from chest X-rays.

The PhysioNet layout: free-text reports ``mimic-cxr-reports/files/p10/p10000032/s50414267.txt``, the
split file ``mimic-cxr-2.0.0-split.csv`` (``dicom_id, study_id, subject_id, split``: train / validate /
test) and the JPG images ``files/p10/p10000032/s50414267/{dicom_id}.jpg`` (MIMIC-CXR-JPG); with
``mimic-cxr-2.0.0-metadata.csv`` present, frontal views (PA, AP) go first. A report is cut into sections
by the rules of the dataset's own section parser (MIT-LCP ``mimic-cxr/txt``): upper-case headings at the
start of a line ("FINDINGS:", "IMPRESSION:"), their names normalised ("CONCLUSION" and "FINDINGS AND
IMPRESSION" are impressions, "PA AND LATERAL" or "CHEST, TWO VIEWS" introduce findings, common typos
mended), empty findings / impressions dropped, the *last* section of a name kept, and, when a report has
neither, its last paragraph as ``last_paragraph``. Two differences: a heading on the line right after
another starts its own section (the parser folds it into the one before), and the hand-made per-study
fixes of ``create_section_files.py`` (``custom_mimic_cxr_rules``: 55 of 227,835 reports) are not applied:
they pick the text its CheXpert labelling reads (impression first, then findings), not a named section.
A study without the chosen section is reported, not kept. Credentialed data: nothing of it ships with
DoctorSun.
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
_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z ()/,&-]*):(?=\s)[ \t]*", re.M)
"""A section heading: upper case at the start of a line, then a colon and white space."""
SECTION_NAMES = {
    "comparisons": "comparison", "reference exam": "comparison", "comparison exam": "comparison",
    "comparison film": "comparison", "comparision": "comparison", "comparsion": "comparison",
    "comparrison": "comparison", "comparisions": "comparison",
    "clinical history": "history", "clinical information": "history", "patient history": "history", "pfi": "history",
    "reason for examination": "indication", "reason for exam": "indication", "clinical indication": "indication",
    "idication": "indication",
    "exam": "examination", "type of examination": "examination",
    "conclusion": "impression", "findings and impression": "impression", "findings/impression": "impression",
    "findings/ impression": "impression", "impresson": "impression", "imprression": "impression",
    "imoression": "impression", "impressoin": "impression", "imprssion": "impression", "impresion": "impression",
    "imperssion": "impression", "mpression": "impression", "impession": "impression", "ndication": "impression",
    "chest, two views": "findings", "finding": "findings", "findins": "findings", "findindgs": "findings",
    "findgings": "findings", "findngs": "findings", "findnings": "findings", "finidngs": "findings",
    "reference findings": "findings",
    "recommendation(s)": "recommendations", "recommendation": "recommendations", "wetread": "wet read",
}
"""Heading variants of MIMIC-CXR and the section each names (as the dataset's section parser maps them)."""
_MAIN = ("impression", "findings", "history", "comparison", "addendum")
_FINDINGS_LIKE = re.compile(r"chest|portable|pa and lat|lateral and pa|ap and lateral|lateral and ap|frontal and|"
                            r"two views|frontal view|pa view|ap view|one view|lateral view|bone window|"
                            r"frontal upright|frontal semi-upright|ribs")
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


def section_name(heading: str) -> str:
    """The section a heading names: a known variant, else a main section it contains, else findings for a
    heading that describes the views taken, else the heading itself (lower case)."""
    name = " ".join(heading.lower().split())
    if name in SECTION_NAMES:
        return SECTION_NAMES[name]
    main = next((m for m in _MAIN if m in name), None)
    if main:
        return main
    return "findings" if _FINDINGS_LIKE.search(name) else name


def report_sections(report: str) -> dict[str, str]:
    """``{"findings": ..., "impression": ..., ...}``: each section's text, whitespace collapsed, the last one
    of a name winning; the text before the first heading is ``preamble``; a report with neither findings
    nor an impression gets its last paragraph as ``last_paragraph``."""
    marks, start = [], 0
    while (m := _HEADING.search(report, start)) is not None:
        marks.append(m)
        line_end = report.find("\n", m.end())  # a section runs at least to the end of its heading's line
        start = len(report) if line_end == -1 else line_end
    if not marks:
        parts = [("full report", report)]
    else:
        parts = [("preamble", report[:marks[0].start()])]
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(report)
            parts.append((section_name(m.group(1)), report[m.end():end]))
    parts = [(n, t) for n, t in parts if n not in ("findings", "impression") or t.strip()]
    if not any(n in ("findings", "impression") for n, _ in parts):
        last, body = parts[-1]
        paragraphs = re.split(r"\n[ \t]*\n", body.strip("\n"), maxsplit=1)
        if len(paragraphs) == 2 and paragraphs[1].strip():
            parts[-1] = (last, paragraphs[0])
            parts.append(("last_paragraph", paragraphs[1]))
    out = {}
    for name, body in parts:
        if clean := " ".join(body.split()):
            out[name] = clean
    return out
