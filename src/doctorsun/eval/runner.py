"""Evaluate a model on SunMed-VL records: batched greedy generation that resumes where it stopped,
then scores under every definition, a Markdown report and a chart.

Files written into ``out_dir``: ``predictions.jsonl`` (one row per answered question, appended batch by
batch so an interrupted run keeps its work), ``run.json`` (what the predictions depend on; a resumed run
must match it), ``scores.json``, ``report.md`` and ``scores.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doctorsun.data.tokenize import record_messages
from doctorsun.errors import DoctorSunError

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"
_MCQ_GOLD = re.compile(r"^([A-Z]+)\s*[.．、:：]")


@dataclass
class Item:
    """One question made ready for generation."""

    row: dict[str, Any]
    """The prediction row, still without ``prediction``."""
    messages: list[dict[str, Any]]
    """The conversation up to and including the question."""
    images: list[Path]
    """Image files in placeholder order."""


def prepare(record: Any, image_root: str | Path | None, bench) -> Item:
    """Turn a SunMed-VL record into an ``Item``; ``ValueError`` says why a record cannot be asked."""
    from doctorsun.data.records import IMAGE_TOKEN, detect_lang, image_paths, resolve_image
    from doctorsun.eval.benchmarks import group_values
    from doctorsun.eval.metrics import YES_NO, normalize_vqa

    if not isinstance(record, dict) or str(record.get("id") or "").strip() == "":
        raise ValueError("not a record with an id")
    turns = record.get("conversations")
    if (not isinstance(turns, list) or len(turns) < 2
            or not all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns)
            or turns[-1].get("from") != "gpt" or turns[-2].get("from") != "human"):
        raise ValueError("needs a human question followed by a gpt answer")
    gold = turns[-1]["value"].strip()
    if not gold:
        raise ValueError("empty gold answer")
    messages, n_placeholders = record_messages({"conversations": turns[:-1]})
    paths = image_paths(record)
    if n_placeholders != len(paths):
        raise ValueError(f"{n_placeholders} {IMAGE_TOKEN} placeholder(s) for {len(paths)} image(s)")
    question = messages[-1]["content"][-1]["text"]
    row: dict[str, Any] = {"id": str(record["id"]), "question": question, "answer": gold,
                           "lang": record.get("lang") or detect_lang(question),
                           "task": record.get("task"), "source": record.get("source")}
    if record.get("task") == "mcq" or record.get("choices"):
        row.update(_mcq_fields(record, gold))
    else:
        declared = str(record.get("answer_type") or "").strip().upper()
        row["answer_type"] = declared or ("CLOSED" if normalize_vqa(gold) in YES_NO else "OPEN")
    if paths:
        row["image"] = paths
    groups = group_values(record, bench)
    if groups:
        row["groups"] = groups
    return Item(row, messages, [resolve_image(p, image_root) for p in paths])


def _mcq_fields(record: dict, gold: str) -> dict[str, Any]:
    """Options as ``{letter: text}``, the gold letter(s) (``meta.answer_letters``, else the "B. text"
    reply, else the option whose text is the reply) and whether several letters may be right."""
    from doctorsun.data.prompts import LETTERS

    choices = record.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise ValueError("multiple-choice record without a list of choices")
    options = {LETTERS[i]: c for i, c in enumerate(choices)}
    meta = record.get("meta") or {}
    letters = str(meta.get("answer_letters") or "")
    if not letters and (m := _MCQ_GOLD.match(gold)):
        letters = m.group(1)
    if not letters:
        letters = next((k for k, v in options.items() if v.strip().lower() == gold.lower()), "")
    if not letters or any(c not in options for c in letters):
        raise ValueError(f"the gold answer {gold!r} names none of the options {''.join(options)}")
    multiple = len(letters) > 1 or meta.get("question_type") == "多项选择题"
    return {"answer_type": "MCQ", "options": options, "gold": letters, "multiple": multiple}


def evaluate(engine, records, *, image_root, out_dir, bench: str = "sunmed-vl-mini", batch_size: int = 8,
             max_new_tokens: int = 32, blank_image: bool = False, limit: int | None = None,
             data_file=None, model_name: str | None = None, problems=None, seed: int = 0,
             resume: bool = True) -> dict:
    """Answer every record (greedy, batched), score, and write predictions, scores and reports.

    Returns the scores dict: ``closed_accuracy`` and ``open_recall`` (LLaVA-Med), ``mcq_accuracy`` when
    there are multiple-choice items, ``token_f1`` / ``bleu1`` (MultiMedEval), ``exact_match``, ``n``,
    every definition under ``metrics``, a ``breakdown``, the skipped ``problems`` and the ``provenance``.
    ``problems`` adds the reader's own skipped items to the report. With ``resume`` (the default) the
    questions already in ``out_dir/predictions.jsonl`` from the same run are not asked again; without
    it, earlier predictions there are discarded.
    """
    from transformers import set_seed

    from doctorsun.eval import provenance, report
    from doctorsun.eval.benchmarks import get_benchmark
    from doctorsun.eval.scoring import score_rows
    from doctorsun.model.generate import GenerationSettings

    spec = get_benchmark(bench)
    if batch_size < 1:
        raise DoctorSunError(f"batch size must be >= 1, not {batch_size}")
    if limit is not None and limit < 1:
        raise DoctorSunError(f"limit must be >= 1, not {limit}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    records = list(records)
    records_sha = hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False,
                                            default=str).encode()).hexdigest()
    skipped = [{"id": str(where), "reason": reason} for where, reason in (problems or [])]
    items = _prepare_all(records[:limit] if limit else records, image_root, spec, skipped)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, seed=seed)
    model = provenance.model_record(model_name or getattr(engine, "name", None))
    model["weights_fingerprint"] = provenance.weights_fingerprint(engine.model)
    prompt = provenance.prompt_record(engine.processor)
    key = {"bench": bench, "model": model["path"], "weights_fingerprint": model["weights_fingerprint"],
           "records_sha256": records_sha, "blank_image": blank_image, "decoding": asdict(settings),
           "chat_template_sha256": prompt["chat_template_sha256"], "builder_sha256": prompt["builder_sha256"]}
    if not resume:
        (out / PREDICTIONS).unlink(missing_ok=True)
    done = _resume(out, key)
    todo = [it for it in items if it.row["id"] not in done]
    set_seed(seed)
    was_training = engine.model.training
    engine.model.eval()  # no dropout while answering, even when a training loop hands its model over
    t0 = time.perf_counter()
    try:
        new_rows = _generate(engine, todo, settings, out / PREDICTIONS, batch_size, blank_image, skipped, bench)
    finally:
        engine.model.train(was_training)
    seconds = time.perf_counter() - t0
    by_id = {**done, **{r["id"]: r for r in new_rows}}
    rows = [by_id[it.row["id"]] for it in items if it.row["id"] in by_id]

    scores: dict[str, Any] = {"bench": bench, "about": spec.about}
    scores.update(score_rows(rows, spec.mcq_methods, [name for name, _ in spec.groups]))
    scores["n_skipped"] = len(skipped)
    scores["problems"] = skipped
    scores["provenance"] = {
        "model": model, "data": provenance.hash_data(data_file) if data_file else None,
        "records_sha256": records_sha, "image_root": str(image_root) if image_root else None,
        "prompt": prompt, "decoding": {**asdict(settings), "do_sample": False, "batch_size": batch_size},
        "blank_image": blank_image, "limit": limit, "seed": seed, "versions": provenance.versions(),
        "started": started.isoformat(timespec="seconds"), "generated": len(new_rows),
        "resumed": len(rows) - len(new_rows), "generation_seconds": round(seconds, 3),
        "items_per_s": round(len(new_rows) / seconds, 3) if new_rows and seconds > 0 else None,
    }
    report.write_all(out, scores)
    log.info("%s: %d scored, %d skipped; results in %s", bench, len(rows), len(skipped), out)
    return scores


def _prepare_all(records: list, image_root, spec, skipped: list[dict]) -> list[Item]:
    """Items for the records that can be asked; the others go to ``skipped`` with the reason."""
    items = []
    for i, record in enumerate(records):
        try:
            items.append(prepare(record, image_root, spec))
        except ValueError as exc:
            rid = record.get("id") if isinstance(record, dict) else None
            skipped.append({"id": str(rid or f"item {i}"), "reason": str(exc)})
    return items


def _resume(out: Path, key: dict[str, Any]) -> dict[str, dict]:
    """Rows already answered in ``out`` by the same run (same model, data, prompt, decoding); a torn
    last line from an interrupted write is dropped. A different run's predictions are refused."""
    from doctorsun.data.io import write_text_atomic

    pred, run_file = out / PREDICTIONS, out / RUN_FILE
    if pred.exists():
        old = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None
        if old != key:
            differ = sorted(k for k in key if not old or old.get(k) != key[k])
            raise DoctorSunError(f"{pred} holds predictions of another run (differs in: {', '.join(differ)}); "
                                 "use a new --out, delete that file, or start over with --fresh")
    write_text_atomic(run_file, json.dumps(key, indent=2, ensure_ascii=False) + "\n")
    if not pred.exists():
        return {}
    rows, torn = [], False
    for line in pred.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            rows.append(row if isinstance(row, dict) and "id" in row and "prediction" in row else None)
        except json.JSONDecodeError:
            rows.append(None)
        torn = torn or rows[-1] is None
    rows = [r for r in rows if r is not None]
    if torn:
        write_text_atomic(pred, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {r["id"]: r for r in rows}


def _generate(engine, items: list[Item], settings, pred_path: Path, batch_size: int, blank_image: bool,
              skipped: list[dict], bench: str) -> list[dict]:
    """Answer ``items`` batch by batch, appending each batch's rows to ``pred_path`` as it finishes."""
    from tqdm import tqdm

    rows: list[dict] = []
    with open(pred_path, "a", encoding="utf-8") as f, tqdm(total=len(items), unit="item", desc=bench) as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            ready = []
            for item in batch:
                try:
                    ready.append((item, [_load(p, blank_image) for p in item.images]))
                except DoctorSunError as exc:
                    skipped.append({"id": item.row["id"], "reason": str(exc)})
            done = _answer(engine, ready, settings, skipped)
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done))
            f.flush()
            os.fsync(f.fileno())
            rows += done
            bar.update(len(batch))
    return rows


def _answer(engine, ready: list[tuple[Item, list]], settings, skipped: list[dict]) -> list[dict]:
    """Generate for a batch; when the batch fails, answer one at a time so only the bad item is lost."""
    if not ready:
        return []
    try:
        texts = engine.generate([it.messages for it, _ in ready], [imgs for _, imgs in ready], settings)
    except Exception as exc:  # one malformed item must not cost the batch, let alone the run
        if len(ready) == 1:
            skipped.append({"id": ready[0][0].row["id"], "reason": f"generation failed: {exc}"})
            return []
        return [row for pair in ready for row in _answer(engine, [pair], settings, skipped)]
    return [{**it.row, "prediction": text} for (it, _), text in zip(ready, texts, strict=True)]


def _load(path: Path, blank: bool):
    """The image, or with ``blank`` a black image of the same size (the text-only baseline)."""
    from PIL import Image

    from doctorsun.data.image import load_image

    image = load_image(path)
    return Image.new("RGB", image.size) if blank else image
