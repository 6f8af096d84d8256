"""An LLM judge for open answers, through any OpenAI-compatible chat endpoint (a local ``doctorsun serve``,
vLLM, or a hosted service), as MedEvalKit (GPT-4.1) and LLaVA-Med (a GPT-4 review) judge open answers.

The judge prompt is pinned and versioned (English and Chinese); decoding is greedy. Every judgment is
cached in ``judgments.jsonl`` by (prompt version, judge model, question, gold, prediction), so a re-run
asks nothing twice. Requests run concurrently and are retried with back-off on rate limits, server
errors and timeouts; a judgment that still fails, or a reply that cannot be parsed, is recorded for its
item and left out of the judge's numbers with a count, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.files import write_text

log = logging.getLogger(__name__)

JUDGMENTS = "judgments.jsonl"
PROMPT_VERSION = "doctorsun-judge-v1"
VERDICTS = {"correct": 1.0, "partially": 0.5, "incorrect": 0.0}
"""Verdict -> its share of the judge score."""
SYSTEM = {
    "en": "You are a strict medical examiner. You grade a model's answer to a medical question against the "
          "reference answer. Judge meaning, not wording: synonyms and extra correct detail are fine; a wrong "
          "or contradicting finding is not.",
    "zh": "你是一名严格的医学考官。请对照参考答案评判模型对医学问题的回答。"
          "评判含义而非措辞：同义表达和正确的额外细节可以接受，错误或矛盾的结论不可接受。",
}
USER = {
    "en": "Question: {question}\nReference answer: {gold}\nModel answer: {prediction}\n\n"
          "Is the model answer correct, partially correct or incorrect? Reply with one JSON object and nothing "
          'else: {{"verdict": "correct" | "partially" | "incorrect", "score": 0-10}}',
    "zh": "问题：{question}\n参考答案：{gold}\n模型回答：{prediction}\n\n"
          "模型回答是正确、部分正确还是错误？只回复一个JSON对象，不要其他内容："
          '{{"verdict": "correct" | "partially" | "incorrect", "score": 0-10}}',
}
PROMPT_SHA256 = hashlib.sha256(json.dumps([PROMPT_VERSION, SYSTEM, USER], ensure_ascii=False).encode()).hexdigest()
_ZH_VERDICTS = {"部分正确": "partially", "正确": "correct", "错误": "incorrect", "不正确": "incorrect"}


@dataclass
class JudgeConfig:
    """Where the judge is and how hard to try."""

    url: str
    """Base URL of the OpenAI-compatible API, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """Model name the endpoint serves."""
    api_key_env: str | None = None
    """Environment variable that holds the API key (the key itself is never written anywhere)."""
    concurrency: int = 4
    """Requests in flight at once."""
    retries: int = 3
    """Retries of a request after a rate limit (429), a server error (5xx) or a timeout."""
    timeout_s: float = 60.0
    """Seconds to wait for one reply."""
    backoff_s: float = 1.0
    """First wait before a retry; doubled each time (``Retry-After`` wins when the server sends it)."""

    def __post_init__(self) -> None:
        if not re.match(r"^https?://", self.url or ""):
            raise DoctorSunError(f"judge URL must start with http:// or https://, not {self.url!r}")
        if not self.model:
            raise DoctorSunError("a judge needs a model name (--judge-model)")
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise DoctorSunError("judge concurrency must be >= 1, retries >= 0, timeout > 0, back-off >= 0")
        if self.api_key_env and self.api_key_env not in os.environ:
            raise DoctorSunError(f"judge API key variable ${self.api_key_env} is not set")

    def record(self) -> dict[str, Any]:
        """Provenance: everything but the key."""
        return {"url": self.url, "model": self.model, "api_key_env": self.api_key_env,
                "prompt_version": PROMPT_VERSION, "prompt_sha256": PROMPT_SHA256,
                "match_prompt_version": MATCH_VERSION, "match_prompt_sha256": MATCH_SHA256}


def item_key(model: str, row: dict[str, Any]) -> str:
    """The cache key of one judgment."""
    parts = [PROMPT_VERSION, model, row["question"], row["answer"], row["prediction"]]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def parse_verdict(text: str) -> tuple[str, float | None] | None:
    """``(verdict, score 0-10 | None)`` from a judge's reply, or ``None`` when it says neither."""
    for match in re.finditer(r"\{[^{}]*\}", text or ""):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        verdict = str(obj.get("verdict", "")).strip().lower().replace("partially correct", "partially")
        if verdict in VERDICTS:
            score = obj.get("score")
            ok = isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 10
            return verdict, float(score) if ok else None
    found = re.search(r"verdict\W{0,3}(partially|incorrect|correct)", text or "", re.I)
    if found:
        return found.group(1).lower(), None
    for word, verdict in _ZH_VERDICTS.items():  # longest first: 部分正确 before 正确
        if (text or "").strip().startswith(word):
            return verdict, None
    return None


def messages(row: dict[str, Any]) -> list[dict[str, str]]:
    lang = "zh" if row.get("lang") == "zh" else "en"
    user = USER[lang].format(question=row["question"], gold=row["answer"], prediction=row["prediction"])
    return [{"role": "system", "content": SYSTEM[lang]}, {"role": "user", "content": user}]


def _post(config: JudgeConfig, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One greedy chat completion: ``{"text", "served_model"}`` or ``{"error"}``; never raises. Rate limits,
    server errors and timeouts are retried with back-off; a refused request is not."""
    body = json.dumps({"model": config.model, "messages": messages, "temperature": 0, "max_tokens": max_tokens,
                       "seed": 0}).encode()
    headers = {"Content-Type": "application/json"}
    if config.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ[config.api_key_env]}"
    url = config.url.rstrip("/") + "/chat/completions"
    wait, error = config.backoff_s, "no attempt"
    for attempt in range(config.retries + 1):
        retry_after = None
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
                reply = json.loads(response.read().decode("utf-8"))
            return {"text": reply["choices"][0]["message"]["content"] or "", "served_model": reply.get("model")}
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}: {exc.read()[:200].decode('utf-8', 'replace')}"
            if exc.code != 429 and exc.code < 500:
                return {"error": error}  # the request itself is wrong: asking again will not help
            retry_after = exc.headers.get("Retry-After")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return {"error": f"not an OpenAI chat completion reply ({type(exc).__name__}: {exc})"}
        if attempt < config.retries:
            delay = float(retry_after) if retry_after and retry_after.isdigit() else wait
            time.sleep(min(delay, 60.0))
            wait *= 2
    return {"error": f"failed after {config.retries + 1} attempt(s): {error}"}


def ask(config: JudgeConfig, row: dict[str, Any]) -> dict[str, Any]:
    """One judgment: ``{"verdict", "score", "raw", "served_model"}`` or ``{"error"}``; never raises."""
    got = _post(config, messages(row), 64)
    if "error" in got:
        return got
    text = got["text"]
    parsed = parse_verdict(text)
    record = {"raw": text[:500], "served_model": got["served_model"]}
    if parsed is None:
        return {**record, "error": "unparseable judgment"}
    return {**record, "verdict": parsed[0], "score": parsed[1]}


# --- MMBench's answer matching: the option a free-form answer means -----------------------------------

MATCHES = "choice_matches.jsonl"
MATCH_VERSION = "mmbench-match-v1"
MATCH_TRIES = 3
"""MMBench (VLMEvalKit ``extract_answer_from_item``) asks its matcher up to three times; when no reply names
an option, it draws one of the options or Z at random."""
MATCH_PROMPT = {
    "en": ("You are an AI assistant who will help me to match an answer with several options of a single-choice "
           "question. You are provided with a question, several options, and an answer, and you need to find "
           "which option is most similar to the answer. If the meaning of all options are significantly "
           "different from the answer, output Z. Your should output a single uppercase character in A, B, C, D "
           "(if they are valid options), and Z. \n"
           "Example 1: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat "
           "D. dog\nAnswer: a cute teddy bear\nYour output: A\n"
           "Example 2: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat "
           "D. dog\nAnswer: Spider\nYour output: Z\n"
           "Example 3: \nQuestion: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: "),
    "zh": ("你是一个帮助我匹配答案与单选题中多个选项的 AI 助手。你会被提供：一个问题，多个选项，一个答案。"
           "你的任务是找到与答案意义最相近的选项。如果所有选项的意义都与答案显著不同，则输出 Z。"
           "你应该输出一个单个的大写字母，例如 A, B, C, D（如果它们是有效选项），或 Z。"
           "例 1:问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 一只可爱的泰迪熊\n输出: A\n"
           "例 2: \n问题: 图中最主要的物体是什么?\n选项: A. 泰迪熊 B. 兔子 C. 猫 D. 狗\n答案: 蜘蛛\n输出: Z\n"
           "例 3: \n问题: {question}?\n选项: {options}\n答案: {prediction}\n输出: "),
}
"""MMBench's matching prompts (English, and Chinese for a question with Chinese characters), as published."""
MATCH_SHA256 = hashlib.sha256(json.dumps([MATCH_VERSION, MATCH_PROMPT], ensure_ascii=False).encode()).hexdigest()


def _stem(row: dict[str, Any]) -> str:
    """The question as the matching prompt quotes it: MMBench's bare ``question`` (no hint, no options), as
    VLMEvalKit's ``extract_answer_from_item`` passes it; else the question without its options."""
    return str(row.get("stem") or row["question"])


def match_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The matching request for one answer: its question (``_stem``), the options, the answer."""
    stem = _stem(row)
    lang = "zh" if re.search(r"[\u4e00-\u9fff]", stem) else "en"
    options = "There are several options: \n" + "".join(f"{k}. {v}\n" for k, v in row["options"].items())
    text = MATCH_PROMPT[lang].format(question=stem, options=options, prediction=str(row["prediction"]).strip())
    return [{"role": "user", "content": text}]


def match_key(model: str, row: dict[str, Any]) -> str:
    """The cache key of one match."""
    parts = [MATCH_VERSION, model, _stem(row), row["options"], row["prediction"]]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def match_choice(config: JudgeConfig, row: dict[str, Any]) -> dict[str, Any]:
    """The option ``row["prediction"]`` means, as MMBench's matcher says: ``{"choice", "raw", "served_model"}``,
    with ``"random": True`` when no reply in ``MATCH_TRIES`` named an option (the draw is seeded by the item
    id, so a re-run agrees); ``{"error"}`` when the endpoint could not be reached (asked again next run)."""
    import random

    from doctorsun.eval.mcq import mmbench_choice

    request, replies, served = match_messages(row), [], None
    for _ in range(MATCH_TRIES):
        got = _post(config, request, 16)
        if "error" in got:
            return got
        served = got["served_model"]
        replies.append(got["text"][:200])
        choice = mmbench_choice(got["text"], row["options"])
        if choice is not None:
            return {"choice": choice, "raw": got["text"][:500], "served_model": served}
    letters = [*row["options"], "Z"]
    return {"choice": random.Random(f"mmbench-match:{row['id']}").choice(letters), "random": True,
            "raw": " | ".join(replies), "served_model": served}


def read_judgments(folder: str | Path, file: str = JUDGMENTS) -> dict[str, dict]:
    """Judgments already in ``folder`` by question id (a torn last line is ignored)."""
    path = Path(folder) / file
    out = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "id" in row:
                out[row["id"]] = row
    return out


def judge_rows(config: JudgeConfig, rows: Sequence[dict[str, Any]], folder: Path, *, file: str = JUDGMENTS,
               key=item_key, asker=ask) -> tuple[dict[str, dict], int]:
    """Judge every row not judged before with the same key; returns the judgments by id (cached ones
    included) and how many were asked now, and writes them to ``folder/file`` (``judgments.jsonl``;
    ``choice_matches.jsonl`` with ``key=match_key, asker=match_choice``)."""
    from tqdm import tqdm

    old = read_judgments(folder, file)
    keyed = {r["id"]: key(config.model, r) for r in rows}
    # Failed requests are asked again on a re-run; answers (parseable or not) are kept.
    done = {i: j for i, j in old.items() if i in keyed and j.get("key") == keyed[i] and "raw" in j}
    todo = [r for r in rows if r["id"] not in done]
    results = dict(done)
    path = folder / file
    if todo:
        with ThreadPoolExecutor(config.concurrency) as pool, open(path, "a", encoding="utf-8") as f, \
                tqdm(total=len(todo), unit="item", desc="judge") as bar:
            for row, got in zip(todo, pool.map(lambda r: asker(config, r), todo), strict=True):
                results[row["id"]] = {"id": row["id"], "key": keyed[row["id"]], "judge_model": config.model, **got}
                f.write(json.dumps(results[row["id"]], ensure_ascii=False) + "\n")
                f.flush()
                bar.update(1)
    kept = [results[r["id"]] for r in rows]  # the file holds exactly this run's judgments, in order
    write_text(path, "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in kept))
    log.info("judge (%s): %d asked, %d from the cache", file, len(todo), len(done))
    return results, len(todo)


def judge_scores(config: JudgeConfig, rows: Sequence[dict[str, Any]], judgments: dict[str, dict],
                 rule_correct: dict[str, bool], asked: int, seed: int = 0) -> dict[str, Any]:
    """The judge's numbers: accuracy (share judged correct), mean score (partially = 0.5), how many
    failed or could not be parsed, and Cohen's kappa against MultiMedEval's open correctness."""
    from doctorsun.eval import stats

    good = [r["id"] for r in rows if judgments.get(r["id"], {}).get("verdict") in VERDICTS]
    verdicts = [judgments[i]["verdict"] for i in good]
    errors = [{"id": r["id"], "reason": judgments.get(r["id"], {}).get("error", "not judged")}
              for r in rows if r["id"] not in good]
    served = sorted({str(judgments[i].get("served_model")) for i in good if judgments[i].get("served_model")})
    accuracy = stats.bootstrap_ci([float(v == "correct") for v in verdicts], seed)
    ids = [i for i in good if i in rule_correct]
    return {
        **config.record(), "served_model": served, "n_open": len(rows), "n_judged": len(good),
        "n_excluded": len(errors), "excluded": errors, "asked": asked,
        "accuracy": accuracy, "score": stats.bootstrap_ci([VERDICTS[v] for v in verdicts], seed),
        "verdicts": {v: verdicts.count(v) for v in VERDICTS},
        "kappa_vs_multimedeval": stats.cohen_kappa([judgments[i]["verdict"] == "correct" for i in ids],
                                                   [rule_correct[i] for i in ids]),
        "n_kappa": len(ids),
    }
