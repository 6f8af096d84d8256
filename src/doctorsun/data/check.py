"""``doctorsun data check``: every bad record of a file, by id and reason, and what the good ones hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from doctorsun.data.records import image_paths, resolve_image, unreadable_image, validate

SUMMARY_KEYS = ("source", "lang", "task")


def composition(records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Counts of records by source, language and task (most common first), in one pass."""
    counts: dict[str, Counter] = {key: Counter() for key in SUMMARY_KEYS}
    for r in records:
        for key, counter in counts.items():
            counter[str(r.get(key))] += 1
    return {f"by_{key}": dict(counter.most_common()) for key, counter in counts.items()}


@dataclass
class CheckReport:
    """The outcome of checking one data file."""

    path: Path
    """The file that was checked."""
    image_root: Path | None
    """Where image paths were resolved."""
    good: list[dict] = field(default_factory=list)
    """Records that passed every check."""
    bad: list[tuple[str, str]] = field(default_factory=list)
    """``(record id or location, reasons)`` for every item that failed."""

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> dict:
        return {"file": str(self.path), "good": len(self.good), "bad": len(self.bad),
                **composition(self.good)}

    def format(self, max_bad: int | None = None) -> str:
        lines = [f"{self.path}: {len(self.good)} good, {len(self.bad)} bad record(s)"]
        shown = self.bad if max_bad is None else self.bad[:max_bad]
        lines += [f"  BAD {where}: {reason}" for where, reason in shown]
        if len(shown) < len(self.bad):
            lines.append(f"  ... and {len(self.bad) - len(shown)} more")
        for key, counts in composition(self.good).items():
            if counts:
                shown = ", ".join(f"{k} {n}" for k, n in counts.items())
                lines.append(f"{key.removeprefix('by_')}: {shown}")
        return "\n".join(lines)


def check_file(path: str | Path, image_root: str | Path | None = None,
               check_images: bool = True, workers: int | None = None) -> CheckReport:
    """Validate every item of a LLaVA JSON / JSONL / ShareGPT file or saved dataset, streamed.

    Image paths resolve against ``image_root`` (default: the file's folder); with ``check_images``
    every distinct image is also decoded once, by ``workers`` threads (default: one per core), and no
    pixels are kept. Duplicate ids are reported on their second and later occurrences.
    """
    from doctorsun.data.io import iter_raw

    path = Path(path)
    root = Path(image_root) if image_root is not None else (path if path.is_dir() else path.parent)
    report = CheckReport(path, root)
    seen: dict[str, str] = {}
    for where, item, problem in iter_raw(path):
        if problem:
            report.bad.append((where, problem))
            continue
        reasons = validate(item, image_root=root)
        rid = item.get("id") if isinstance(item, dict) else None
        label = rid if isinstance(rid, str) and rid.strip() else where
        if isinstance(rid, str) and rid in seen:
            reasons.append(f"duplicate id (first at {seen[rid]})")
        elif isinstance(rid, str):
            seen[rid] = where
        if reasons:
            report.bad.append((label, "; ".join(reasons)))
        else:
            report.good.append(item)
    if check_images:
        _decode_images(report, root, workers)
    return report


def _decode_images(report: CheckReport, root: Path, workers: int | None) -> None:
    """Decode each distinct image of the good records once, in parallel; records with an unreadable
    image move to ``bad``."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted({p for r in report.good for p in image_paths(r)})
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        reasons = pool.map(lambda p: unreadable_image(p, resolve_image(p, root)), paths)
        broken = {p: reason for p, reason in zip(paths, reasons, strict=True) if reason}
    if broken:
        good = []
        for r in report.good:
            reasons = [broken[p] for p in image_paths(r) if p in broken]
            if reasons:
                report.bad.append((r["id"], "; ".join(reasons)))
            else:
                good.append(r)
        report.good = good
