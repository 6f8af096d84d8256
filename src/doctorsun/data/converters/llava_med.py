"""LLaVA-Med (Li et al., 2023) data: LLaVA JSON lists, and the evaluation questions JSONL.

* Instruction data (``llava_med_instruct_*.json``): ``id, image, conversations`` -> ``dialogue`` records.
* VQA fine-tuning data (e.g. ``data_RAD/test.json``): the same plus ``answer_type`` -> VQA records, asked
  with the project's prompts (the closed prompt for yes/no golds) like every converted VQA set.
* Questions JSONL (``question_id, image, text, ...``) with an answers JSONL (``question_id, text,
  answer_id, model_id``) given as ``answers``: one VQA record per answered question.
"""

from __future__ import annotations

import json
from pathlib import Path

from doctorsun.data.converters.base import (
    ITEM_ERRORS,
    Collector,
    ConvertResult,
    read_json,
    read_jsonl,
    text,
    vqa_record,
)
from doctorsun.data.prompts import open_prompt, with_image
from doctorsun.data.records import detect_lang
from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN

DEFAULT_SPLIT = "train"
SOURCE = "llava-med"


def convert(src: Path, split: str, image_root: str | Path | None = None,
            answers: str | Path | None = None) -> ConvertResult:
    """Options: ``image_root`` (default ``images/`` beside the file when it exists, else the file's
    folder); ``answers`` (a JSONL of answers, for a questions JSONL). ``src`` is the file; the split
    only labels the result (the files carry none)."""
    if not src.is_file():
        raise DoctorSunError(f"llava-med: give the JSON or JSONL file, not a folder: {src}")
    root = Path(image_root) if image_root else (src.parent / "images" if (src.parent / "images").is_dir()
                                                 else src.parent)
    out = Collector()
    if src.suffix.lower() == ".jsonl":
        _from_questions(src, answers, out)
    else:
        items = read_json(src)
        if not isinstance(items, list):
            raise DoctorSunError(f"llava-med: {src} should hold a JSON list")
        for i, item in enumerate(items):
            where = item.get("id", f"item {i}") if isinstance(item, dict) else f"item {i}"
            try:
                out.add(_from_llava(item))
            except ITEM_ERRORS as exc:
                out.skip(where, str(exc) or type(exc).__name__)
    return out.result(SOURCE, split, root)


def _from_llava(item: dict) -> dict:
    turns = item["conversations"]
    if not turns or any(t.get("from") not in ("human", "gpt") for t in turns):
        raise ValueError("turns must come from human or gpt")
    if [t["from"] for t in turns] != ["human", "gpt"] * (len(turns) // 2) or len(turns) % 2:
        raise ValueError("turns must alternate human, gpt")
    image = text(item.get("image")) or None
    if image is None and any(IMAGE_TOKEN in str(t.get("value", "")) for t in turns):
        raise ValueError(f"a turn holds {IMAGE_TOKEN} but the item names no image")
    rid = f"{SOURCE}-{text(item['id'])}"
    lang = detect_lang(" ".join(t["value"] for t in turns))
    if "answer_type" in item and len(turns) == 2:
        question = _strip_image(turns[0]["value"])
        return vqa_record(rid, question, text(turns[1]["value"]), source=SOURCE, lang=lang, image=image,
                          answer_type=text(item["answer_type"]).upper() or None, meta={"id": item["id"]})
    conversations = []
    for j, turn in enumerate(turns):
        value = text(turn["value"])
        if turn["from"] == "human":
            value = open_prompt(_strip_image(value), lang)
            value = with_image(value) if image and j == 0 else value
        if not value:
            raise ValueError(f"turn {j + 1} is empty")
        conversations.append({"from": turn["from"], "value": value})
    record = {"id": rid, "image": image, "conversations": conversations, "lang": lang, "source": SOURCE,
              "task": "dialogue", "meta": {"id": item["id"]}}
    if image is None:
        del record["image"]
    return record


def _strip_image(value: str) -> str:
    """The question without its placeholder (LLaVA-Med puts it first or last); ``with_image`` puts it back."""
    return text(value).replace(IMAGE_TOKEN, "").strip()


def _from_questions(src: Path, answers: str | Path | None, out: Collector) -> None:
    if not answers:
        raise DoctorSunError("llava-med: a questions JSONL has no answers; pass answers=<answers JSONL>")
    gold = {}
    for line in Path(answers).read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
                gold[str(row["question_id"])] = text(row["text"])
            except (json.JSONDecodeError, KeyError, ValueError):
                continue  # a bad answer line only means its question is reported below
    for where, row in read_jsonl(src, out):
        qid = str(row.get("question_id", where))
        try:
            if qid not in gold:
                raise ValueError("no answer in the answers file")
            question = _strip_image(row.get("text"))
            meta = {"question_id": row.get("question_id"), "type": row.get("type"),
                    "domain": row.get("domain")}
            out.add(vqa_record(f"{SOURCE}-{qid}", question, gold[qid], source=SOURCE,
                               lang=detect_lang(question),
                               image=text(row.get("image")) or None, meta=meta))
        except ITEM_ERRORS as exc:
            out.skip(qid, str(exc))
