"""Machine translation of SunMed-VL records through any OpenAI-compatible chat endpoint (a local
``doctorsun serve``, vLLM, or a hosted service), for the bilingual half of the corpus.

What is asked: the *content* of a record, not DoctorSun's fixed prompt wording. A question built by
``doctorsun.data.prompts`` is split back into its question and options, those are translated, and the
record is rebuilt with the target language's own templates (so a translated record is asked exactly as a
native one, and as evaluation asks); yes/no answers are mapped, MCQ answers re-rendered from their letters.
Other records (dialogue, text, reports) have each turn translated whole.

Every distinct text is one request, cached by a content hash (engine, model, prompt, languages, text) in
an append-only JSONL file that is flushed line by line: a re-run, or a run resumed after a kill, asks
nothing twice. Requests run concurrently; 429, 5xx and connection errors are retried with exponential
back-off (``Retry-After`` honoured), and what still fails is listed, never fatal.

Quality gates on every translated text: the target script is present, the length ratio is sane, and the
``<image>`` placeholders, the numbers and the option letters (``A.``...) of the source are all kept. A
record with any failing text is reported and not written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from doctorsun.data.converters.base import yes_no
from doctorsun.data.io import ordered_fields
from doctorsun.data.prompts import (
    LETTERS,
    caption_prompt,
    closed_prompt,
    mcq_answer,
    mcq_prompt,
    open_prompt,
    split_prompt,
    with_image,
)
from doctorsun.data.records import LANGS, detect_lang
from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN

log = logging.getLogger(__name__)

ENGINE = "openai-chat"
LANG_NAMES = {"en": "English", "zh": "Simplified Chinese"}
SYSTEM_PROMPT = (
    "You are a professional medical translator. Translate the user's text from {source} into {target}. "
    "Use standard medical terminology. Keep every {image} placeholder, every number and unit, and every "
    "option letter (A., B., ...) exactly as written. Reply with the translation only, nothing else.")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"(?m)^\s*([A-Z])[.)．、]\s")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
# Characters of the target per character of the source: zh runs ~0.3 chars per English char.
LENGTH_RATIO = {("en", "zh"): (0.08, 1.5), ("zh", "en"): (0.6, 12.0)}
SHORT = 6
"""Texts up to this many characters skip the length gate (``CT`` -> ``CT``, ``MRI`` -> ``磁共振``)."""


def prompt_hash(source: str, target: str) -> str:
    return hashlib.sha256(system_prompt(source, target).encode()).hexdigest()[:16]


def system_prompt(source: str, target: str) -> str:
    return SYSTEM_PROMPT.format(source=LANG_NAMES[source], target=LANG_NAMES[target], image=IMAGE_TOKEN)


# --------------------------------------------------------------------------------------- gates
def gate(source_text: str, text: str, source: str, target: str) -> str | None:
    """Why ``text`` is not an acceptable translation of ``source_text`` into ``target``, or ``None``."""
    if not text.strip():
        return "empty translation"
    if target == "zh" and not _CJK.search(text) and _LATIN.search(source_text):
        return "no Chinese characters in the translation"
    if target == "en" and (not _LATIN.search(text) or len(_CJK.findall(text)) > 0.2 * len(text)):
        return "the translation is not English"
    if text.count(IMAGE_TOKEN) != source_text.count(IMAGE_TOKEN):
        return f"{IMAGE_TOKEN} placeholders: {source_text.count(IMAGE_TOKEN)} in the source, {text.count(IMAGE_TOKEN)}"
    missing = sorted(set(_NUMBER.findall(source_text)) - set(_NUMBER.findall(text)))
    if missing:
        return f"number(s) {', '.join(missing[:5])} missing"
    letters = _OPTION.findall(source_text)
    if letters and _OPTION.findall(text) != letters:
        return f"option letters {''.join(letters)} not kept"
    if len(source_text) > SHORT:
        lo, hi = LENGTH_RATIO[(source, target)]
        ratio = len(text) / len(source_text)
        if not lo <= ratio <= hi:
            return f"length ratio {ratio:.2f} outside {lo}-{hi}"
    return None


# --------------------------------------------------------------------------- what a record asks
@dataclass
class Plan:
    """How one record is translated: the texts to ask, and how to rebuild the record from their translations."""

    texts: list[str]
    kind: str
    """``caption``, ``closed``, ``open``, ``mcq`` (rebuilt with the target's templates) or ``turns``."""
    image: bool = False
    choices: int = 0


def plan(record: dict) -> Plan:
    turns = record["conversations"]
    lang = record["lang"]
    if len(turns) == 2 and record.get("task") in ("caption", "vqa-closed", "vqa-open", "mcq"):
        parts = split_prompt(turns[0]["value"], lang)
        if parts is not None:
            kind, image, question, options = parts
            answer = turns[1]["value"]
            if kind == "caption":
                return Plan([answer], kind, image)
            if kind == "closed" and yes_no(answer, lang) is not None:
                return Plan([question], kind, image)
            if kind == "mcq" and _letters(record, answer, options) is not None:
                return Plan([question, *options], kind, image, len(options))
            if kind == "open":
                return Plan([question, answer], kind, image)
    choices = list(record.get("choices") or [])
    return Plan([t["value"] for t in turns] + choices, "turns", choices=len(choices))


def _letters(record: dict, answer: str, options: list[str]) -> list[int] | None:
    letters = (record.get("meta") or {}).get("answer_letters")
    if not letters:
        letters = "".join(line[0] for line in answer.split("\n") if re.match(r"[A-Z]\. ", line))
    idx = [LETTERS.index(c) for c in letters if c in LETTERS[:len(options)]]
    return idx if idx and len(idx) == len(letters) else None


def rebuild(record: dict, p: Plan, out: list[str], target: str) -> list[dict]:
    """The record's turns in ``target`` from the translations ``out`` of ``p.texts``."""
    def human(prompt: str) -> dict:
        return {"from": "human", "value": with_image(prompt) if p.image else prompt}

    answer = record["conversations"][1]["value"] if p.kind != "turns" else ""
    if p.kind == "caption":
        return [human(caption_prompt(target)), {"from": "gpt", "value": out[0]}]
    if p.kind == "closed":
        gold = yes_no("yes" if yes_no(answer, record["lang"]) in ("yes", "是") else "no", target)
        return [human(closed_prompt(out[0], target)), {"from": "gpt", "value": gold}]
    if p.kind == "mcq":
        options = out[1:]
        idx = _letters(record, answer, options) or []
        reply = "\n".join(mcq_answer(options, i) for i in sorted(set(idx)))
        return [human(mcq_prompt(out[0], options, target)), {"from": "gpt", "value": reply}]
    if p.kind == "open":
        return [human(open_prompt(out[0], target)), {"from": "gpt", "value": out[1]}]
    turns = record["conversations"]
    return [{"from": t["from"], "value": v} for t, v in zip(turns, out[:len(turns)], strict=True)]


# ------------------------------------------------------------------------------------- the client
class ChatClient:
    """``POST {endpoint}/chat/completions``, greedy, with retries and back-off."""

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 5, backoff: float = 0.5, max_tokens: int = 1024):
        import httpx

        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.retries, self.backoff, self.max_tokens = retries, backoff, max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def complete(self, system: str, text: str) -> str:
        import httpx

        body = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]}
        last = "no attempt"
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                r = self._http.post(self.url, json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()["choices"][0]["message"]["content"] or ""
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise TranslateError(f"the endpoint's reply is not a chat completion: {r.text[:200]}") from None
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code not in RETRY_STATUS:
                    raise TranslateError(last)
                retry_after = r.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(retry_after))
            if attempt < self.retries:
                time.sleep(min(wait, 30.0))
        raise TranslateError(f"gave up after {self.retries + 1} attempts: {last}")


class TranslateError(Exception):
    """A request that failed for good (reported against its records)."""


# -------------------------------------------------------------------------------------- the cache
class Cache:
    """Translations by content hash in an append-only JSONL file (a torn last line is ignored)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.done: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self.done[row["key"]] = row["text"]
                except (ValueError, KeyError, TypeError):
                    continue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held for the run)
        self._lock = threading.Lock()

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self.done[key] = text
            self._file.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def text_hash(text: str, source: str, target: str, model: str) -> str:
    key = json.dumps([ENGINE, model, prompt_hash(source, target), source, target, text], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------------------------------- the run
@dataclass
class TranslateReport:
    translated: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(id, reason)``: already in the target language, or nothing to translate."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(id, reason)``: a request that failed for good, or a quality gate."""
    asked: int = 0
    """Requests sent this run (cache hits excluded)."""
    cached: int = 0

    def as_dict(self) -> dict:
        return {"translated": self.translated, "asked": self.asked, "from_cache": self.cached,
                "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
                "failed": [{"id": i, "reason": r} for i, r in self.failed]}


def translate_records(records: Iterable[dict], to: str, client: ChatClient, cache: Cache, *,
                      concurrency: int = 8, progress: bool = False,
                      report: TranslateReport | None = None) -> tuple[list[dict], TranslateReport]:
    """Translated copies of ``records`` (in input order) and the report. Copies get ``lang``, an id
    ``ID@to`` and ``meta.translated_from`` (source id, engine, model, prompt hash)."""
    from tqdm.auto import tqdm

    if to not in LANGS:
        raise DoctorSunError(f"unknown target language {to!r} (known: {', '.join(LANGS)})")
    report = report or TranslateReport()
    plans = []
    for r in records:
        src = r.get("lang") or detect_lang(" ".join(t["value"] for t in r["conversations"]))
        if src == to:
            report.skipped.append((r["id"], f"already {to}"))
            continue
        plans.append((r, src, plan(r)))
    wanted: dict[str, tuple[str, str]] = {}
    for _, src, p in plans:
        for text in p.texts:
            wanted.setdefault(text_hash(text, src, to, client.model), (text, src))
    todo = {k: v for k, v in wanted.items() if k not in cache.done}
    report.cached += len(wanted) - len(todo)
    errors: dict[str, str] = {}

    def ask(key: str) -> None:
        text, src = todo[key]
        cache.put(key, client.complete(system_prompt(src, to), text).strip())

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(ask, k): k for k in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"translating to {to}",
                        disable=not progress, unit="text"):
            report.asked += 1
            try:
                fut.result()
            except Exception as exc:  # a failed request is reported against its records, never fatal
                errors[futures[fut]] = str(exc)
    out = []
    for r, src, p in plans:
        keys = [text_hash(t, src, to, client.model) for t in p.texts]
        failed = next((errors[k] for k in keys if k in errors), None)
        if failed is None:
            texts = [cache.done[k] for k in keys]
            failed = next((f"{why}: {t[:60]!r}" for s, t in zip(p.texts, texts, strict=True)
                           if (why := gate(s, t, src, to))), None)
        if failed is not None:
            report.failed.append((r["id"], failed))
            continue
        copy = {k: v for k, v in r.items() if k not in ("conversations", "choices", "meta")}
        copy["id"] = f"{r['id']}@{to}"
        copy["conversations"] = rebuild(r, p, texts, to)
        copy["lang"] = to
        if p.choices:
            copy["choices"] = texts[-p.choices:]
        meta = dict(r.get("meta") or {})
        meta["translated_from"] = {"id": r["id"], "lang": src, "engine": ENGINE, "model": client.model,
                                   "prompt": prompt_hash(src, to)}
        copy["meta"] = meta
        out.append({k: copy[k] for k in ordered_fields(copy)})
        report.translated += 1
    return out, report

