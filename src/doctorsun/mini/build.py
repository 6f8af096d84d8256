"""``build_mini``: make SunMed-VL-mini in a folder, reproducibly, in well under a minute on a laptop CPU.

Layout (a contract: training and evaluation read exactly these):
```
OUT/README.md             data card
OUT/images/<view-id>.png  every view, 8-bit RGB, 128 x 128
OUT/align_train.jsonl     captions of training views (task caption)
OUT/instruct_train.jsonl  yes/no, open and multiple-choice questions on training views
OUT/test.jsonl            the same kinds of questions on held-out views only
OUT/general.jsonl         everyday photographs: captions and questions, for mixing
OUT/text_train.jsonl      medical question/answer text (task text)
OUT/summary.json          counts
```
Everything is written to a staging folder next to OUT and moved into place at the end, so an
interrupted build never leaves a half-made set behind. The same seed gives byte-identical files for the
same library versions (they are recorded in ``summary.json``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir
from doctorsun.mini.card import write_card
from doctorsun.mini.general import general_records, general_views
from doctorsun.mini.general_text import KNOWLEDGE, OPEN_PROMPTS, REPLAY_PROMPTS, write_knowledge
from doctorsun.mini.questions import balance_closed, caption_records, item_records, plan_items
from doctorsun.mini.sources import MEDICAL, Source
from doctorsun.mini.text import text_records
from doctorsun.mini.views import View, assign, augment, prepare, rng_for

log = logging.getLogger(__name__)

NAME = "SunMed-VL-mini"
FORMAT_VERSION = 3
QUESTIONS_PER_VIEW = 3
FILES = ("align_train.jsonl", "instruct_train.jsonl", "test.jsonl", "general.jsonl", "text_train.jsonl")


def build_mini(out: Path, seed: int = 0, reasoned: bool = True) -> dict:
    """Build SunMed-VL-mini into ``out`` (created, or replaced if it holds an earlier build) and return
    the summary that is also written to ``out/summary.json``. ``reasoned``: training answers to yes/no and
    multiple-choice questions name the finding before the verdict (``doctorsun.mini.questions``); the
    held-out split keeps bare verdicts either way."""
    out = Path(out)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DoctorSunError(f"seed must be a non-negative integer, not {seed!r}")
    _check_target(out)
    start = time.time()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DoctorSunError(f"cannot write {out}: {exc.strerror or exc}") from None
    with atomic_dir(out, prefix="building") as staging:
        summary = _build_into(staging, seed, reasoned)
    log.info("%s built in %s in %.1f s: %s", NAME, out, time.time() - start, summary["records"])
    return summary


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DoctorSunError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_mini(out):
        raise DoctorSunError(f"{out} is not empty and holds no earlier {NAME} build; choose a new folder")


def _is_mini(folder: Path) -> bool:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("name") == NAME
    except (OSError, ValueError):
        return False


def _medical_views(seed: int) -> list[tuple[Source, View]]:
    views = []
    for source in MEDICAL:
        rng = rng_for(seed, "views", source.key)
        bases = source.load()
        prepared = {b.key: prepare(b.image, source.fit, source.crop[0]) for b in bases}
        for i, (base, split) in enumerate(assign(bases, source.n_train, source.n_test, rng)):
            image, params = augment(prepared[base.key], rng, source.crop, source.rotate,
                                    turns=source.flips, mirror=source.flips)
            views.append((source,
                          View(f"{source.key}-{i:03d}", image, split, base.key, {**base.meta, **params})))
    return views


def _question_records(views: list[tuple[Source, View]], split: str, seed: int,
                      reasoned: bool = False) -> list[dict]:
    items = []
    for source in MEDICAL:
        mine = [v for s, v in views if s is source and v.split == split]
        items += plan_items(source, mine, QUESTIONS_PER_VIEW, rng_for(seed, "plan", split, source.key))
    balance_closed(items, rng_for(seed, "balance", split))
    rng = rng_for(seed, "wording", split)
    return [r for item in items for r in item_records(item, rng, split, reasoned)]


def _build_into(folder: Path, seed: int, reasoned: bool) -> dict:
    medical = _medical_views(seed)
    general = general_views(seed)
    images = folder / "images"
    images.mkdir()
    for _, view in (*medical, *general):
        view.image.save(images / f"{view.id}.png", format="PNG", compress_level=6)
    caption_rng = rng_for(seed, "captions")
    files = {
        "align_train.jsonl": [r for s, v in medical if v.split == "train"
                              for r in caption_records(s, v, caption_rng)],
        "instruct_train.jsonl": _question_records(medical, "train", seed, reasoned),
        "test.jsonl": _question_records(medical, "test", seed),
        "general.jsonl": general_records(general, seed),
        "text_train.jsonl": text_records(),
    }
    for name, records in files.items():
        _write_jsonl(folder / name, records)
    write_knowledge(folder / "general-text")
    summary = _summary(seed, medical, general, files)
    summary["reasoned_answers"] = reasoned
    summary_text = json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    (folder / "summary.json").write_text(summary_text, encoding="utf-8")
    write_card(folder / "README.md", summary, files)
    return summary


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def _count(records: list[dict], key) -> dict[str, int]:
    return dict(sorted(Counter(key(r) for r in records).items()))


def _summary(seed: int, medical: list[tuple[Source, View]], general: list,
             files: dict[str, list[dict]]) -> dict:
    views = {split: _count([{"m": s.modality} for s, v in medical if v.split == split], lambda r: r["m"])
             for split in ("train", "test")}
    closed = {name: _count([r for r in files[name] if r["task"] == "vqa-closed"],
                           lambda r: r.get("meta", {}).get("verdict", r["conversations"][-1]["value"]))
              for name in ("instruct_train.jsonl", "test.jsonl", "general.jsonl")}
    return {
        "name": NAME, "format_version": FORMAT_VERSION, "seed": seed, "image_size": 128,
        "records": {name: len(records) for name, records in files.items()},
        "images": len(medical) + len(general),
        "general_text": {"knowledge_questions": {"en": len(KNOWLEDGE), "zh": len(KNOWLEDGE)},
                         "open_prompts": {k: len(v) for k, v in OPEN_PROMPTS.items()},
                         "replay_prompts": {k: len(v) for k, v in REPLAY_PROMPTS.items()}},
        "views": {"train": sum(views["train"].values()), "test": sum(views["test"].values()),
                  "general": len(general)},
        "views_by_modality": views,
        "by_task": {name: _count(records, lambda r: r["task"]) for name, records in files.items()},
        "by_lang": {name: _count(records, lambda r: r["lang"]) for name, records in files.items()},
        "by_modality": {name: _count(files[name], lambda r: r["meta"]["modality"])
                        for name in ("align_train.jsonl", "instruct_train.jsonl", "test.jsonl")},
        "by_question": {name: _count(files[name], lambda r: f"{r['meta']['question']}/{r['meta']['form']}")
                        for name in ("instruct_train.jsonl", "test.jsonl")},
        "closed_answers": closed,
        "sources": [{"key": s.key, "origin": s.origin, "modality": s.modality,
                     "train_views": sum(1 for t, v in medical if t is s and v.split == "train"),
                     "test_views": sum(1 for t, v in medical if t is s and v.split == "test")}
                    for s in MEDICAL],
        "software": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("doctorsun", "pydicom", "nibabel", "scikit-image", "Pillow", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
