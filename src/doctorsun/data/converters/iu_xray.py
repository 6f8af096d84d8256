"""IU-Xray (Indiana University chest X-rays, Demner-Fushman et al., 2016): report generation.

Three published layouts, the first found wins:

- R2Gen's split (the one report-generation papers score): ``annotation.json`` with ``{"train" | "val" |
  "test": [{"id", "report", "image_path": [...], "split"}]}`` and ``images/``;
- the Open-i release: ``ecgen-radiology/*.xml`` reports (``AbstractText Label="FINDINGS"`` /
  ``"IMPRESSION"``, ``parentImage id=...``) with ``NLMCXR_png/{id}.png``;
- the Kaggle copy: ``indiana_reports.csv`` (``uid, ..., findings, impression``) and
  ``indiana_projections.csv`` (``uid, filename, projection``) with ``images/images_normalized/``.

The two releases without a split read as one ``all`` split. Each study is one ``task: report`` record
with all its images (frontal first where the projection is known); a study without the chosen section
is reported, not kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    read_csv,
    read_json,
    report_record,
    text,
)
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "test"
SOURCE = "iu-xray"
SECTIONS = ("findings", "impression", "both")


def convert(src: Path, split: str, section: str = "findings", max_images: int = 2) -> ConvertResult:
    """Options: ``section`` findings (default), impression or both (findings then impression);
    ``max_images`` images per study (default 2, R2Gen's). Splits: train, val, test (R2Gen's
    annotation.json) or all (the Open-i XML and Kaggle CSV releases)."""
    if section not in SECTIONS:
        raise DoctorSunError(f"iu-xray: section must be one of {', '.join(SECTIONS)}")
    out = Collector()
    if (src / "annotation.json").is_file():
        data = read_json(src / "annotation.json")
        if split not in data:
            raise DoctorSunError(f"iu-xray: annotation.json has no split {split!r} (has {', '.join(data)})")
        for i, row in enumerate(data[split]):
            try:
                if section != "findings":
                    raise ValueError("R2Gen's annotation.json holds the findings only")
                images = [text(p) for p in row["image_path"]][:max_images]
                out.add(report_record(f"{SOURCE}-{text(row['id'])}", text(row.get("report")), images,
                                      source=SOURCE, lang="en", meta={"study": text(row["id"])}))
            except ITEM_ERRORS as exc:
                out.skip(f"{split} item {i}", str(exc) or type(exc).__name__)
        return out.result(SOURCE, split, src / "images")
    if split != "all":
        raise DoctorSunError(f"iu-xray: {src} is a release without splits (no annotation.json): use split all")
    if (src / "ecgen-radiology").is_dir():
        _xml(src, section, max_images, out)
        return out.result(SOURCE, "all", src / "NLMCXR_png")
    if (src / "indiana_reports.csv").is_file():
        _kaggle(src, section, max_images, out)
        return out.result(SOURCE, "all", src / "images" / "images_normalized")
    raise DoctorSunError(f"iu-xray: no annotation.json, ecgen-radiology/ or indiana_reports.csv under {src}")


def _report(findings: str, impression: str, section: str) -> str:
    if section == "findings":
        return findings
    if section == "impression":
        return impression
    return " ".join(p for p in (findings, impression) if p)


def _xml(src: Path, section: str, max_images: int, out: Collector) -> None:
    for path in sorted((src / "ecgen-radiology").glob("*.xml")):
        try:
            root = ET.parse(path).getroot()
            parts = {(node.get("Label") or "").lower(): "".join(node.itertext()).strip()
                     for node in root.iter("AbstractText")}
            images = [f"{node.get('id')}.png" for node in root.iter("parentImage") if node.get("id")]
            out.add(report_record(f"{SOURCE}-{path.stem}", _report(parts.get("findings", ""),
                                                                    parts.get("impression", ""), section),
                                  images[:max_images], source=SOURCE, lang="en", meta={"study": path.stem}))
        except (ET.ParseError, *ITEM_ERRORS) as exc:
            out.skip(path.name, str(exc) or type(exc).__name__)


def _kaggle(src: Path, section: str, max_images: int, out: Collector) -> None:
    views: dict[str, list[tuple[str, str]]] = {}
    for row in read_csv(src / "indiana_projections.csv"):
        views.setdefault(text(row.get("uid")), []).append((text(row.get("projection")), text(row.get("filename"))))
    for i, row in enumerate(read_csv(src / "indiana_reports.csv")):
        uid = text(row.get("uid"))
        try:
            files = [f for _, f in sorted(views.get(uid, []), key=lambda v: v[0] != "Frontal")]
            out.add(report_record(f"{SOURCE}-{uid}", _report(text(row.get("findings")), text(row.get("impression")),
                                                             section),
                                  files[:max_images], source=SOURCE, lang="en", meta={"study": uid}))
        except ITEM_ERRORS as exc:
            out.skip(f"indiana_reports.csv row {i + 2}", str(exc) or type(exc).__name__)
