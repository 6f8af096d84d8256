"""Evaluate a model on SunMed-VL records, in the shape of a training stage: setup (items, provenance,
resume), generate (batched, greedy, appended as it goes), score (every definition), report.

Files written into ``out_dir``: ``predictions.jsonl`` (one row per answered question, appended batch by
batch so an interrupted run keeps its work), ``run.json`` (what the predictions depend on; a resumed run
must match it), ``eval_config.json`` (the ``EvalConfig``), ``scores.json``, ``report.md`` and ``scores.png``.
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
from doctorsun.eval.config import EvalConfig
from doctorsun.files import write_json, write_text
from doctorsun.model.generate import GenerationSettings, isolate_failures

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"
CONFIG_FILE = "eval_config.json"
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
    cloze: list[dict[str, Any]] | None = None
    """For a multiple-choice question, the conversation asking it without its option list (likelihood
    scoring)."""


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
    cloze = None
    if record.get("task") == "mcq" or record.get("choices"):
        row.update(_mcq_fields(record, gold))
        cloze = _cloze(turns[:-1], row)
    elif record.get("task") == "report":
        row["answer_type"] = "REPORT"  # scored on the corpus (BLEU, ROUGE-L, METEOR, CIDEr)
    else:
        declared = str(record.get("answer_type") or "").strip().upper()
        row["answer_type"] = declared or ("CLOSED" if normalize_vqa(gold) in YES_NO else "OPEN")
        answers = (record.get("meta") or {}).get("answers")
        if isinstance(answers, list) and answers:
            row["answers"] = [str(a) for a in answers]  # every accepted gold (MMMU's open questions)
    if paths:
        row["image"] = paths
    groups = group_values(record, bench)
    if groups:
        row["groups"] = groups
    return Item(row, messages, [resolve_image(p, image_root) for p in paths], cloze)


def _cloze(turns: list[dict], row: dict) -> list[dict[str, Any]]:
    """The question of the last human turn without its options and answer-format line (the prompt
    builder's shape; any other prompt is kept as written)."""
    from doctorsun.data.prompts import split_prompt, with_image

    last = turns[-1]["value"]
    parts = split_prompt(last, row["lang"]) if row["lang"] in ("en", "zh") else None
    if parts is not None and parts[0] == "mcq":
        last = with_image(parts[2]) if parts[1] else parts[2]
    return record_messages({"conversations": [*turns[:-1], {"from": "human", "value": last}]})[0]


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
    fields = {"answer_type": "MCQ", "options": options, "gold": letters, "multiple": multiple}
    if isinstance(meta.get("question_without_hint"), str) and meta["question_without_hint"].strip():
        fields["stem"] = meta["question_without_hint"]  # as MMBench's own answer matching quotes it
    return fields


class Evaluation:
    """One evaluation run: ``setup``, ``generate``, ``score``, ``report`` (``run`` does all four)."""

    def __init__(self, engine, records, config: EvalConfig, *, image_root, out_dir, data_file=None,
                 model_name: str | None = None, problems=None):
        self.engine, self.config = engine, config
        self.records = list(records)
        self.image_root, self.out, self.data_file = image_root, Path(out_dir), data_file
        self.model_name = model_name or getattr(engine, "name", None)
        self.skipped = [{"id": str(where), "reason": reason} for where, reason in (problems or [])]
        self.settings = GenerationSettings(max_new_tokens=config.max_new_tokens, seed=config.seed)

    def run(self) -> dict:
        self.setup()
        self.generate()
        scores = self.score()
        self.report(scores)
        return scores

    def setup(self) -> None:
        """Items to ask, what the predictions depend on, and the answers an earlier run already gave."""
        from doctorsun.eval import provenance
        from doctorsun.eval.benchmarks import get_benchmark

        cfg = self.config
        self.spec = get_benchmark(cfg.bench)
        self.out.mkdir(parents=True, exist_ok=True)
        self.started = datetime.now(UTC)
        self.records_sha = hashlib.sha256(json.dumps(self.records, sort_keys=True, ensure_ascii=False,
                                                     default=str).encode()).hexdigest()
        records = self.records[:cfg.limit] if cfg.limit else self.records
        self.items = _prepare_all(records, self.image_root, self.spec, self.skipped)
        self.model = provenance.model_record(self.model_name)
        self.model["weights_fingerprint"] = provenance.weights_fingerprint(self.engine.model)
        self.prompt = provenance.prompt_record(self.engine.processor)
        key = {"bench": cfg.bench, "model": self.model["path"],
               "weights_fingerprint": self.model["weights_fingerprint"],
               "records_sha256": self.records_sha, "blank_image": cfg.blank_image,
               "decoding": asdict(self.settings), "scoring": cfg.scoring,
               "chat_template_sha256": self.prompt["chat_template_sha256"],
               "builder_sha256": self.prompt["builder_sha256"]}
        if not cfg.resume:
            (self.out / PREDICTIONS).unlink(missing_ok=True)
        self.done = _resume(self.out, key)
        write_json(self.out / CONFIG_FILE, cfg.to_dict())

    def generate(self) -> None:
        """Answer what is not answered yet, batch by batch, appending each batch to ``predictions.jsonl``."""
        from transformers import set_seed

        todo = [it for it in self.items if it.row["id"] not in self.done]
        set_seed(self.config.seed)
        was_training = self.engine.model.training
        self.engine.model.eval()  # no dropout while answering, even when a training loop hands its model over
        t0 = time.perf_counter()
        try:
            self.new_rows = self._answer_all(todo)
        finally:
            self.engine.model.train(was_training)
        self.seconds = time.perf_counter() - t0

    def score(self) -> dict:
        """Scores under every definition, with the skipped items and the provenance."""
        from doctorsun.eval import protocol, provenance
        from doctorsun.eval.scoring import score_rows

        cfg = self.config
        by_id = {**self.done, **{r["id"]: r for r in self.new_rows}}
        rows = [by_id[it.row["id"]] for it in self.items if it.row["id"] in by_id]
        scores: dict[str, Any] = {"bench": cfg.bench, "about": self.spec.about}
        methods = ("likelihood",) if cfg.scoring == "likelihood" else self.spec.mcq_methods
        matching = None
        if cfg.judge is not None and "mmbench" in methods:
            rows, matching = self._match_choices(rows)
        scores.update(score_rows(rows, methods, [name for name, _ in self.spec.groups], cfg.seed))
        if matching is not None:
            scores["mmbench_matching"] = matching
        if cfg.judge is not None:
            self._judge(rows, scores)
        reports = [r for r in rows if r["answer_type"] == "REPORT"]
        if cfg.clinical and reports:
            from doctorsun.eval.report_metrics import clinical_scores

            scores["metrics"]["clinical"] = clinical_scores(cfg.clinical, [r["prediction"] for r in reports],
                                                            [r["answer"] for r in reports])
        scores["n_skipped"] = len(self.skipped)
        scores["problems"] = self.skipped
        new, seconds = len(self.new_rows), self.seconds
        scores["provenance"] = {
            "model": self.model, "data": provenance.hash_data(self.data_file) if self.data_file else None,
            "records_sha256": self.records_sha,
            "image_root": str(self.image_root) if self.image_root else None,
            "prompt": self.prompt,
            "decoding": {**asdict(self.settings), "do_sample": False, "batch_size": cfg.batch_size},
            "engine": getattr(self.engine, "kind", "transformers"),
            "blank_image": cfg.blank_image, "limit": cfg.limit, "seed": cfg.seed, "config": cfg.to_dict(),
            "judge": cfg.judge.record() if cfg.judge else None,
            "versions": provenance.versions(), "started": self.started.isoformat(timespec="seconds"),
            "generated": new, "resumed": len(rows) - new, "generation_seconds": round(seconds, 3),
            "items_per_s": round(new / seconds, 3) if new and seconds > 0 else None,
        }
        scores["protocol"] = protocol.card(cfg, scores["provenance"]["data"], self.records_sha, self.prompt,
                                           scores["provenance"]["decoding"])
        return scores

    def _match_choices(self, rows: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        """MMBench's answer matching for the answers its exact rules cannot read: the judge names the option
        each one means (``judge_choice``, then scored in place of the rule). As in VLMEvalKit, a rotation is
        asked only when no other rotation of its question was already read as wrong (the question is lost
        either way), and a question outside circular evaluation is asked whenever its answer is 10
        characters or longer."""
        from doctorsun.eval.judge import MATCHES, judge_rows, match_choice, match_key
        from doctorsun.eval.mcq import mmbench_choice

        single = [r for r in rows if r["answer_type"] == "MCQ" and not r.get("multiple")]
        read = {r["id"]: mmbench_choice(r["prediction"], r["options"]) for r in single}
        lost = {r["circular_of"] for r in single
                if r.get("circular_of") and read[r["id"]] not in (None, r["gold"])}
        todo = [r for r in single
                if (read[r["id"]] is None and r.get("circular_of") not in lost)
                or (not r.get("circular_of") and len(str(r["prediction"]).strip()) >= 10)]
        found, asked = judge_rows(self.config.judge, todo, self.out, file=MATCHES, key=match_key,
                                  asker=match_choice)
        chosen = {i: m["choice"] for i, m in found.items() if "choice" in m}
        failed = [{"id": r["id"], "reason": found.get(r["id"], {}).get("error", "not matched")}
                  for r in todo if r["id"] not in chosen]
        drawn = sum(bool(found[i].get("random")) for i in chosen)  # ``chosen`` holds rows of ``todo`` only
        summary = {"n_unread": sum(v is None for v in read.values()), "n_asked_for": len(todo), "asked": asked,
                   "matched": len(chosen) - drawn, "random": drawn, "failed": failed}
        out = [{**r, "judge_choice": chosen[r["id"]]} if r["id"] in chosen else r for r in rows]
        return out, summary

    def _judge(self, rows: list[dict], scores: dict) -> None:
        """Judge the open answers; the judge's accuracy joins the headline numbers."""
        from doctorsun.eval.judge import judge_rows, judge_scores
        from doctorsun.eval.metrics import multimedeval_vqa

        open_rows = [r for r in rows if r["answer_type"] == "OPEN"]
        judgments, asked = judge_rows(self.config.judge, open_rows, self.out)
        rule = {r["id"]: bool(multimedeval_vqa(r["prediction"], r["answer"])["correct"]) for r in open_rows}
        judge = judge_scores(self.config.judge, open_rows, judgments, rule, asked, self.config.seed)
        scores["judge"] = judge
        scores["judge_accuracy"] = judge["accuracy"]["value"]
        if judge["accuracy"]["n"]:
            scores["uncertainty"]["judge_accuracy"] = judge["accuracy"]

    def report(self, scores: dict) -> None:
        from doctorsun.eval import protocol, report

        write_json(self.out / protocol.PROTOCOL, scores["protocol"])
        report.write_all(self.out, scores)
        log.info("%s: %d scored, %d skipped; results in %s", scores["bench"], scores["n"], len(self.skipped),
                 self.out)

    def _answer_all(self, items: list[Item]) -> list[dict]:
        from tqdm import tqdm

        rows: list[dict] = []
        size = self.config.batch_size
        with (open(self.out / PREDICTIONS, "a", encoding="utf-8") as f,
              tqdm(total=len(items), unit="item", desc=self.config.bench) as bar):
            for start in range(0, len(items), size):
                batch = items[start:start + size]
                done = self._answer(batch)
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done))
                f.flush()
                os.fsync(f.fileno())
                rows += done
                bar.update(len(batch))
        return rows

    def _answer(self, batch: list[Item]) -> list[dict]:
        """One batch; an unreadable image or a failing item costs only that item (reported)."""
        ready = []
        for item in batch:
            try:
                ready.append((item, [_load(p, self.config.blank_image) for p in item.images]))
            except DoctorSunError as exc:
                self.skipped.append({"id": item.row["id"], "reason": str(exc)})
        if not ready:
            return []

        likelihood = self.config.scoring == "likelihood"

        def run(pairs: list[tuple[Item, list]]) -> list:
            mcq = [(it, imgs) for it, imgs in pairs if likelihood and it.cloze is not None]
            rest = [(it, imgs) for it, imgs in pairs if not (likelihood and it.cloze is not None)]
            done = dict(zip((id(it) for it, _ in mcq), self._choose(mcq), strict=True))
            if rest:
                texts = self.engine.generate([it.messages for it, _ in rest], [imgs for _, imgs in rest],
                                             self.settings)
                done.update(zip((id(it) for it, _ in rest), texts, strict=True))
            return [done[id(it)] for it, _ in pairs]

        rows = []
        for (item, _), text in zip(ready, isolate_failures(run, ready), strict=True):
            if isinstance(text, Exception):
                self.skipped.append({"id": item.row["id"], "reason": f"generation failed: {text}"})
            elif isinstance(text, dict):
                rows.append({**item.row, **text})
            else:
                rows.append({**item.row, "prediction": text})
        return rows

    def _choose(self, pairs: list[tuple[Item, list]]) -> list[dict]:
        """Likelihood scoring: every option's text as the reply to the cloze question; the option with
        the highest log-probability per UTF-8 byte is the prediction (``loglik`` keeps each option's sum
        and token count, so other normalisations can be recomputed from the predictions file)."""
        if not pairs:
            return []
        if not hasattr(self.engine, "loglikelihood"):
            raise DoctorSunError(f"the {getattr(self.engine, 'kind', '?')} engine cannot score likelihoods; "
                                 "use --engine transformers or --scoring generate")
        asks = [(it, imgs, letter, text) for it, imgs in pairs for letter, text in it.row["options"].items()]
        scored = self.engine.loglikelihood([it.cloze for it, *_ in asks], [imgs for _, imgs, *_ in asks],
                                           [text for *_, text in asks])
        out: dict[int, dict] = {}
        for (it, _, letter, _), (logprob, n_tokens) in zip(asks, scored, strict=True):
            row = out.setdefault(id(it), {"scoring": "likelihood", "loglik": {}})
            row["loglik"][letter] = [round(logprob, 4), n_tokens]
        for it, _ in pairs:
            row = out[id(it)]
            options = it.row["options"]
            best = max(options, key=lambda k: row["loglik"][k][0] / max(1, len(options[k].encode("utf-8"))))
            row["choice"] = best
            row["prediction"] = f"{best}. {options[best]}"
        return [out[id(it)] for it, _ in pairs]


def evaluate(engine, records, config: EvalConfig | None = None, *, image_root, out_dir, data_file=None,
             model_name: str | None = None, problems=None) -> dict:
    """Answer every record (greedy, batched), score, and write predictions, scores and reports.

    Returns the scores dict: ``closed_accuracy`` and ``open_recall`` (LLaVA-Med), ``mcq_accuracy`` when
    there are multiple-choice items, ``token_f1`` / ``bleu1`` (MultiMedEval), ``exact_match``, ``n``,
    every definition under ``metrics``, a ``breakdown``, the skipped ``problems`` and the ``provenance``.
    ``problems`` adds the reader's own skipped items to the report. With ``config.resume`` (the default)
    the questions already in ``out_dir/predictions.jsonl`` from the same run are not asked again;
    without it, earlier predictions there are discarded.
    """
    return Evaluation(engine, records, config or EvalConfig(), image_root=image_root, out_dir=out_dir,
                      data_file=data_file, model_name=model_name, problems=problems).run()


def _prepare_all(records: list, image_root, spec, skipped: list[dict]) -> list[Item]:
    """Items for the records that can be asked; the others go to ``skipped`` with the reason."""
    items = []
    for i, record in enumerate(records):
        try:
            item = prepare(record, image_root, spec)
            items += rotations(item) if spec.circular and item.row["answer_type"] == "MCQ" else [item]
        except ValueError as exc:
            rid = record.get("id") if isinstance(record, dict) else None
            skipped.append({"id": str(rid or f"item {i}"), "reason": str(exc)})
    return items


def rotations(item: Item) -> list[Item]:
    """MMBench's circular evaluation: the question once per rotation of its options (A B C D, then
    B C D A as A B C D...), each a separate item ``ID@k`` that names its question in ``circular_of``."""
    from doctorsun.data.prompts import LETTERS, mcq_prompt, split_prompt, with_image

    row = item.row
    content = item.messages[-1]["content"]
    parts = split_prompt(content[-1]["text"], row["lang"])
    if parts is None or parts[0] != "mcq" or row["multiple"] or len(content) > 2:
        raise ValueError("circular evaluation needs a single-answer question in the prompt builder's shape")
    _, _, question, texts = parts
    image = len(content) == 2  # the picture, then the text
    out = []
    for k in range(len(texts)):
        order = texts[k:] + texts[:k]
        gold = LETTERS[order.index(texts[LETTERS.index(row["gold"])])]
        prompt = mcq_prompt(question, order, row["lang"])
        messages = record_messages({"conversations": [{"from": "human",
                                                       "value": with_image(prompt) if image else prompt}]})[0]
        messages = [*item.messages[:-1], messages[-1]]
        new = {**row, "id": f"{row['id']}@{k}", "question": prompt, "stem": row.get("stem") or question,
               "gold": gold,
               "circular_of": row["id"],
               "options": {LETTERS[i]: o for i, o in enumerate(order)}}
        out.append(Item(new, messages, item.images, item.cloze))
    return out


def _resume(out: Path, key: dict[str, Any]) -> dict[str, dict]:
    """Rows already answered in ``out`` by the same run (same model, data, prompt, decoding); a torn
    last line from an interrupted write is dropped. A different run's predictions are refused."""
    pred, run_file = out / PREDICTIONS, out / RUN_FILE
    if pred.exists():
        old = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None
        if old != key:
            differ = sorted(k for k in key if not old or old.get(k) != key[k])
            raise DoctorSunError(f"{pred} holds predictions of another run (differs in: "
                                 f"{', '.join(differ)}); "
                                 "use a new --out, delete that file, or start over with --fresh")
    write_json(run_file, key)
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
        write_text(pred, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {r["id"]: r for r in rows}


def _load(path: Path, blank: bool):
    """The image, or with ``blank`` a black image of the same size (the text-only baseline)."""
    from PIL import Image

    from doctorsun.data.image import load_image

    image = load_image(path)
    return Image.new("RGB", image.size) if blank else image
